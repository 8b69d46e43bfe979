"""How much of a frame moves per model frame, per embodiment and frame skip: is one frame interval visible motion?

Usage::

    .venv/bin/python benchmarks/motion_per_frame.py [--data data/sim-mix-mini] [--skips 1 2 3 4] [--threshold 12]

For every train episode, the share of pixels whose value changes by more than ``--threshold`` (of 255, any
channel) between consecutive model frames when every ``k``-th stored frame is kept (``frame_skip = k`` in
:class:`hma_zoo.data.HMADataModule`); mean over episodes, in percent.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from hma_zoo.tokenizers.train import load_episode_frames


def motion_share(episode: np.ndarray, skip: int, threshold: int) -> float:
    """Share of pixels changing by more than ``threshold`` between frames ``skip`` apart, ``[T, H, W, 3]`` uint8."""
    x = torch.from_numpy(episode[::skip]).to(torch.int16)
    if x.shape[0] < 2:
        return float("nan")
    return float(((x[1:] - x[:-1]).abs().amax(-1) > threshold).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/sim-mix-mini")
    p.add_argument("--skips", nargs="+", type=int, default=[1, 2, 3, 4])
    p.add_argument("--threshold", type=int, default=12)
    args = p.parse_args()
    episodes = load_episode_frames(args.data, "train")
    print(f"pixels changed by > {args.threshold}/255 between model frames, % (mean over train episodes)")
    print(f"{'embodiment':<20}" + "".join(f"{'skip ' + str(k):>9}" for k in args.skips))
    for name, eps in sorted(episodes.items()):
        vals = [100 * np.nanmean([motion_share(e, k, args.threshold) for e in eps]) for k in args.skips]
        print(f"{name:<20}" + "".join(f"{v:>9.2f}" for v in vals))


if __name__ == "__main__":
    main()
