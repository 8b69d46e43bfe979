"""Video tokenizers of the zoo: discrete (``tok-vq-*``, FSQ/LFQ) and continuous (``tok-kl-*``), plus adapters.

::

    from hma_zoo.tokenizers import create_tokenizer, list_tokenizers, load_tokenizer
    tok = create_tokenizer("tok-vq-f8-1k")                 # fresh (untrained) model
    tok = create_tokenizer("tok-vq-f8-1k", vocab_size=2**18)  # factors default to (512, 512)
    tok = load_tokenizer("outputs/tokenizers/tok-vq-f8-1k")   # trained, from a save_pretrained folder
    ids = tok.encode(frames_uint8_BTHW3)                    # [B, T, 8, 8] int64
    check_compatible(tok.spec, world_model_config.tokens)   # clear error on a mismatch

Importing this package registers the hub kind ``"tokenizer"`` so :func:`hma_zoo.hub.load_pretrained` can rebuild
any tokenizer saved with :func:`hma_zoo.hub.save_pretrained`.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from pathlib import Path
from typing import Any

from torch import nn

from hma_zoo import hub
from hma_zoo.tokenizers.base import Tokenizer, TokenizerSpec, check_compatible
from hma_zoo.tokenizers.kl import KLTokenizer
from hma_zoo.tokenizers.vq import VQTokenizer

log = logging.getLogger(__name__)

__all__ = [
    "KLTokenizer",
    "Tokenizer",
    "TokenizerSpec",
    "VQTokenizer",
    "check_compatible",
    "create_tokenizer",
    "list_tokenizers",
    "load_tokenizer",
    "register_tokenizer",
    "train_tokenizer",
]

_F8 = {"channels": (64, 128), "num_res_blocks": 1, "patch_size": 4}  # f8: 4x4 space-to-depth, one stride-2 stage
# f4: the same 4x4 space-to-depth stem and one resolution only, so a 64x64 frame gives a 16x16 grid (the paper's
# grid) at about the cost of the f8 network; small objects (a 2-pixel Push-T agent) keep a token of their own.
_F4 = {"channels": (128,), "num_res_blocks": 2, "patch_size": 4}
_TINY = {"channels": (8, 16), "num_res_blocks": 1, "patch_size": 4}

# name -> (class name, constructor defaults). Variants only pin sizes; every knob can be overridden.
_REGISTRY: dict[str, tuple[str, dict[str, Any]]] = {
    "tok-vq-f8-1k": ("VQTokenizer", {**_F8, "vocab_size": 2**10}),
    "tok-vq-f8-4k": ("VQTokenizer", {**_F8, "vocab_size": 2**12}),
    "tok-vq-f8-16k": ("VQTokenizer", {**_F8, "vocab_size": 2**14}),
    "tok-vq-f8-64k": ("VQTokenizer", {**_F8, "vocab_size": 2**16}),
    "tok-vq-f8-256k": ("VQTokenizer", {**_F8, "vocab_size": 2**18}),
    "tok-lfq-f8-1k": ("VQTokenizer", {**_F8, "vocab_size": 2**10, "quantizer": "lfq"}),
    "tok-kl-f8-c4": ("KLTokenizer", {**_F8, "latent_channels": 4}),
    "tok-vq-f4-1k": ("VQTokenizer", {**_F4, "vocab_size": 2**10}),
    "tok-vq-f4-4k": ("VQTokenizer", {**_F4, "vocab_size": 2**12}),
    "tok-kl-f4-c4": ("KLTokenizer", {**_F4, "latent_channels": 4}),
    "tok-kl-f8-c8": ("KLTokenizer", {**_F8, "latent_channels": 8}),
    "tok-vq-test": ("VQTokenizer", {**_TINY, "vocab_size": 2**10}),
    "tok-kl-test": ("KLTokenizer", {**_TINY, "latent_channels": 4}),
}


def _classes() -> dict[str, type[Tokenizer]]:
    classes: dict[str, type[Tokenizer]] = {"VQTokenizer": VQTokenizer, "KLTokenizer": KLTokenizer}
    try:  # lazy: only when diffusers is installed
        from hma_zoo.tokenizers.diffusers_adapter import DiffusersKLTokenizer

        classes["DiffusersKLTokenizer"] = DiffusersKLTokenizer
    except ImportError:  # pragma: no cover
        pass
    return classes


def register_tokenizer(name: str, cls_name: str, defaults: dict[str, Any]) -> None:
    """Add a named variant (``cls_name`` is ``"VQTokenizer"`` or ``"KLTokenizer"``); names must be new."""
    if name in _REGISTRY:
        raise ValueError(f"tokenizer {name!r} is already registered")
    _REGISTRY[name] = (cls_name, dict(defaults))


def list_tokenizers(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered tokenizer names matching the shell-style ``pattern`` (e.g. ``"tok-vq-*"``), sorted;
    ``pretrained=True``: the pretrained tokenizer tags (``tok-vq-f4-4k.simmix``) instead."""
    if pretrained:
        from hma_zoo.pretrained import pretrained_cfgs

        return [n for n in pretrained_cfgs("tokenizer") if fnmatch.fnmatch(n, pattern)]
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_tokenizer(name: str, **overrides: Any) -> Tokenizer:
    """A fresh (randomly initialised) tokenizer of variant ``name`` with constructor ``overrides``.

    Raises:
        KeyError: unknown name (the message lists the registered ones).
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown tokenizer {name!r}; registered tokenizers: {list_tokenizers()}")
    cls_name, defaults = _REGISTRY[name]
    cls = _classes()[cls_name]
    kwargs = {**defaults, **overrides}
    if cls_name == "VQTokenizer" and "vocab_size" in overrides and "factor_sizes" not in overrides:
        kwargs.pop("factor_sizes", None)  # re-derive the factorisation for the new vocabulary
        kwargs.pop("levels", None)
    return cls(**kwargs, name=name)


def load_tokenizer(name_or_path: str | os.PathLike, **kwargs: Any) -> Tokenizer:
    """A tokenizer by registry name (fresh weights), pretrained tag / saved folder / hub id (trained weights) or
    ``diffusers:PATH``.

    Args:
        name_or_path: ``"tok-vq-f8-1k"`` (registry: untrained, ``kwargs`` are overrides); a pretrained tag
            (``"tok-vq-f8-1k.simmix"``, see ``list_tokenizers(pretrained=True)``: its folder, else the hub cache,
            else the hub); a folder written by :func:`hma_zoo.hub.save_pretrained`, ``local-dir:...``,
            ``hf-hub:org/name`` or ``org/name`` (``kwargs`` go to :func:`hma_zoo.hub.load_pretrained`);
            ``diffusers:PATH_OR_REPO`` (a diffusers ``AutoencoderKL``, ``kwargs`` go to
            ``DiffusersKLTokenizer.from_pretrained``).

    Raises:
        KeyError: neither a registered name nor a tag, folder or hub id (the message lists both kinds of name).
    """
    from hma_zoo.pretrained import NoPretrainedWeightsError, resolve_pretrained

    s = str(name_or_path)
    if s in _REGISTRY:
        return create_tokenizer(s, **kwargs)
    if s.startswith("diffusers:"):
        from hma_zoo.tokenizers.diffusers_adapter import DiffusersKLTokenizer

        return DiffusersKLTokenizer.from_pretrained(s[len("diffusers:") :], **kwargs)
    try:
        folder = resolve_pretrained(s, kind="tokenizer")
    except NoPretrainedWeightsError as err:
        if "." in s or "/" in s or Path(s).expanduser().exists():
            raise
        raise KeyError(
            f"{s!r} is neither a registered tokenizer nor a pretrained tag, saved tokenizer folder or hub id; "
            f"registered tokenizers: {list_tokenizers()}; pretrained: {list_tokenizers(pretrained=True)}"
        ) from err
    module = hub.load_pretrained(folder, kind="tokenizer", **kwargs)
    assert isinstance(module, Tokenizer)
    return module


def _hub_config(module: nn.Module) -> dict[str, Any]:
    if not isinstance(module, Tokenizer) or not hasattr(module, "arch_config"):
        raise TypeError(f"{type(module).__name__} is not a savable zoo tokenizer")
    return {"class": type(module).__name__, "spec": module.spec.to_dict(), "arch": module.arch_config()}


def _hub_build(config: dict[str, Any]) -> nn.Module:
    classes = _classes()
    cls_name = config.get("class")
    if cls_name not in classes:
        raise ValueError(f"unknown tokenizer class {cls_name!r} in config.json; known: {sorted(classes)}")
    module = classes[cls_name](**config["arch"])
    stored = config.get("spec")
    if stored is not None and TokenizerSpec(**stored) != module.spec:
        raise ValueError(f"config.json spec {stored} does not match the rebuilt tokenizer's spec {module.spec}")
    return module


hub.register_kind("tokenizer", _hub_build, _hub_config)


def __getattr__(name: str) -> Any:
    if name == "train_tokenizer":
        from hma_zoo.tokenizers.train import train_tokenizer

        return train_tokenizer
    if name == "DiffusersKLTokenizer":
        from hma_zoo.tokenizers.diffusers_adapter import DiffusersKLTokenizer

        return DiffusersKLTokenizer
    raise AttributeError(f"module 'hma_zoo.tokenizers' has no attribute {name!r}")
