"""Rebuild the demo's built-in example prompts (``src/hma_zoo/demo/examples.npz``) from an episode dataset.

    python tools/make_demo_examples.py --data data/sim-mix-mini

Takes the first validation episode (by id) of every embodiment: its first frames and all its actions.
"""

from __future__ import annotations

import argparse

from hma_zoo.demo.prompts import EXAMPLES_FILE, build_examples, load_examples


def main() -> None:
    """Parse the arguments, write the file and print what it holds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="episode dataset folder (e.g. data/sim-mix-mini)")
    parser.add_argument("--out", default=str(EXAMPLES_FILE), help="output .npz (default: the packaged file)")
    parser.add_argument("--split", default="val", help="split to take the episodes from (default val)")
    args = parser.parse_args()
    path = build_examples(args.data, args.out, split=args.split)
    for name, p in load_examples(path).items():
        print(f"{name}: frames {p.frames.shape}, actions {p.actions.shape}, {p.frame_hz} Hz, {p.control}, {p.source}")
    print(f"wrote {path} ({path.stat().st_size / 1e3:.1f} kB)")


if __name__ == "__main__":
    main()
