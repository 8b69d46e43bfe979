"""Optional inference speed-ups of a world model: ``torch.compile`` of the cache-free parts of the trunk.

The per-frame step mixes parts whose shapes never change during a rollout (spatial attention, the adaLN branch, the
MLP, the heads: one frame in, one frame out) with the temporal attention, which reads a KV cache whose length and
place in its buffer move from frame to frame (:class:`hma_zoo.model.trunk.LayerKV`). Compiling a whole block would
specialise on the cache's state and recompile every frame; :func:`compile_for_inference` compiles the two fixed
parts of every block (:meth:`~hma_zoo.model.trunk.STBlock.before_time` and ``after_time``) and the head, so a rollout
sees a handful of shapes (one or two frames per pass, the batch, doubled under guidance).
``mode="reduce-overhead"`` replays them as CUDA graphs on a GPU (the launch overhead is what limits paper-size models
at batch 1); on a CPU, ``mode="default"`` fuses their elementwise work into C++
kernels (needs a C++ compiler; measured in ``benchmarks/simulator_fps.py --compile``).

Weights, state-dict keys and results (up to floating-point reassociation) are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


def compile_for_inference(model: nn.Module, mode: str | None = "default") -> nn.Module:
    """Compile, in place, the fixed-shape sub-modules of every trunk block of ``model`` (an
    :class:`~hma_zoo.model.HMA`) and its video head; returns ``model``. ``mode``: a ``torch.compile`` mode
    (``"default"``, ``"reduce-overhead"``, ``"max-autotune"``, ...); ``None`` does nothing."""
    if mode is None:
        return model
    if mode not in ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
        raise ValueError(f"unknown torch.compile mode {mode!r}; use default, reduce-overhead, max-autotune or "
                         "max-autotune-no-cudagraphs")
    for block in model.trunk.blocks:
        # bound methods compiled and set on the instance: no new submodules, so the state dict keeps its keys
        block.before_time = torch.compile(block.before_time, mode=mode, dynamic=False)
        block.after_time = torch.compile(block.after_time, mode=mode, dynamic=False)
    head = model.video_head
    if hasattr(head, "condition"):  # mar: the per-token condition; the diffusion MLP runs on a changing row count
        head.condition = torch.compile(head.condition, mode=mode, dynamic=False)
    else:
        head.compile(mode=mode, dynamic=False)
    return model


def autocast_context(device: torch.device | str, dtype: torch.dtype | None) -> torch.autocast:
    """``torch.autocast`` on ``device``'s type to ``dtype`` (disabled when ``dtype`` is ``None``)."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
