"""Pretrained weights of the zoo, the timm way: a table of tags, and one-name simulators.

A *tag* names trained weights: ``<variant>.<tag>`` (``hma-vq-t64.simmix``, ``tok-vq-f4-4k.simmix``). The table
(:func:`pretrained_cfgs`) is built from the folders shipped in ``pretrained/`` (each a
:func:`hma_zoo.hub.save_pretrained` folder, read through :func:`hma_zoo.hub.describe`) plus the tags added with
:func:`register_pretrained` (a hub repo or a folder elsewhere). A world model's folder bundles the tokenizer it was
trained with in ``tokenizer/``, so one name gives a working simulator, offline::

    import hma_zoo
    hma_zoo.list_models(pretrained=True)                  # ['hma-mar-t64.simmix', 'hma-vq-t64.simmix']
    model = hma_zoo.create_model("hma-vq-t64.simmix", pretrained=True)
    sim = hma_zoo.load_simulator("hma-vq-t64.simmix", temperature=0.0)
    sim.reset(prompt_frames, embodiment="pusht")          # uint8 [Tp, 64, 64, 3]
    frame = sim.step(action)

A tag's weights are found in its local folder, then in the local hub cache, then on the hub
(:func:`resolve_pretrained`); when none exist the error lists the tags that do. ``hma-zoo evaluate --model
hma-vq-t64.simmix --data DIR`` evaluates shipped weights the same way, and ``hma-zoo models --pretrained`` prints
the table.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hma_zoo.hub import CONFIG_NAME, DEFAULT_LICENSE, TOKENIZER_SUBDIR, describe
from hma_zoo.resources import resource_dir

# the repository's pretrained/ in a clone; in an installed wheel, the folders it ships (see hma_zoo.resources)
SHIPPED_DIR = resource_dir("pretrained")

__all__ = [
    "NoPretrainedWeightsError",
    "PretrainedCfg",
    "bundle_tokenizer",
    "bundled_tokenizer",
    "load_simulator",
    "model_tokenizer",
    "pretrained_cfg",
    "pretrained_cfgs",
    "register_pretrained",
    "resolve_pretrained",
    "resolve_shipped",
    "shipped",
]


class NoPretrainedWeightsError(FileNotFoundError):
    """No weights exist for a name: not a known tag with a folder, not in the hub cache, not on the hub."""


@dataclass(frozen=True)
class PretrainedCfg:
    """One row of the pretrained table: where a tag's weights are and what they were trained and measured on.

    Attributes:
        tag: the full name, ``<architecture>.<tag>``.
        kind: ``"hma"`` (world model) or ``"tokenizer"``.
        architecture: the registered variant (``hma-vq-t64``, ``tok-vq-f4-4k``).
        folder: a local ``save_pretrained`` folder holding the weights (shipped ones are in ``pretrained/``).
        hf_hub_id: a hub repo (``org/name``) holding them, tried (cache first) when there is no folder.
        tokenizer: a world model's tokenizer: a folder (the bundled ``tokenizer/``) or a tag / hub id.
        data: the dataset the weights were trained on.
        metrics_file: the file that holds the measured metrics (``config.json``, its ``meta``), if any were measured.
        license: SPDX-style license id of the weights.
        base_model: what a fine-tune started from.
    """

    tag: str
    kind: str
    architecture: str
    folder: Path | None = None
    hf_hub_id: str | None = None
    tokenizer: str | None = None
    data: str | None = None
    metrics_file: Path | None = None
    license: str = DEFAULT_LICENSE
    base_model: str | None = None


_REGISTERED: dict[str, PretrainedCfg] = {}


def shipped(kind: str | None = None) -> dict[str, Path]:
    """Shipped weights by name -> folder; ``kind``: ``"hma"`` (world models), ``"tokenizer"`` or ``None`` (all)."""
    out: dict[str, Path] = {}
    if not SHIPPED_DIR.is_dir():
        return out
    for folder in sorted(SHIPPED_DIR.iterdir()):
        if not (folder / CONFIG_NAME).is_file() or "." not in folder.name:
            continue
        is_tok = folder.name.startswith("tok-")
        if kind is None or (kind == "tokenizer") == is_tok:
            out[folder.name] = folder
    return out


def _cfg_from_folder(tag: str, folder: Path) -> PretrainedCfg:
    payload = json.loads((folder / CONFIG_NAME).read_text())
    info = describe(payload, folder)
    bundled = folder / TOKENIZER_SUBDIR
    tokenizer = str(bundled) if (bundled / CONFIG_NAME).is_file() else info["tokenizer"]
    return PretrainedCfg(
        tag=tag, kind=payload["hma_zoo_kind"], architecture=info["architecture"] or tag.split(".", 1)[0],
        folder=folder, tokenizer=tokenizer if payload["hma_zoo_kind"] == "hma" else None, data=info["data"],
        metrics_file=folder / CONFIG_NAME if info["metrics"] else None, license=info["license"],
        base_model=info["base_model"],
    )


def pretrained_cfgs(kind: str | None = None) -> dict[str, PretrainedCfg]:
    """The pretrained table: tag -> :class:`PretrainedCfg`, shipped folders and registered tags (``kind``: ``"hma"``,
    ``"tokenizer"`` or ``None`` for both), sorted by tag. Built from the folders' ``config.json`` on each call."""
    table = {tag: _cfg_from_folder(tag, folder) for tag, folder in shipped().items()}
    for tag, cfg in _REGISTERED.items():
        if tag in table:  # a shipped folder registered with a hub id too: keep the folder, add the id
            table[tag] = replace(table[tag], hf_hub_id=cfg.hf_hub_id or table[tag].hf_hub_id)
        else:
            table[tag] = cfg
    return {t: c for t, c in sorted(table.items()) if kind is None or c.kind == kind}


def pretrained_cfg(name: str) -> PretrainedCfg | None:
    """The table row of tag ``name``, or ``None``."""
    return pretrained_cfgs().get(str(name))


def register_pretrained(tag: str, source: str | os.PathLike, *, kind: str | None = None,
                        tokenizer: str | None = None, data: str | None = None,
                        license: str = DEFAULT_LICENSE) -> PretrainedCfg:
    """Add tag ``<architecture>.<tag>`` whose weights are in ``source``: a ``save_pretrained`` folder or a hub repo
    id (``org/name``, optionally ``hf-hub:``). ``kind`` defaults from the name (``tok-*`` are tokenizers).

    Raises:
        ValueError: the tag has no ``.`` (``variant.tag``).
    """
    if "." not in tag:
        raise ValueError(f"a pretrained tag is '<architecture>.<tag>', got {tag!r}")
    kind = kind or ("tokenizer" if tag.startswith("tok-") else "hma")
    s = str(source)
    folder = Path(s[len("local-dir:") :] if s.startswith("local-dir:") else s).expanduser()
    is_folder = (folder / CONFIG_NAME).is_file()
    if is_folder:
        cfg = _cfg_from_folder(tag, folder)
        cfg = replace(cfg, tokenizer=tokenizer or cfg.tokenizer, data=data or cfg.data)
    else:
        cfg = PretrainedCfg(tag=tag, kind=kind, architecture=tag.split(".", 1)[0],
                            hf_hub_id=s.removeprefix("hf-hub:"), tokenizer=tokenizer, data=data, license=license)
    _REGISTERED[tag] = cfg
    return cfg


def _tag_list(kind: str | None) -> str:
    tags = sorted(pretrained_cfgs(kind))
    return ", ".join(tags) if tags else "none"


def resolve_pretrained(name: str | os.PathLike, kind: str | None = None) -> Path:
    """The local folder holding the weights of ``name``: a tag (its folder, else its hub repo: the local hub cache
    first, then the hub), a ``save_pretrained`` folder, ``local-dir:PATH``, or a hub id (``hf-hub:org/name``,
    ``org/name``; cache first, then the hub).

    Raises:
        NoPretrainedWeightsError: no weights exist for ``name``; the message lists the pretrained tags.
    """
    from hma_zoo import hub

    s = str(name)
    what = {"hma": "world model", "tokenizer": "tokenizer"}.get(kind or "", "pretrained")
    cfg = pretrained_cfg(s)
    if cfg is not None:
        if kind is not None and cfg.kind != kind:
            raise NoPretrainedWeightsError(f"{s!r} is a {cfg.kind}, not a {kind}; pretrained {what} tags: "
                                           f"{_tag_list(kind)}")
        if cfg.folder is not None and (cfg.folder / CONFIG_NAME).is_file():
            return cfg.folder
        if cfg.hf_hub_id:
            return hub.resolve(cfg.hf_hub_id)
        raise NoPretrainedWeightsError(f"the weights of {s!r} are missing (no folder {cfg.folder}, no hub id)")
    looks_local = s.startswith("local-dir:") or Path(s).expanduser().is_dir()
    if looks_local or s.startswith("hf-hub:") or s.count("/") == 1:
        return hub.resolve(s)
    raise NoPretrainedWeightsError(
        f"no pretrained weights for {s!r}: it is not a pretrained tag, a saved folder or a hub id (org/name). "
        f"Pretrained {what} tags: {_tag_list(kind)}")


def resolve_shipped(name: str | os.PathLike) -> str:
    """``name`` itself, or the local folder of the tag of that name (shipped or registered with a folder)."""
    cfg = pretrained_cfg(str(name))
    return str(cfg.folder) if cfg is not None and cfg.folder is not None else str(name)


def bundled_tokenizer(model_source: str | os.PathLike) -> Path | None:
    """The tokenizer folder bundled with a saved world model (``<folder>/tokenizer``), if there is one."""
    folder = Path(resolve_shipped(model_source))
    tok = folder / TOKENIZER_SUBDIR
    return tok if (tok / CONFIG_NAME).is_file() else None


def bundle_tokenizer(model_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike) -> Path:
    """Copy a saved tokenizer folder into ``<model_dir>/tokenizer`` (replacing one there); returns its path."""
    import shutil

    src, dst = Path(tokenizer_dir), Path(model_dir) / TOKENIZER_SUBDIR
    if not (src / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{src} is not a saved tokenizer folder (no config.json)")
    if src.resolve() == dst.resolve():
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tokenizer"))
    return dst


def model_tokenizer(name_or_path: str | os.PathLike, folder: Path) -> str | None:
    """Where the tokenizer of world model ``name_or_path`` (resolved to ``folder``) is: its bundled ``tokenizer/``,
    else the tokenizer its table row names; ``None`` when neither exists."""
    bundled = folder / TOKENIZER_SUBDIR
    if (bundled / CONFIG_NAME).is_file():
        return str(bundled)
    cfg = pretrained_cfg(str(name_or_path))
    tok = cfg.tokenizer if cfg is not None else None
    if tok and (pretrained_cfg(tok) is not None or tok.count("/") == 1 or (Path(tok) / CONFIG_NAME).is_file()):
        return tok
    return None


def load_simulator(name_or_path: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
                   **simulator_kwargs: Any):  # noqa: ANN201 - a Simulator (imported lazily)
    """A :class:`hma_zoo.Simulator` from one name: a tag (``"hma-vq-t64.simmix"``), a saved folder or a hub id,
    with the tokenizer bundled in its ``tokenizer/`` folder (or ``tokenizer``, a tag / folder / hub id).

    The world model is resolved as by ``create_model(name, pretrained=True)`` (:func:`resolve_pretrained`).

    Raises:
        NoPretrainedWeightsError: no weights exist for ``name_or_path``.
        FileNotFoundError: no tokenizer is bundled and none was given (the message says how to pass one).
    """
    from hma_zoo import hub
    from hma_zoo.sim import Simulator
    from hma_zoo.tokenizers import load_tokenizer

    folder = resolve_pretrained(name_or_path, kind="hma")
    tok_source = str(tokenizer) if tokenizer is not None else model_tokenizer(name_or_path, folder)
    if tok_source is None:
        raise FileNotFoundError(
            f"{str(name_or_path)!r} bundles no tokenizer (no {TOKENIZER_SUBDIR}/ folder); pass the one it was "
            f"trained with: load_simulator({str(name_or_path)!r}, tokenizer='path/or/hub-id'). Pretrained world "
            f"models: {_tag_list('hma')}")
    model = hub.load_pretrained(folder, kind="hma")
    return Simulator(model, load_tokenizer(tok_source), **simulator_kwargs)
