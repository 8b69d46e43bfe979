"""Encode / decode throughput of zoo tokenizers (frames per second, median over repeats).

    nice .venv/bin/python benchmarks/tokenizer_throughput.py                       # fresh tok-vq-f8-1k, tok-kl-f8-c4
    nice .venv/bin/python benchmarks/tokenizer_throughput.py --tokenizers outputs/tokenizers/tok-vq-f8-1k --batch 1 64

Each entry of ``--tokenizers`` is a registry name (random weights: the speed is the same as trained) or a saved
folder. Prints one row per tokenizer, batch size and direction, with the decode/encode ratio. Timings on a shared,
loaded machine are noisy; compare rows of the same run.
"""

from __future__ import annotations

import argparse
import logging

import torch
from _timing import median_seconds

from hma_zoo.tokenizers import load_tokenizer

log = logging.getLogger("tokenizer_throughput")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizers", nargs="+", default=["tok-vq-f8-1k", "tok-kl-f8-c4"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 32], help="frames per call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; median of {args.repeats}")
    print(f"{'tokenizer':<34} {'batch':>5} {'encode f/s':>11} {'decode f/s':>11} {'dec/enc':>8}")
    for name in args.tokenizers:
        tok = load_tokenizer(name).eval()
        h, w = tok.spec.image_size
        for b in args.batch:
            frames = torch.randint(0, 256, (1, b, h, w, 3), dtype=torch.uint8)
            tokens = tok.encode(frames)
            enc = median_seconds(lambda f=frames, m=tok: m.encode(f), args.repeats)
            dec = median_seconds(lambda t=tokens, m=tok: m.decode(t), args.repeats)
            print(f"{name:<34} {b:>5} {b / enc:>11.1f} {b / dec:>11.1f} {enc / dec:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
