"""Where the files shipped with hma_zoo are: the training recipes and the small pretrained weights.

In a clone they are the repository's ``recipes/`` and ``pretrained/``. An installed wheel carries the ones the
quickstart needs as package data under ``hma_zoo/_resources/`` (every recipe, ``tok-vq-f4-4k.simmix`` and
``hma-vq-t64.simmix`` with its bundled tokenizer; see ``[tool.setuptools.package-data]`` in pyproject.toml). In the
source tree ``src/hma_zoo/_resources/{recipes,pretrained}`` are symbolic links to the repository's folders, so one
lookup, :func:`resource_dir` through :mod:`importlib.resources`, serves both; where the links are missing (a
checkout without symlink support) it falls back to the repository root.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the repository root, when running from a clone


def resource_dir(name: Literal["recipes", "pretrained"]) -> Path:
    """The folder of shipped ``name`` files: the package's ``_resources/<name>`` (an installed wheel, or the
    source tree through its links), else ``<repository>/<name>``. The path may not exist (a wheel built without
    them); callers check what they need and say so.

    Raises:
        ValueError: ``name`` is not ``"recipes"`` or ``"pretrained"``.
    """
    if name not in ("recipes", "pretrained"):
        raise ValueError(f"shipped resources are 'recipes' or 'pretrained', not {name!r}")
    packaged = Path(str(files("hma_zoo") / "_resources" / name))  # a plain folder: hma_zoo is never a zip import
    if packaged.is_dir():
        return packaged
    return _SOURCE_ROOT / name
