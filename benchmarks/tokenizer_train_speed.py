"""Tokenizer training speed: ``train_tokenizer`` (a Lightning Trainer fitting TokenizerLitModule) against a bare
PyTorch loop doing the same steps (the plain loop ``train_tokenizer`` used to be), in training steps per second.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/tokenizer_train_speed.py                 # the quickstart's
    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/tokenizer_train_speed.py --tokenizer tok-vq-f8-1k --steps 30

Both train the same fresh tokenizer on random 64x64 frames held in memory (the speed does not depend on what the
frames show) with the quickstart's settings (batch 32, AdamW, warm-up + cosine, gradient clip 1, one torch thread).
Rows alternate between the two (``--repeats`` rounds) so a change of load on a shared machine hits both; the table
gives the median steps per second of each and their ratio. ``train_tokenizer``'s figure counts its own training
loop (``train_metrics["seconds"]``, from the first step on) and, apart, the Trainer set-up before it.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from hma_zoo.schedules import warmup_schedule
from hma_zoo.tokenizers import create_tokenizer
from hma_zoo.tokenizers.losses import TokenizerLoss
from hma_zoo.tokenizers.train import train_tokenizer


def bare_loop(name: str, frames: torch.Tensor, steps: int, batch_size: int, lr: float = 1e-3) -> float:
    """Seconds of ``steps`` plain PyTorch training steps (model built outside the timing)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    tok = create_tokenizer(name, image_size=tuple(frames.shape[1:3])).train()
    crit = TokenizerLoss()
    opt = torch.optim.AdamW(tok.parameters(), lr=lr, betas=(0.9, 0.99))
    start = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * warmup_schedule(step, 100, "cosine", steps, 0.1)
        idx = torch.randint(0, frames.shape[0], (batch_size,), generator=gen)
        images = frames[idx].permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        loss, _ = crit.generator_loss(images, tok(images), step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tok.parameters(), 1.0)
        opt.step()
    return time.perf_counter() - start


def lightning_run(name: str, frames: torch.Tensor, steps: int, batch_size: int) -> tuple[float, float]:
    """(seconds of the training steps, seconds of everything else in the call) of ``train_tokenizer``."""
    start = time.perf_counter()
    tok = train_tokenizer(name, None, steps, frames={"bench": frames}, batch_size=batch_size, progress=False)
    total = time.perf_counter() - start
    loop = float(tok.train_metrics["seconds"])
    return loop, total - loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="tok-vq-f4-4k", help="registry name (the quickstart trains f4-4k)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    frames = torch.randint(0, 256, (512, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    bare, lit, setup = [], [], []
    for _ in range(args.repeats):
        bare.append(args.steps / bare_loop(args.tokenizer, frames, args.steps, args.batch))
        loop, other = lightning_run(args.tokenizer, frames, args.steps, args.batch)
        # the loop's clock starts at on_train_start, before the first batch: steps / loop seconds
        lit.append(args.steps / loop)
        setup.append(other)
    b, m = statistics.median(bare), statistics.median(lit)
    print(f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread, torch {torch.__version__}; "
          f"{args.tokenizer}, batch {args.batch}, {args.steps} steps, median of {args.repeats} alternating rounds")
    print(f"{'bare PyTorch loop':<28} {b:8.3f} steps/s")
    print(f"{'train_tokenizer (Lightning)':<28} {m:8.3f} steps/s   (+{statistics.median(setup):.2f} s set-up per call)")
    print(f"{'Lightning / bare':<28} {m / b:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
