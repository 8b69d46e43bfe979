"""Where sweep points run. No scheduler of our own: each engine hands the points to an existing one.

* ``local``: one worker process per point (``python -m hma_zoo.sweep.point``), at most ``workers`` at once, through
  :class:`concurrent.futures.ThreadPoolExecutor` waiting on subprocesses; ``OMP_NUM_THREADS`` / torch threads are
  ``threads`` per point, so ``workers * threads`` should not exceed the cores. A point's output goes to its
  ``log.txt``.
* ``slurm``: a SLURM job array through submitit (:class:`submitit.AutoExecutor`); the ``slurm:`` block of the sweep
  file maps to ``update_parameters`` (``partition``, ``timeout_min``, ``gpus_per_node``, ``cpus_per_task``,
  ``mem_gb``, ``array_parallelism`` ...). Jobs are submitted and the command returns their ids unless ``wait``.
  A preempted or timed-out job rerun by SLURM resumes from the point's ``last.ckpt``.
* ``debug``: the points run one after another in this process (submitit's ``debug`` cluster semantics, without
  pickling); for tests and for stepping through a point in a debugger.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from hma_zoo.sweep.point import RESULT, run_point

_SLURM_KEYS = {"partition": "slurm_partition", "account": "slurm_account", "qos": "slurm_qos",
               "constraint": "slurm_constraint", "array_parallelism": "slurm_array_parallelism",
               "additional_parameters": "slurm_additional_parameters", "setup": "slurm_setup"}


def _run_local_one(point: dict[str, Any]) -> tuple[str, int]:
    folder = Path(point["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "point.json"
    spec.write_text(json.dumps(point, indent=1, default=str))
    threads = str(point.get("threads", 1))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with open(folder / "log.txt", "a") as log:
        proc = subprocess.run([sys.executable, "-m", "hma_zoo.sweep.point", str(spec)], stdout=log,
                              stderr=subprocess.STDOUT, env=env, check=False)
    return point["id"], proc.returncode


def run_local(points: list[dict[str, Any]], workers: int,
              on_done: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Run ``points`` as subprocesses, ``workers`` at a time; returns ``{point id: exit code}``."""
    codes: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(_run_local_one, p) for p in points]
        for fut in as_completed(futures):
            pid, code = fut.result()
            codes[pid] = code
            if on_done is not None:
                on_done(pid, code)
    return codes


def run_debug(points: list[dict[str, Any]],
              on_done: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Run ``points`` one after another in this process (exceptions propagate)."""
    codes: dict[str, int] = {}
    for p in points:
        run_point(p)
        codes[p["id"]] = 0
        if on_done is not None:
            on_done(p["id"], 0)
    return codes


def slurm_executor(folder: str | Path, slurm: dict[str, Any], threads: int, cluster: str | None = "slurm") -> Any:
    """A configured :class:`submitit.AutoExecutor` for the sweep's ``slurm:`` block (``cluster=None``: auto-detect).

    Keys that submitit knows as ``slurm_*`` may be given without the prefix; ``timeout_min``, ``gpus_per_node``,
    ``cpus_per_task``, ``mem_gb``, ``nodes``, ``tasks_per_node`` pass through. ``cpus_per_task`` defaults to
    ``threads``.
    """
    try:
        import submitit
    except ImportError as err:  # pragma: no cover - submitit is in the sweep extra
        raise ImportError("the slurm engine needs submitit: pip install 'hma-zoo[sweep]'") from err
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {"cpus_per_task": threads, "name": "hma-sweep"}
    for key, value in slurm.items():
        params[_SLURM_KEYS.get(key, key)] = value
    executor.update_parameters(**params)
    return executor


def submit_slurm(points: list[dict[str, Any]], folder: str | Path, slurm: dict[str, Any], threads: int,
                 wait: bool = False) -> dict[str, str]:
    """Submit ``points`` as one SLURM job array through submitit; returns ``{point id: job id}``.

    With ``wait``, blocks until every job ended and raises on the first failure (submitit re-raises the job's
    exception with its traceback).
    """
    executor = slurm_executor(folder, slurm, threads)
    jobs = executor.map_array(run_point, points)
    ids = {p["id"]: job.job_id for p, job in zip(points, jobs)}
    if wait:
        for job in jobs:
            job.result()
    return ids


def pending(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points without a ``result.json`` (what a rerun still has to do)."""
    return [p for p in points if not (Path(p["folder"]) / RESULT).is_file()]
