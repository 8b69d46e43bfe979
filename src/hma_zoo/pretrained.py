"""Weights that ship with the zoo (``pretrained/`` in the repository) and one-name simulators.

Each shipped folder is a :func:`hma_zoo.hub.save_pretrained` folder named ``<variant>.<tag>``
(``hma-vq-t64.simmix``, ``tok-vq-f4-4k.simmix``). A world model's folder bundles the tokenizer it was trained
with in ``tokenizer/``, so one name gives a working simulator, offline::

    import hma_zoo
    sim = hma_zoo.load_simulator("hma-vq-t64.simmix", temperature=0.0)
    sim.reset(prompt_frames, embodiment="pusht")          # uint8 [Tp, 64, 64, 3]
    frame = sim.step(action)

``hma-zoo evaluate --model hma-vq-t64.simmix --data DIR`` evaluates it the same way. Names are resolved by
:func:`hma_zoo.registry.load_pretrained` and :func:`hma_zoo.tokenizers.load_tokenizer` too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "pretrained"
TOKENIZER_SUBDIR = "tokenizer"


def shipped(kind: str | None = None) -> dict[str, Path]:
    """Shipped weights by name -> folder; ``kind``: ``"hma"`` (world models), ``"tokenizer"`` or ``None`` (all)."""
    out: dict[str, Path] = {}
    if not SHIPPED_DIR.is_dir():
        return out
    for folder in sorted(SHIPPED_DIR.iterdir()):
        if not (folder / "config.json").is_file() or "." not in folder.name:
            continue
        is_tok = folder.name.startswith("tok-")
        if kind is None or (kind == "tokenizer") == is_tok:
            out[folder.name] = folder
    return out


def resolve_shipped(name: str | os.PathLike) -> str:
    """``name`` itself, or the folder of the shipped weights of that name."""
    folder = shipped().get(str(name))
    return str(folder) if folder is not None else str(name)


def bundled_tokenizer(model_source: str | os.PathLike) -> Path | None:
    """The tokenizer folder bundled with a saved world model (``<folder>/tokenizer``), if there is one."""
    folder = Path(resolve_shipped(model_source))
    tok = folder / TOKENIZER_SUBDIR
    return tok if (tok / "config.json").is_file() else None


def bundle_tokenizer(model_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike) -> Path:
    """Copy a saved tokenizer folder into ``<model_dir>/tokenizer`` (replacing one there); returns its path."""
    import shutil

    src, dst = Path(tokenizer_dir), Path(model_dir) / TOKENIZER_SUBDIR
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src} is not a saved tokenizer folder (no config.json)")
    if src.resolve() == dst.resolve():
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tokenizer"))
    return dst


def load_simulator(name_or_path: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
                   **simulator_kwargs: Any):
    """A :class:`hma_zoo.Simulator` from one name: shipped weights (``"hma-vq-t64.simmix"``), a saved folder or a
    hub id, with the tokenizer bundled in its ``tokenizer/`` folder (or ``tokenizer``, a folder / hub id).

    Raises:
        FileNotFoundError: no tokenizer is bundled and none was given (the message says how to pass one).
    """
    from hma_zoo.registry import load_pretrained
    from hma_zoo.sim import Simulator
    from hma_zoo.tokenizers import load_tokenizer

    source = resolve_shipped(name_or_path)
    tok_source = tokenizer if tokenizer is not None else bundled_tokenizer(source)
    if tok_source is None:
        raise FileNotFoundError(
            f"{name_or_path!r} bundles no tokenizer (no {TOKENIZER_SUBDIR}/ folder); pass the one it was trained "
            f"with: load_simulator({str(name_or_path)!r}, tokenizer='path/or/hub-id'). Shipped world models: "
            f"{sorted(shipped('hma'))}")
    model = load_pretrained(source)
    return Simulator(model, load_tokenizer(resolve_shipped(tok_source)), **simulator_kwargs)
