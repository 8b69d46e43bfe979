"""Frames per second of ``Simulator.step`` (world-model frame + tokenizer decode), batch 1 and batch 16.

Usage::

    nice .venv/bin/python benchmarks/simulator_fps.py [--variants hma-vq-t64 hma-vq-s64 hma-mar-t64 hma-mar-s64]
        [--batches 1 16] [--steps 2] [--repeats 20] [--threads 2]

Random weights (speed does not depend on training). Tokenizers: ``tok-vq-f8-1k`` for ``vq`` variants,
``tok-kl-f8-c4`` for ``mar``. Prints the median seconds per step and frames per second (batch x steps/s).
The issue's target: >= 20 FPS at batch 1 for the quickstart-sized model (hma-vq-t64) on two CPU cores.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import hma_zoo
from hma_zoo.configs import EmbodimentSpec
from hma_zoo.sim import Simulator
from hma_zoo.tokenizers import create_tokenizer


def bench(variant: str, batch: int, steps: int, repeats: int, warmup: int = 3) -> tuple[float, float]:
    """Median seconds per ``Simulator.step`` and the matching frames per second."""
    kind = variant.split("-")[1]
    tok = create_tokenizer("tok-vq-f8-1k" if kind == "vq" else "tok-kl-f8-c4").eval()
    emb = EmbodimentSpec("robot", action_dim=4, stride=4)
    model = hma_zoo.create_model(variant, embodiments=[emb], tokens=tok.spec.token_spec()).eval()
    sim = Simulator(model, tok, steps=steps, temperature=1.0, record=False)
    prompt = torch.randint(0, 256, (batch, 2, 64, 64, 3), dtype=torch.uint8)
    sim.reset(prompt, embodiment="robot")
    times = []
    for i in range(warmup + repeats):
        action = torch.randn(batch, 4)
        start = time.perf_counter()
        sim.step(action)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    med = statistics.median(times)
    return med, batch / med


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["hma-vq-t64", "hma-vq-s64", "hma-mar-t64", "hma-mar-s64"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    p.add_argument("--steps", type=int, default=2, help="MaskGIT/MAR steps per frame (paper: 2)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"Simulator.step incl. tokenizer decode, 64x64 frames, {args.steps} steps/frame, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'variant':<12} {'batch':>5} {'s/step':>9} {'FPS':>8}")
    for variant in args.variants:
        for batch in args.batches:
            with torch.inference_mode():
                sec, fps = bench(variant, batch, args.steps, args.repeats)
            print(f"{variant:<12} {batch:>5} {sec:>9.4f} {fps:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
