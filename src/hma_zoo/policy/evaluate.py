"""``hma-zoo policy-eval``: rank policies inside a world model and in the real simulator, from the same initial frames.

For every policy and rollout ``i`` (reset seed :func:`~hma_zoo.data.sources.base.episode_seed` ``(seed, task, i)``,
the same for every policy, so policies are compared on the same initial states):

1. the policy runs in the task's real simulator (:class:`~hma_zoo.policy.tasks.RealTaskEnv`); its score is the
   simulator's own verdict (success at any step, or the final progress);
2. the success judge scores the *real* frames of that rollout (``judge on real``: the judge's own error);
3. the policy runs inside the world model (:class:`~hma_zoo.policy.wm_env.WorldModelTaskEnv`) from the real
   rollout's first frame and goal; the judge scores the generated frames.

The per-policy mean scores of 1 and 3 give Pearson, Spearman and MMRV (:mod:`hma_zoo.policy.ranking`); the report
(JSON + Markdown) and side-by-side GIFs go to ``--out``.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hma_zoo.policy.tasks import TaskSpec, get_task

log = logging.getLogger(__name__)


def judge_video(judge: Any, frames: np.ndarray, goal: np.ndarray, task: TaskSpec) -> float:
    """A judge's score of a whole rollout (uint8 ``[T, H, W, 3]``): success at any frame (success tasks) or the
    last frame's progress (progress tasks). Each frame is judged with its previous frame as context."""
    verdicts = [judge.judge(frames[max(t - 1, 0): t + 1], goal) for t in range(frames.shape[0])]
    if task.score == "success":
        return float(any(v[0] for v in verdicts))
    return float(verdicts[-1][1])


def policy_eval(task: str | TaskSpec, simulator: Any, policies: Sequence[Any], judge: Any, probe: Any = None,
                episodes: int = 20, seed: int = 0, horizon: int | None = None, out_dir: str | os.PathLike | None = None,
                gifs: int = 2, meta: dict[str, Any] | None = None, progress: bool = True,
                other_judges: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate ``policies`` in the real simulator and in the world model (see the module docstring).

    Args:
        task: task name or spec.
        simulator: a :class:`hma_zoo.Simulator` whose model serves the task's embodiment.
        policies: :class:`~hma_zoo.policy.policies.Policy` objects (their ``name`` labels the report).
        judge: success judge used on generated (and, for comparison, real) frames.
        probe: state probe giving state-based policies their state inside the world model.
        episodes: rollouts per policy in each environment.
        seed: base seed of the resets (and of the world model's sampling).
        horizon: frames per rollout (default: the task's).
        out_dir: where ``summary.json``, ``report.md`` and the GIFs go (``None``: nothing written).
        gifs: side-by-side GIFs per policy.
        meta: extra provenance for the report (model tag, judge path ...).
        other_judges: further judges ``{name: judge}`` that score the same real and generated frames; their
            agreement figures go to ``summary["other_judges"][name]`` (the world-model rollouts are shared, so a
            second judge costs only its own inference).

    Returns:
        the summary dict of :func:`hma_zoo.policy.ranking.summarize` (plus ``seconds``).
    """
    from rich.progress import Progress

    from hma_zoo.data.sources.base import episode_seed
    from hma_zoo.policy.ranking import PolicyResult, side_by_side_gif, summarize, write_report
    from hma_zoo.policy.tasks import RealTaskEnv, run_episode
    from hma_zoo.policy.wm_env import WorldModelTaskEnv

    spec = get_task(task) if isinstance(task, str) else task
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not policies:
        raise ValueError("give at least one policy")
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be distinct, got {names}")
    horizon = int(horizon or spec.horizon)
    real_env = RealTaskEnv(spec, horizon=horizon)
    wm_env = WorldModelTaskEnv(simulator, spec, probe=probe, judge=judge, horizon=horizon)
    out = Path(out_dir) if out_dir is not None else None
    results: list[PolicyResult] = []
    others: dict[str, dict[str, list[list[float]]]] = {n: {"world": [], "on_real": []} for n in other_judges or {}}
    t0 = time.perf_counter()
    binary = spec.score == "success"
    with Progress(transient=True, disable=not progress) as bar:
        job = bar.add_task(f"policy-eval {spec.name}", total=len(policies) * episodes)
        for policy in policies:
            real, world, on_real = [], [], []
            for name in others:
                others[name]["world"].append([])
                others[name]["on_real"].append([])
            for i in range(episodes):
                s = episode_seed(seed, spec.name, i)
                r = run_episode(real_env, policy, seed=s)
                goal = real_env.trace["goal"]
                real.append(float(r["score"]))
                on_real.append(judge_video(judge, r["images"], goal, spec))
                w = run_episode(wm_env, policy, seed=s, options={
                    "prompt_frames": r["images"][:1], "goal": goal, "prompt_state": real_env.trace["state"][0]})
                world.append(float(w["score"]))
                for name, judge_k in (other_judges or {}).items():
                    others[name]["on_real"][-1].append(judge_video(judge_k, r["images"], goal, spec))
                    others[name]["world"][-1].append(judge_video(judge_k, w["images"], goal, spec))
                if out is not None and i < gifs:
                    stem = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in policy.name)
                    side_by_side_gif(r["images"], w["images"], out / "gifs" / f"{stem}_{i:02d}.gif")
                bar.advance(job)
            results.append(PolicyResult(policy.name, real, world, on_real, binary=binary))
            log.info("%s: real %.2f, world model %.2f, judge on real %.2f", policy.name, np.mean(real),
                     np.mean(world), np.mean(on_real))
    real_env.close()
    info = {"task": spec.name, "episodes": episodes, "horizon": horizon, "seed": seed,
            "world_model_window": int(simulator.model.config.trunk.max_frames),
            "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
            "torch_threads": torch.get_num_threads(), **(meta or {})}
    summary = summarize(spec.name, results, info)
    if others:
        summary["other_judges"] = {}
        for name, got in others.items():
            alt = [PolicyResult(r.name, r.real, wv, rv, binary=binary)
                   for r, wv, rv in zip(results, got["world"], got["on_real"], strict=True)]
            s_alt = summarize(spec.name, alt, {})
            summary["other_judges"][name] = {"policies": s_alt["policies"], "agreement": s_alt["agreement"],
                                             "judge_agreement": s_alt["judge_agreement"]}
    summary["seconds"] = time.perf_counter() - t0
    if out is not None:
        write_report(summary, out)
    return summary


__all__ = ["policy_eval", "judge_video"]
