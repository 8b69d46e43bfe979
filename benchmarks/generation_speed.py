"""Per-frame generation latency with the KV cache against full recomputation of the same weights.

Batch 1, context = the model's window minus one frame (11 frames for the T=12 variants), random weights
(speed does not depend on training). Both paths run in this one process, alternating, and we print medians
and the ratio. Run: ``python benchmarks/generation_speed.py [--variants hma-vq-s64 ...] [--steps 2 8]``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch

from hma_zoo import create_model
from hma_zoo.configs import EmbodimentSpec
from hma_zoo.sampling import FrameStepper


def _context(model: torch.nn.Module, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    spec = model.config.tokens
    device = next(model.parameters()).device
    if spec.kind == "vq":
        tokens = torch.randint(0, spec.vocab_size, (1, frames, *spec.grid), device=device)
    else:
        tokens = torch.randn(1, frames, *spec.grid, spec.latent_channels, device=device)
    actions = torch.randn(1, frames + 64, model.config.max_chunk_dim, device=device)
    return tokens, actions


def per_frame_latency(model: torch.nn.Module, use_cache: bool, steps: int, frames: int, repeats: int,
                      dtype: torch.dtype | None = None) -> list[float]:
    """Seconds to generate one frame after a ``frames``-frame context, ``repeats`` times (sliding window)."""
    tokens, actions = _context(model, frames)
    stepper = FrameStepper(model, steps=steps, temperature=1.0, use_cache=use_cache,
                           diffusion_steps=model.config.diffusion.sample_steps)
    autocast = torch.autocast(tokens.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    times = []
    with torch.no_grad(), autocast:
        stepper.reset(tokens, actions[:, : frames - 1], "robot")
        for i in range(repeats + 1):
            if tokens.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            stepper.step(actions[:, frames - 1 + i])
            if tokens.device.type == "cuda":
                torch.cuda.synchronize()
            if i > 0:  # first step warms up
                times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", default=["hma-vq-t64", "hma-vq-s64", "hma-mar-t64", "hma-mar-s64"])
    parser.add_argument("--steps", nargs="+", type=int, default=[2, 8], help="MaskGIT/MAR steps per frame")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, device {device}, "
          f"threads {torch.get_num_threads()}, dtype {'bf16' if args.bf16 else 'fp32'}")
    print(f"{'variant':<12} {'steps':>5} {'context':>7} {'cached ms':>10} {'full ms':>10} {'ratio':>6} "
          f"{'cached FPS':>10}")
    for name in args.variants:
        model = create_model(name, embodiments=[EmbodimentSpec("robot", action_dim=7, stride=1)]).to(device).eval()
        frames = model.config.trunk.max_frames - 1
        for steps in args.steps:
            cached, full = [], []
            for _ in range(2):  # alternate the two paths so drift on a shared machine hits both
                cached += per_frame_latency(model, True, steps, frames, args.repeats,
                                            torch.bfloat16 if args.bf16 else None)
                full += per_frame_latency(model, False, steps, frames, args.repeats,
                                          torch.bfloat16 if args.bf16 else None)
            mc, mf = statistics.median(cached), statistics.median(full)
            print(f"{name:<12} {steps:>5} {frames:>7} {mc * 1e3:>10.1f} {mf * 1e3:>10.1f} {mf / mc:>6.1f} "
                  f"{1 / mc:>10.1f}")


if __name__ == "__main__":
    main()
