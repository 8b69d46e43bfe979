"""Variant registry in the style of timm: ``create_model(name, pretrained=False, **overrides)``, ``list_models``.

Names are ``hma-{vq|mar}-{size}[.{weights_tag}]``. The part before the dot picks the architecture; a tag picks
pretrained weights from the table of :mod:`hma_zoo.pretrained` (shipped folders and registered hub repos).
``local-dir:PATH`` and ``hf-hub:org/name`` name saved models directly. As in timm, ``pretrained=True`` loads the
weights (and raises when none exist); ``pretrained=False`` gives fresh weights. Unknown or ambiguous names fail
with the list of what exists.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from hma_zoo.configs import (
    ConditioningConfig,
    DiffusionHeadConfig,
    EmbodimentSpec,
    HMAConfig,
    TokenSpec,
    TrunkConfig,
)


@dataclass(frozen=True)
class _Entry:
    name: str
    build: Callable[[], dict[str, Any]]
    description: str


_MODELS: dict[str, _Entry] = {}

_SUBCONFIGS: dict[str, type] = {
    "tokens": TokenSpec,
    "trunk": TrunkConfig,
    "conditioning": ConditioningConfig,
    "diffusion": DiffusionHeadConfig,
}


def register_model(name: str, build: Callable[[], dict[str, Any]], description: str = "") -> None:
    """Register a variant ``name`` whose ``build()`` returns its :class:`HMAConfig` fields (no embodiments)."""
    _MODELS[name] = _Entry(name, build, description)


def register_pretrained(name: str, source: str) -> None:
    """Register pretrained weights ``variant.tag`` stored at ``source`` (hub id or folder); see
    :func:`hma_zoo.pretrained.register_pretrained` for the other fields of the table."""
    from hma_zoo.pretrained import register_pretrained as register

    _ensure_registered()
    arch = name.split(".", 1)[0]
    if arch not in _MODELS:
        raise KeyError(f"cannot tag weights for unknown variant {arch!r}")
    register(name, source, kind="hma")


def _ensure_registered() -> None:
    if not _MODELS:
        import hma_zoo.variants  # noqa: F401  (registers the named sizes)


def natural_key(name: str) -> list[Any]:
    """Sort key that orders the numbers in a name by value (``hma-vq-w32`` before ``hma-vq-w128``, ``D=960`` before
    ``D=1920``, ``0.08M`` before ``1.32M``), as timm lists its models."""
    return [float(part) if part[:1].isdigit() else part for part in re.split(r"(\d+(?:\.\d+)?)", name)]


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered variant names matching a glob ``pattern``, numbers in natural order; ``pretrained=True``: the
    pretrained world model tags (``variant.tag``) of :func:`hma_zoo.pretrained.pretrained_cfgs` instead."""
    from hma_zoo.pretrained import pretrained_cfgs

    _ensure_registered()
    names = list(pretrained_cfgs("hma")) if pretrained else sorted(_MODELS, key=natural_key)
    return [n for n in names if fnmatch.fnmatch(n, pattern)]


def _is_saved_source(name: str) -> bool:
    return name.startswith(("local-dir:", "hf-hub:")) or "." in name or name.count("/") == 1


def create_model(name: str, pretrained: bool = False, **overrides: Any) -> torch.nn.Module:
    """Build world model ``name``, with pretrained weights if ``pretrained`` (the timm convention).

    Args:
        name: a variant (``"hma-vq-s64"``), a pretrained tag (``"hma-vq-t64.simmix"``, see
            ``list_models(pretrained=True)``), ``local-dir:PATH`` or ``hf-hub:org/name``.
        pretrained: load the trained weights: a tag's local folder, else the local hub cache, else the hub. A bare
            variant takes its only tag. ``False``: fresh weights (for a tag or saved model: its saved architecture).
        overrides: variant fields (``embodiments=...``, ``tokens=...``; dataclasses or dicts, a dict updates the
            variant's sub-config). Not allowed for saved models: use ``model.with_embodiments`` to add robots.

    Raises:
        hma_zoo.pretrained.NoPretrainedWeightsError: ``pretrained=True`` and no weights exist for ``name`` (the
            message lists the pretrained tags); never random weights in their place.
        KeyError: unknown variant.
    """
    from hma_zoo import hub
    from hma_zoo.pretrained import NoPretrainedWeightsError, pretrained_cfgs, resolve_pretrained

    _ensure_registered()
    if pretrained and name in _MODELS:  # a bare variant: its one tag, as timm picks a model's default tag
        tags = [t for t, c in pretrained_cfgs("hma").items() if c.architecture == name]
        if len(tags) != 1:
            known = ", ".join(pretrained_cfgs("hma")) or "none"
            why = f"several tags: {tags}; name one" if tags else "none exist"
            raise NoPretrainedWeightsError(f"no pretrained weights for {name!r} ({why}). Pretrained world model "
                                           f"tags: {known}. Use pretrained=False for fresh weights.")
        name = tags[0]
    if _is_saved_source(name):
        if overrides:
            raise TypeError("overrides cannot be applied to a pretrained model; use model.with_embodiments(...)")
        model = hub.load_pretrained(resolve_pretrained(name, kind="hma"), kind="hma", weights=pretrained)
        model.pretrained_cfg = pretrained_cfgs().get(name)  # type: ignore[assignment]
        return model
    from hma_zoo.model.hma import HMA

    return HMA(model_config(name, **overrides))


def model_config(name: str, **overrides: Any) -> HMAConfig:
    """The validated :class:`HMAConfig` of variant ``name`` with ``overrides`` applied."""
    _ensure_registered()
    arch = name.split(".", 1)[0]
    if arch not in _MODELS:
        raise KeyError(f"unknown model {name!r}. Known variants: {sorted(_MODELS)}. See `hma-zoo models`.")
    unknown = set(overrides) - set(HMAConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown model override(s) {sorted(unknown)}; valid: {sorted(HMAConfig.__dataclass_fields__)}")
    fields = dict(_MODELS[arch].build())
    for key, value in overrides.items():
        if value is None:
            continue
        if key in _SUBCONFIGS and isinstance(value, dict):
            value = replace(fields.get(key, _SUBCONFIGS[key]()), **value)
        elif key in _SUBCONFIGS and not isinstance(value, _SUBCONFIGS[key]):
            raise TypeError(f"{key} must be a {_SUBCONFIGS[key].__name__} or a dict, got {type(value).__name__}")
        elif key == "embodiments":
            value = tuple(e if isinstance(e, EmbodimentSpec) else EmbodimentSpec(**e) for e in value)
        fields[key] = value
    mode = fields.get("conditioning", ConditioningConfig()).mode
    if not fields.get("embodiments") and mode != "none":
        raise ValueError(
            f"create_model({name!r}) needs embodiments=[EmbodimentSpec(name, action_dim, stride, ...)] "
            "(or conditioning={'mode': 'none'} for an action-free video model)"
        )
    return HMAConfig(**fields)


def load_pretrained(name_or_path: str, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a saved world model: a pretrained tag, a folder, ``local-dir:``/``hf-hub:`` name or hub id (the same
    resolution as ``create_model(name, pretrained=True)``)."""
    from hma_zoo import hub
    from hma_zoo.pretrained import resolve_pretrained

    _ensure_registered()
    return hub.load_pretrained(resolve_pretrained(name_or_path, kind="hma"), kind="hma", map_location=map_location)


def count_parameters(name: str, embodiments: tuple[EmbodimentSpec, ...] | None = None) -> int:
    """Parameters of variant ``name`` (default: one 7-D embodiment), counted on the meta device (no memory)."""
    from hma_zoo.model.hma import HMA

    embodiments = embodiments or (EmbodimentSpec("robot", action_dim=7, stride=1),)
    cfg = model_config(name, embodiments=embodiments)
    with torch.device("meta"):
        model = HMA(cfg)
    return sum(p.numel() for p in model.parameters())


def model_info(name: str) -> dict[str, Any]:
    """Size facts of a variant (for tables and cards)."""
    cfg = model_config(name, embodiments=(EmbodimentSpec("robot", action_dim=7, stride=1),))
    return {
        "name": name,
        "kind": cfg.tokens.kind,
        "d_model": cfg.trunk.d_model,
        "depth": cfg.trunk.depth,
        "heads": cfg.trunk.num_heads,
        "tokens_per_frame": cfg.tokens.tokens_per_frame,
        "max_frames": cfg.trunk.max_frames,
        "conditioning": cfg.conditioning.mode,
        "params": count_parameters(name),
        "description": _MODELS[name].description,
    }


def _print_pretrained(pattern: str) -> int:
    from pathlib import Path

    from hma_zoo.hub import describe, read_config
    from hma_zoo.pretrained import pretrained_cfgs

    rows = [c for t, c in pretrained_cfgs().items() if fnmatch.fnmatch(t, pattern)]
    if not rows:
        print(f"no pretrained tag matches {pattern!r}; known: {list(pretrained_cfgs())}", file=sys.stderr)
        return 1
    header = (f"{'tag':<22} {'kind':<9} {'data':<14} {'license':<11} {'metrics':<7} {'tokenizer':<31} "
              "weights")
    print(header)
    print("-" * len(header))
    for c in rows:
        where = str(c.folder) if c.folder is not None else f"hf-hub:{c.hf_hub_id}"
        tok = c.tokenizer or "-"
        if c.tokenizer and (Path(c.tokenizer) / "config.json").is_file():
            tok = f"{describe(read_config(c.tokenizer), c.tokenizer)['name']} (bundled)"
        print(f"{c.tag:<22} {c.kind:<9} {c.data or '-':<14} {c.license:<11} {'yes' if c.metrics_file else 'no':<7} "
              f"{tok:<31} {where}")
    return 0


def main(argv: list[str]) -> int:
    """``hma-zoo models [PATTERN] [--pretrained]``: print the variant table with parameter counts (one 7-D
    embodiment), or the pretrained tags."""
    import argparse

    parser = argparse.ArgumentParser(prog="hma-zoo models", description=main.__doc__)
    parser.add_argument("pattern", nargs="?", default="*", help="glob over names, e.g. 'hma-vq-*' (default: all)")
    parser.add_argument("--pretrained", action="store_true",
                        help="list the pretrained tags (world models and tokenizers) instead of the variants")
    args = parser.parse_args(argv)
    if args.pretrained:
        return _print_pretrained(args.pattern)
    names = list_models(args.pattern)
    if not names:
        print(f"no variant matches {args.pattern!r}; known: {list_models()}", file=sys.stderr)
        return 1
    header = f"{'name':<14} {'kind':<4} {'d':>5} {'depth':>5} {'heads':>5} {'tok/frame':>9} {'T':>3} {'params':>10}"
    print(header)
    print("-" * len(header))
    for n in names:
        info = model_info(n)
        print(f"{n:<14} {info['kind']:<4} {info['d_model']:>5} {info['depth']:>5} {info['heads']:>5} "
              f"{info['tokens_per_frame']:>9} {info['max_frames']:>3} {info['params'] / 1e6:>9.2f}M")
    return 0
