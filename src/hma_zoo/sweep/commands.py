"""``hma-zoo sweep``: run a grid of ``hma-zoo fit`` points on a job engine, tabulate them, fit scaling laws.

* ``hma-zoo sweep --config sweep.yaml [--engine local|slurm|debug] [--workers N] [--threads T] [--dry-run]``:
  run (or resume) every point; finished points are skipped, killed ones resume from ``last.ckpt``.
* ``hma-zoo sweep status --config sweep.yaml``: which points are done, started or waiting.
* ``hma-zoo sweep fit OUT [--metric val_video_loss]``: ``results.csv``, L(N) / L(D) / L(C) fits with bootstrap
  intervals, the compute-optimal frontier, PNG plots and TensorBoard hparams, ``fits.json``.

The sweep file format is in :mod:`hma_zoo.sweep.spec`; docs/scaling.md has the CPU-scale study.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hma_zoo.sweep.spec import ENGINES, SweepSpec, load_sweep


def point_jobs(spec: SweepSpec) -> list[dict[str, Any]]:
    """The JSON job description of every point (what a worker process or a SLURM job receives)."""
    root = spec.root.resolve()
    ev = spec.eval.to_json()
    return [{"id": p.id, "overrides": p.overrides, "base": str(Path(spec.base).resolve()),
             "folder": str(root / "points" / p.id), "eval": ev, "threads": spec.threads} for p in spec.points()]


def run_sweep(spec: SweepSpec, dry_run: bool = False, wait: bool = False) -> dict[str, Any]:
    """Run the points of ``spec`` that have no result yet on its engine; returns ``{"pending", "codes"|"jobs"}``."""
    from hma_zoo.sweep import engines

    jobs = point_jobs(spec)
    spec.root.mkdir(parents=True, exist_ok=True)
    (spec.root / "sweep.json").write_text(json.dumps({"name": spec.name, "source": spec.source, "base": spec.base,
                                                      "engine": spec.engine, "points": jobs}, indent=1, default=str))
    todo = engines.pending(jobs)
    print(f"sweep {spec.name}: {len(jobs)} points, {len(jobs) - len(todo)} done, {len(todo)} to run on "
          f"{spec.engine} ({spec.workers} at once, {spec.threads} threads each) -> {spec.root}")
    if dry_run:
        for j in todo:
            print(f"  {j['id']}: " + " ".join(f"{k}={v}" for k, v in j["overrides"].items()))
        return {"pending": [j["id"] for j in todo]}
    if not todo:
        return {"pending": [], "codes": {}}
    if spec.engine == "slurm":
        ids = engines.submit_slurm(todo, spec.root / "submitit", spec.slurm, spec.threads, wait=wait)
        for pid, jid in ids.items():
            print(f"  submitted {pid}: job {jid}")
        return {"pending": [j["id"] for j in todo], "jobs": ids}

    n_done = 0

    def report(pid: str, code: int) -> None:
        nonlocal n_done
        n_done += 1
        status = "done" if code == 0 else f"FAILED (exit {code}; see {spec.root / 'points' / pid / 'log.txt'})"
        print(f"  [{n_done}/{len(todo)}] {pid}: {status}", flush=True)

    if spec.engine == "debug":
        codes = engines.run_debug(todo, on_done=report)
    else:
        codes = engines.run_local(todo, spec.workers, on_done=report)
    return {"pending": [pid for pid, c in codes.items() if c != 0], "codes": codes}


def _status(spec: SweepSpec) -> int:
    for j in point_jobs(spec):
        folder = Path(j["folder"])
        state = ("done" if (folder / "result.json").is_file() else
                 "started (resumes from last.ckpt)" if (folder / "checkpoints" / "last.ckpt").is_file() else
                 "started" if folder.is_dir() else "waiting")
        print(f"{state:<34} {j['id']}")
    return 0


def _fit(root: str, metric: str, n_boot: int) -> int:
    from hma_zoo.sweep.laws import analyse

    report = analyse(root, metric=metric, n_boot=n_boot)
    print(f"{report['points']} points; table: {Path(root) / 'results.csv'}")
    for x, fits in report["fits"].items():
        for f in fits:
            print(f"[{x}] {f['group']}: L = {f['a']:.4g} * {x}^-{f['b']:.3f} + {f['c']:.4f}; "
                  f"b 95% [{f['b_ci'][0]:.3f}, {f['b_ci'][1]:.3f}], c 95% [{f['c_ci'][0]:.4f}, {f['c_ci'][1]:.4f}], "
                  f"R^2 {f['r2']:.3f}" + "".join(f"; {n}" for n in f["notes"]))
        for p in report["problems"].get(x, []):
            print(f"[{x}] no fit: {p}")
    for p in report["plots"]:
        print(f"plot: {p}")
    print(f"TensorBoard hparams: tensorboard --logdir {Path(root) / 'tb_hparams'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hma-zoo sweep`` (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="hma-zoo sweep", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action")
    run = sub.add_parser("run", help="run or resume the points of a sweep (the default action)")
    status = sub.add_parser("status", help="which points are done, started or waiting")
    for p in (run, status):
        p.add_argument("--config", required=True, help="the sweep file (YAML; format in hma_zoo.sweep.spec)")
    run.add_argument("--engine", choices=ENGINES, default=None, help="override the file's engine")
    run.add_argument("--workers", type=int, default=None, help="local engine: points at once (override)")
    run.add_argument("--threads", type=int, default=None, help="torch threads per point (override)")
    run.add_argument("--out", default=None, help="override the file's output folder")
    run.add_argument("--dry-run", action="store_true", help="list the points still to run, and run nothing")
    run.add_argument("--wait", action="store_true", help="slurm: block until the jobs end")
    fit = sub.add_parser("fit", help="table, scaling-law fits with bootstrap intervals, frontier, plots")
    fit.add_argument("out", help="the sweep's output folder (its `out:`)")
    fit.add_argument("--metric", default="val_video_loss",
                     help="the column to fit (val_video_loss, val_loss, perplexity, state_error_norm with "
                          "eval.rollout, ...; default val_video_loss)")
    fit.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the intervals (default 1000)")
    if argv and argv[0] not in ("run", "status", "fit", "-h", "--help"):
        argv = ["run", *argv]  # `hma-zoo sweep --config x.yaml` runs
    args = parser.parse_args(argv)
    if args.action is None:
        parser.print_help()
        return 2
    if args.action == "fit":
        return _fit(args.out, args.metric, args.n_boot)
    spec = load_sweep(args.config, **({} if args.action == "status" else
                                      {"engine": args.engine, "workers": args.workers, "threads": args.threads,
                                       "out": args.out}))
    if args.action == "status":
        return _status(spec)
    result = run_sweep(spec, dry_run=args.dry_run, wait=args.wait)
    failed = [pid for pid, c in result.get("codes", {}).items() if c != 0]
    if failed:
        print(f"{len(failed)} point(s) failed; fix and rerun the same command (finished points are skipped)",
              file=sys.stderr)
        return 1
    return 0
