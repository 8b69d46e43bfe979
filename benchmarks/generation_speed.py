"""Per-frame generation latency with the KV cache against full recomputation of the same weights.

Batch 1 by default, context = the model's window minus one frame (11 frames for the T=12 variants), random weights
(speed does not depend on training). Both paths run in this one process, alternating, and we print medians
and the ratio. ``mar`` variants get one row per diffusion sampler of ``--samplers`` (``ddpm:50 ddim:8 ...``), and
``speed-up`` compares each row's cached latency with the first sampler's, measured in the same run.

    python benchmarks/generation_speed.py [--variants hma-vq-s64 ...] [--steps 2 8] [--samplers ddpm ddim:8 ddim:4]
    python benchmarks/generation_speed.py --variants hma-vq-b hma-mar-b --device cuda --bf16 --batches 1 16 \\
        --no-full --compile reduce-overhead      # the GPU suite (benchmarks/gpu_suite.sh)

``--no-full`` skips the recomputation column (slow for paper-size models); ``--compile MODE`` compiles the
fixed-shape parts of the trunk and the head (:func:`hma_zoo.sampling.compile_for_inference`; ``reduce-overhead`` =
CUDA graphs on a GPU).
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
from hma_zoo.sampling import FrameStepper, compile_for_inference


def _context(model: torch.nn.Module, frames: int, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    spec = model.config.tokens
    device = next(model.parameters()).device
    if spec.kind == "vq":
        tokens = torch.randint(0, spec.vocab_size, (batch, frames, *spec.grid), device=device)
    else:
        tokens = torch.randn(batch, frames, *spec.grid, spec.latent_channels, device=device)
    actions = torch.randn(batch, frames + 64, model.config.max_chunk_dim, device=device)
    return tokens, actions


def per_frame_latency(model: torch.nn.Module, use_cache: bool, steps: int, frames: int, repeats: int,
                      dtype: torch.dtype | None = None, batch: int = 1, sampler: str = "ddpm",
                      diffusion_steps: int | None = None) -> list[float]:
    """Seconds to generate one frame after a ``frames``-frame context, ``repeats`` times (sliding window)."""
    tokens, actions = _context(model, frames, batch)
    stepper = FrameStepper(model, steps=steps, temperature=1.0, use_cache=use_cache, sampler=sampler,
                           diffusion_steps=diffusion_steps or model.config.diffusion.sample_steps)
    autocast = torch.autocast(tokens.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    times = []
    with torch.no_grad(), autocast:
        stepper.reset(tokens, actions[:, : frames - 1], ["robot"] * batch)
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


def _samplers(specs: list[str]) -> list[tuple[str, int | None]]:
    out = []
    for spec in specs:
        name, _, steps = spec.partition(":")
        if name not in ("ddpm", "ddim"):
            raise SystemExit(f"--samplers: {spec!r} is not ddpm[:steps] or ddim[:steps]")
        out.append((name, int(steps) if steps else None))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["hma-vq-t64", "hma-vq-s64", "hma-mar-t64", "hma-mar-s64"])
    parser.add_argument("--steps", nargs="+", type=int, default=[2, 8], help="MaskGIT/MAR steps per frame")
    parser.add_argument("--samplers", nargs="+", default=["ddpm"],
                        help="mar rows: diffusion samplers as name[:steps] (default steps: the model's)")
    parser.add_argument("--batches", nargs="+", type=int, default=[1])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-full", action="store_true", help="skip the full-recomputation reference column")
    parser.add_argument("--compile", default=None, metavar="MODE",
                        help="compile_for_inference with this torch.compile mode (default, reduce-overhead, ...)")
    parser.add_argument("--paper-fps", type=float, default=None, help="print the ratio of FPS to this figure")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or
                                                                            platform.machine())
    print(f"machine: {name}, torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"dtype {'bf16' if args.bf16 else 'fp32'}, compile {args.compile or 'off'} (no tokenizer decode)")
    print(f"{'variant':<12} {'sampler':<8} {'batch':>5} {'steps':>5} {'context':>7} {'cached ms':>10} "
          f"{'full ms':>10} {'ratio':>6} {'speed-up':>8} {'FPS':>8}" + (" vs paper" if args.paper_fps else "")
          + ("  peak mem" if device.type == "cuda" else ""))
    dtype = torch.bfloat16 if args.bf16 else None
    for variant in args.variants:
        model = create_model(variant, embodiments=[EmbodimentSpec("robot", action_dim=7, stride=1)])
        model = model.to(device).eval()
        if args.compile:
            compile_for_inference(model, args.compile)
        frames = model.config.trunk.max_frames - 1
        rows = _samplers(args.samplers) if model.kind == "mar" else [("ddpm", None)]
        for batch in args.batches:
            for steps in args.steps:
                first = None
                for sampler, dsteps in rows:
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    cached, full = [], []
                    for _ in range(2):  # alternate the two paths so drift on a shared machine hits both
                        cached += per_frame_latency(model, True, steps, frames, args.repeats, dtype, batch, sampler,
                                                    dsteps)
                        if not args.no_full:
                            full += per_frame_latency(model, False, steps, frames, args.repeats, dtype, batch,
                                                      sampler, dsteps)
                    mc = statistics.median(cached)
                    first = first or mc
                    mf = statistics.median(full) if full else float("nan")
                    label = "-" if model.kind == "vq" else f"{sampler}:{dsteps or model.config.diffusion.sample_steps}"
                    fps = batch / mc
                    full_cols = f"{mf * 1e3:>10.1f} {mf / mc:>6.1f}" if full else f"{'-':>10} {'-':>6}"
                    line = (f"{variant:<12} {label:<8} {batch:>5} {steps:>5} {frames:>7} {mc * 1e3:>10.1f} "
                            f"{full_cols} {first / mc:>7.2f}x {fps:>8.1f}")
                    if args.paper_fps:
                        line += f" {fps / args.paper_fps:>7.2f}x"
                    if device.type == "cuda":
                        line += f" {torch.cuda.max_memory_allocated(device) / 2**30:>7.2f}G"
                    print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
