"""Frames per second of ``Simulator.step`` (world-model frame + tokenizer decode), with the compute limit.

Usage::

    nice .venv/bin/python benchmarks/simulator_fps.py [--variants hma-vq-t64 hma-vq-s64 hma-mar-t64 hma-mar-s64]
        [--batches 1 16] [--steps 2] [--repeats 20] [--threads 1]
    # the shipped models and their bundled tokenizers, mar with the DDPM sampler and few-step DDIM side by side:
    nice .venv/bin/python benchmarks/simulator_fps.py --variants hma-vq-t64.simmix hma-mar-t64.simmix \
        --samplers ddpm:50 ddim:8 ddim:4 --batches 1 --threads 1 --flops

A name with a tag (``hma-vq-t64.simmix``) loads the shipped weights with :func:`hma_zoo.load_simulator`; a bare
variant gets random weights (speed does not depend on training) and ``tok-vq-f8-1k`` (``vq``) or ``tok-kl-f8-c4``
(``mar``). ``--samplers`` adds one row per ``mar`` diffusion sampler (``name:steps``; ``vq`` rows ignore it), all
in this one process, so the ``ratio`` column (speed-up over the first row of the same model and batch) compares
rows measured under the same load. ``CPU ms`` is the process CPU time of a step (``time.process_time``): on a
shared machine wall time also counts the time the process waited for a core, CPU time does not. ``--flops``
counts the FLOPs of one step with
``torch.utils.flop_counter.FlopCounterMode`` and times a dense matmul in the same run: ``% peak`` is the step's
achieved FLOP/s over that matmul's, ``limit FPS`` the frame rate if every FLOP ran at the matmul's speed.
``--compile [MODE]`` builds ``Simulator(compile=MODE)`` (compiled fixed-shape trunk parts and decoder; with
``--eager-too`` an eager row precedes each compiled one).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

import hma_zoo
from hma_zoo.configs import EmbodimentSpec
from hma_zoo.sim import Simulator
from hma_zoo.tokenizers import create_tokenizer


def make_simulator(name: str, steps: int, sampler: str = "ddpm", diffusion_steps: int | None = None,
                   device: str = "cpu", compile: str | None = None) -> tuple[Simulator, str, int]:
    """A simulator for a shipped tag or a bare variant; returns it, the embodiment to drive and its chunk width."""
    kw = dict(steps=steps, temperature=1.0, record=False, sampler=sampler, diffusion_steps=diffusion_steps,
              compile=compile)
    if "." in name:
        sim = hma_zoo.load_simulator(name, **kw)
        sim.model.to(device)
        sim.tokenizer.to(device)
        emb = sim.model.config.embodiment_names[0]
        return sim, emb, sim.model.config.embodiment(emb).chunk_dim
    kind = name.split("-")[1]
    tok = create_tokenizer("tok-vq-f8-1k" if kind == "vq" else "tok-kl-f8-c4").eval().to(device)
    emb = EmbodimentSpec("robot", action_dim=4, stride=4)
    model = hma_zoo.create_model(name, embodiments=[emb], tokens=tok.spec.token_spec()).eval().to(device)
    return Simulator(model, tok, **kw), "robot", emb.chunk_dim


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(sim: Simulator, emb: str, chunk: int, batch: int, repeats: int, warmup: int = 3, device: str = "cpu",
          flops: bool = False) -> dict[str, float]:
    """Median seconds per ``Simulator.step``, frames per second and (``flops``) FLOPs of one step."""
    h, w = sim.tokenizer.spec.image_size
    prompt = torch.randint(0, 256, (batch, 2, h, w, 3), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    sim.reset(prompt, embodiment=emb)
    times, cpu_times = [], []
    for i in range(warmup + repeats):
        action = torch.randn(batch, chunk, generator=gen)
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        sim.step(action)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    med = statistics.median(times)
    out = {"s_step": med, "fps": batch / med, "cpu_s_step": statistics.median(cpu_times)}
    if flops:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            sim.step(torch.randn(batch, chunk, generator=gen))
        out["flop_step"] = float(counter.get_total_flops())
    return out


def parse_samplers(specs: list[str]) -> list[tuple[str, int | None]]:
    """``["ddpm:50", "ddim:8", "ddpm"]`` -> ``[("ddpm", 50), ("ddim", 8), ("ddpm", None)]``."""
    out = []
    for spec in specs:
        name, _, steps = spec.partition(":")
        if name not in ("ddpm", "ddim"):
            raise SystemExit(f"--samplers: {spec!r} is not ddpm[:steps] or ddim[:steps]")
        out.append((name, int(steps) if steps else None))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["hma-vq-t64", "hma-vq-s64", "hma-mar-t64", "hma-mar-s64"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    p.add_argument("--steps", type=int, default=2, help="MaskGIT/MAR steps per frame (paper: 2)")
    p.add_argument("--samplers", nargs="+", default=["ddpm"],
                   help="mar rows: diffusion samplers as name[:steps], e.g. ddpm:50 ddim:8 ddim:4")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="autocast the step to bfloat16")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="Simulator(compile=MODE): compiled trunk parts and decoder (CPU: needs a C++ compiler)")
    p.add_argument("--eager-too", action="store_true", help="with --compile: an eager row before each compiled one")
    p.add_argument("--flops", action="store_true", help="count FLOPs per step and time a matmul peak in this run")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    samplers = parse_samplers(args.samplers)
    peak = None
    if args.flops:
        from hma_zoo.lit.callbacks import measure_matmul_peak

        peak = measure_matmul_peak(args.device, torch.bfloat16 if args.bf16 else torch.float32)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Simulator.step incl. tokenizer decode, {args.steps} MaskGIT/MAR steps/frame, device {args.device}, "
          f"{platform.machine()} {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
          f"{'bf16' if args.bf16 else 'fp32'}{', compile ' + args.compile if args.compile else ''}, median of "
          f"{args.repeats}, load average {load:.1f} at start"
          + (f", matmul peak {peak / 1e9:.1f} GFLOP/s" if peak else ""))
    header = (f"{'model':<20} {'sampler':<10} {'batch':>5} {'ms/step':>9} {'FPS':>8} {'ratio':>6} {'CPU ms':>7} "
              f"{'CPU FPS':>7}")
    if peak:
        header += f" {'GFLOP/frame':>11} {'% peak':>7} {'limit FPS':>9}"
    print(header)
    autocast = torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16)
    for name in args.variants:
        rows = samplers if "-mar-" in name else [("ddpm", None)]
        for batch in args.batches:
            first = None
            for sampler, dsteps in rows:
                for mode in ([None] if args.eager_too else []) + [args.compile]:
                    sim, emb, chunk = make_simulator(name, args.steps, sampler, dsteps, args.device, mode)
                    with torch.inference_mode(), autocast:
                        r = bench(sim, emb, chunk, batch, args.repeats, warmup=12 if mode else 3, device=args.device,
                                  flops=peak is not None and mode is None)
                    first = first or r["s_step"]
                    n_steps = dsteps or sim.model.config.diffusion.sample_steps
                    label = "-" if "-mar-" not in name else f"{sampler}:{n_steps}"
                    label += "+c" if mode else ""
                    line = (f"{name:<20} {label:<10} {batch:>5} {r['s_step'] * 1e3:>9.2f} {r['fps']:>8.1f} "
                            f"{first / r['s_step']:>5.2f}x {r['cpu_s_step'] * 1e3:>7.2f} "
                            f"{batch / r['cpu_s_step']:>7.1f}")
                    if "flop_step" in r:
                        per_frame = r["flop_step"] / batch
                        line += (f" {per_frame / 1e9:>11.3f} {100 * r['flop_step'] / r['s_step'] / peak:>6.1f}% "
                                 f"{peak / per_frame:>9.1f}")
                    print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
