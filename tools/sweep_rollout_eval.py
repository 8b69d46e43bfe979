"""Add the evaluator's numbers to finished sweep points after the fact: the same :func:`rollout_metrics` a sweep's
``eval.rollout`` section runs (teacher-forced PSNR, delta-PSNR, the state probe's ``state_error_norm`` and raw
``state_error/<embodiment>``), on each point's ``last.ckpt`` weights, printed as one JSON line per point.

    hma-zoo probe fit --data data/sim-mix --threads 1          # the state probe (data/sim-mix/probe)
    python tools/sweep_rollout_eval.py --data data/sim-mix outputs/sweeps/vq-data-long/points/*

Used for the state-error table of docs/scaling.md. A new sweep gets the same numbers by putting
``eval: {rollout: {data: data/sim-mix, max_windows: 1000}}`` in its file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hma_zoo.sweep.point import load_weights, point_cli, rollout_metrics


def evaluate_folder(folder: Path, data: str, max_windows: int) -> dict:
    """The rollout metrics of the point in ``folder`` (its ``point.json`` recipe, its ``checkpoints/last.ckpt``)."""
    point = json.loads((folder / "point.json").read_text())
    extra = ["--trainer.logger=false", "--data.init_args.num_workers=0"]
    lit = point_cli(point["base"], point["overrides"], extra).model
    load_weights(lit, folder / "checkpoints" / "last.ckpt")
    start = time.perf_counter()
    out = rollout_metrics(lit, {"data": data, "max_windows": max_windows})
    return {"point": point["id"], **out, "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("points", nargs="+", type=Path, help="finished sweep point folders (with point.json)")
    parser.add_argument("--data", required=True, help="frame episodes the probe reads (e.g. data/sim-mix)")
    parser.add_argument("--max-windows", type=int, default=1000, help="val windows per point (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for folder in args.points:
        print(json.dumps(evaluate_folder(folder, args.data, args.max_windows)), flush=True)


if __name__ == "__main__":
    main()
