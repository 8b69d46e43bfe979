"""Record policy episodes in a task's real simulator as a project dataset (demonstrations, judge and probe data).

::

    hma-zoo policy demos --task reach --episodes 100 --policy scripted:noise=0.1 --out data/demos-reach
    hma-zoo policy demos --task reach --episodes 120 --policy scripted:noise=0 --policy scripted:noise=0.5 \\
        --policy random --out data/judge-reach          # successes and failures for a success judge

Episode ``i`` runs policy ``i % len(policies)`` from reset seed :func:`~hma_zoo.data.sources.base.episode_seed`
``(seed, task, i)``; every ``round(1 / val_fraction)``-th *round* of the policy cycle goes to the ``val`` split
(so every policy has held-out episodes). Each episode stores
frames, control-step actions, ``proprio`` = task state + goal per frame (see :func:`~hma_zoo.policy.tasks.
record_episode`), reward and success per control step, and ``meta`` with the policy, seed, success and score.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hma_zoo.policy.tasks import TaskSpec, get_task

log = logging.getLogger(__name__)

_RATES = {"metaworld_sawyer": (80.0, ("dx", "dy", "dz", "grip"), "corner2", "metaworld/MT1"),
          "pusht": (10.0, ("x", "y"), "top", "gym_pusht/PushT-v0")}


def embodiment_info(task: TaskSpec) -> Any:
    """The :class:`~hma_zoo.data.schema.EmbodimentInfo` a task's episodes are recorded under (the same rates and
    names as the sim-mix sources, so world models trained on sim-mix read them)."""
    from hma_zoo.data.schema import EmbodimentInfo

    control_hz, names, camera, source = _RATES[task.embodiment]
    return EmbodimentInfo(task.embodiment, task.action_dim, control_hz, control_hz / task.stride,
                          action_names=names, camera=camera, source=f"{source} ({task.name})")


def record_demos(task: str | TaskSpec, policies: Sequence[str], episodes: int, out_dir: str | os.PathLike,
                 seed: int = 0, val_fraction: float = 0.2, horizon: int | None = None,
                 image_size: tuple[int, int] = (64, 64), overwrite: bool = False) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``policies`` (cycled) in the real simulator and write them to ``out_dir``.

    Returns a summary: per policy the episodes and the mean score, and the manifest path.
    """
    from rich.progress import track

    from hma_zoo.data.schema import split_for_index
    from hma_zoo.data.shards import DatasetWriter
    from hma_zoo.data.sources.base import episode_seed
    from hma_zoo.policy.policies import make_policy
    from hma_zoo.policy.tasks import RealTaskEnv, record_episode, run_episode

    spec = get_task(task) if isinstance(task, str) else task
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not policies:
        raise ValueError("give at least one policy (scripted[:noise=S], random or bc:PATH)")
    out = Path(out_dir)
    if (out / "manifest.json").exists() or (out.exists() and any(out.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    built = [make_policy(p, spec) for p in policies]
    env = RealTaskEnv(spec, image_size=image_size, horizon=horizon)
    scores: dict[str, list[float]] = {p: [] for p in policies}
    t0 = time.perf_counter()
    with DatasetWriter(out, [embodiment_info(spec)], image_size=image_size) as writer:
        for i in track(range(episodes), description=f"{spec.name} demos", transient=True):
            which = i % len(built)
            s = episode_seed(seed, spec.name, i)
            result = run_episode(env, built[which], seed=s)
            scores[policies[which]].append(result["score"])
            ep = record_episode(env, f"{spec.name}_{i:06d}", meta={
                "policy": policies[which], "seed": int(s), "success": bool(result["success"]),
                "score": float(result["score"])})
            # whole rounds of the policy cycle go to one split, so every policy is in val as in train
            writer.add(ep, split_for_index(i // len(built), val_fraction))
    env.close()
    summary = {"task": spec.name, "episodes": episodes, "out": str(out), "seconds": time.perf_counter() - t0,
               "policies": {p: {"episodes": len(v), "mean_score": sum(v) / max(len(v), 1)}
                            for p, v in scores.items()}}
    log.info("wrote %d %s episodes to %s in %.0f s", episodes, spec.name, out, summary["seconds"])
    return summary


__all__ = ["record_demos", "embodiment_info"]
