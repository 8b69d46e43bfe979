"""Variant registry in the style of timm: ``create_model(name, **overrides)``, ``list_models(pattern)``.

Names are ``hma-{vq|mar}-{size}[.{weights_tag}]``. The part before the dot picks the architecture; a tag picks
registered pretrained weights (a hub repo or local folder). ``local-dir:PATH`` and ``hf-hub:org/name`` load a
saved model directly. Unknown or ambiguous names fail with the list of what exists.
"""

from __future__ import annotations

import fnmatch
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
_PRETRAINED: dict[str, str] = {}  # "variant.tag" -> hub repo id or local folder

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
    """Register pretrained weights ``variant.tag`` stored at ``source`` (hub id or folder)."""
    arch = name.split(".", 1)[0]
    if arch not in _MODELS:
        raise KeyError(f"cannot tag weights for unknown variant {arch!r}")
    _PRETRAINED[name] = source


def _ensure_registered() -> None:
    if not _MODELS:
        import hma_zoo.variants  # noqa: F401  (registers the named sizes)


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered variant names matching a glob ``pattern`` (``pretrained=True``: tagged weights only, the shipped
    ones of ``pretrained/`` included)."""
    from hma_zoo.pretrained import shipped

    _ensure_registered()
    names = sorted(set(_PRETRAINED) | set(shipped("hma"))) if pretrained else sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)]


def create_model(name: str, pretrained: bool = False, **overrides: Any) -> torch.nn.Module:
    """Build variant ``name`` (e.g. ``"hma-vq-s64"``) with ``overrides`` (``embodiments=...``, ``tokens=...``, ...).

    Sub-config overrides may be dataclasses or dicts (a dict updates the variant's sub-config). ``name`` may also
    be ``local-dir:PATH``, ``hf-hub:org/name`` or a registered ``variant.tag``: then the saved model is loaded
    (overrides are not allowed there; use ``model.with_embodiments`` to add robots).
    """
    from hma_zoo.pretrained import shipped

    if (name.startswith(("local-dir:", "hf-hub:")) or name in _PRETRAINED or name in shipped("hma")
            or (pretrained and "." in name)):
        if overrides:
            raise TypeError("overrides cannot be applied to a pretrained model; use model.with_embodiments(...)")
        return load_pretrained(name)
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
    """Load a saved world model from a folder, ``local-dir:``/``hf-hub:`` name, hub id or registered tag."""
    from hma_zoo import hub
    from hma_zoo.pretrained import resolve_shipped

    _ensure_registered()
    source = _PRETRAINED.get(name_or_path, resolve_shipped(name_or_path))
    return hub.load_pretrained(source, kind="hma", map_location=map_location)


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


def main(argv: list[str]) -> int:
    """``hma-zoo models [PATTERN]``: print the variant table with parameter counts (one 7-D embodiment)."""
    pattern = argv[0] if argv else "*"
    names = list_models(pattern)
    if not names:
        print(f"no variant matches {pattern!r}; known: {list_models()}", file=sys.stderr)
        return 1
    header = f"{'name':<14} {'kind':<4} {'d':>5} {'depth':>5} {'heads':>5} {'tok/frame':>9} {'T':>3} {'params':>10}"
    print(header)
    print("-" * len(header))
    for n in names:
        info = model_info(n)
        print(f"{n:<14} {info['kind']:<4} {info['d_model']:>5} {info['depth']:>5} {info['heads']:>5} "
              f"{info['tokens_per_frame']:>9} {info['max_frames']:>3} {info['params'] / 1e6:>9.2f}M")
    return 0
