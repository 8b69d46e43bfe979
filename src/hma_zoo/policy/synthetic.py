"""The synthetic-data experiment (HMA paper Table 6): does world-model data replace real demonstrations?

``hma-zoo policy synthetic`` trains behaviour-cloning policies on

* the first ``real`` real demonstrations (10 in the paper),
* the same plus the first ``g`` of ``max(generated)`` world-model episodes, for each ``g`` in ``generated``
  (10 / 50 / 90), and
* the first ``full`` real demonstrations (100),

for each seed, and scores every policy in the *real* simulator on the same held-out resets. The generated episodes
come from :func:`hma_zoo.policy.generate.generate_dataset`, prompted only by the ``real`` demonstrations the policy
also sees (``prompt_episodes=real``): by default their own actions replayed with Gaussian noise (no expert is
consulted), or any other action source of ``hma-zoo generate``.

Every run writes its snapshot and ``real_eval.json``; a finished run is skipped when the command is rerun, so an
interrupted experiment resumes where it stopped. The table (mean +- sd over seeds) goes to ``OUT/synthetic.json``
and ``OUT/synthetic.md``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hma_zoo.policy.tasks import TaskSpec, get_task

log = logging.getLogger(__name__)

PAPER_ROBOMIMIC = {"real": 82, "+10": 90, "+50": 96, "+90": 100, "full": 100}


def _score_policy(path: Path, task: TaskSpec, episodes: int, eval_seed: int) -> dict[str, Any]:
    from hma_zoo.data.sources.base import episode_seed
    from hma_zoo.policy.bc import load_bc_policy
    from hma_zoo.policy.tasks import RealTaskEnv, run_episode

    env = RealTaskEnv(task)
    policy = load_bc_policy(path, task)
    scores = [float(run_episode(env, policy, seed=episode_seed(eval_seed, task.name, i))["score"])
              for i in range(episodes)]
    env.close()
    return {"score": float(np.mean(scores)), "scores": scores}


def run_synthetic(task: str | TaskSpec, data: str | os.PathLike, simulator: Any, out_dir: str | os.PathLike, *,
                  seeds: Sequence[int] = (0, 1, 2), real: int = 10, generated: Sequence[int] = (10, 50, 90),
                  full: int = 100, steps: int = 1000, eval_episodes: int = 50, eval_seed: int = 10_000,
                  frames: int | None = None, actions: str = "replay", noise: float = 0.2,
                  policy: str | None = None, probe: Any = None, model_tag: str | None = None,
                  batch_size: int = 64, backbone: str = "test_resnet", progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the experiment and write its table; returns the summary dict.

    Args:
        task: the task (its real simulator scores the policies).
        data: real demonstrations of the task (``hma-zoo policy demos``); the first ``real`` / ``full`` train
            episodes by id are used.
        simulator: the world model that generates episodes.
        out_dir: experiment folder (generated data, policies, table).
        seeds: training (and generation) seeds.
        real, generated, full: the data sizes (see the module docstring).
        steps: BC optimizer steps of every run (the same for every data size).
        eval_episodes: real-simulator episodes per policy; ``eval_seed``: base seed of their resets.
        frames: generated frames per episode (default: the task's horizon).
        actions, noise, policy, probe: the action source of the generated episodes (``hma-zoo generate``).
        model_tag: the world model's name, recorded in the generated episodes and the table.
    """
    from hma_zoo.policy.bc import train_bc
    from hma_zoo.policy.generate import generate_dataset

    spec = get_task(task) if isinstance(task, str) else task
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = int(frames or spec.horizon)
    n_gen = max(generated) if generated else 0
    runs: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for seed in seeds:
        gen_dir = out / f"generated-s{seed}"
        if n_gen and not (gen_dir / "manifest.json").exists():
            generate_dataset(simulator, data, gen_dir, episodes=n_gen, frames=frames, actions=actions, noise=noise,
                             policy=policy, task=spec, probe=probe, seed=seed, split="train", prompt_episodes=real,
                             model_tag=model_tag, overwrite=True)
        configs: list[tuple[str, dict[str, Any]]] = [(f"real {real}", {"episodes": real})]
        configs += [(f"real {real} + generated {g}", {"episodes": real, "extra": [gen_dir], "extra_episodes": g})
                    for g in generated]
        configs.append((f"real {full}", {"episodes": full}))
        for label, kw in configs:
            run = out / "runs" / f"{label.replace(' ', '').replace('+', '_')}-s{seed}"
            result_file = run / "real_eval.json"
            if result_file.exists():
                result = json.loads(result_file.read_text())
            else:
                paths = train_bc(data, spec, run, steps=steps, seed=seed, batch_size=batch_size, backbone=backbone,
                                 progress=progress, **kw)
                result = _score_policy(paths[-1], spec, eval_episodes, eval_seed)
                result.update(label=label, seed=seed, steps=steps, snapshot=str(paths[-1]))
                result_file.write_text(json.dumps(result, indent=1))
            runs.setdefault(label, {})[str(seed)] = result["score"]
            log.info("%s seed %d: real-simulator score %.3f", label, seed, result["score"])
    rows = [{"data": label, "scores": per_seed, "mean": float(np.mean(list(per_seed.values()))),
             "sd": float(np.std(list(per_seed.values()), ddof=1)) if len(per_seed) > 1 else 0.0}
            for label, per_seed in runs.items()]
    summary = {"task": spec.name, "data": str(data), "model": model_tag, "seeds": list(seeds), "steps": steps,
               "eval_episodes": eval_episodes, "eval_seed": eval_seed, "generated_frames": frames,
               "actions": actions, "noise": noise, "policy": policy, "rows": rows,
               "paper_robomimic": PAPER_ROBOMIMIC, "seconds": time.perf_counter() - t0}
    (out / "synthetic.json").write_text(json.dumps(summary, indent=1))
    (out / "synthetic.md").write_text(to_markdown(summary))
    return summary


def to_markdown(summary: dict[str, Any]) -> str:
    """The experiment's table: real-simulator success of BC per training data, mean +- sd over seeds."""
    paper = list(summary["paper_robomimic"].values())
    lines = [f"### Synthetic data: BC on task `{summary['task']}`, success in the real simulator",
             "",
             f"World model `{summary['model']}`; generated episodes: {summary['generated_frames']} frames, actions "
             f"`{summary['actions']}` (noise {summary['noise']}); BC {summary['steps']} steps; "
             f"{summary['eval_episodes']} held-out real episodes per policy; seeds {summary['seeds']}.",
             "",
             "| training data | success (mean ± sd) | per seed | paper (Robomimic) |",
             "|---|---|---|---|"]
    for i, row in enumerate(summary["rows"]):
        per = ", ".join(f"{v:.2f}" for v in row["scores"].values())
        ref = f"{paper[i]}%" if i < len(paper) else ""
        spread = f"± {row['sd']:.3f}" if len(row["scores"]) > 1 else "(1 seed)"
        lines.append(f"| {row['data']} | {row['mean']:.3f} {spread} | {per} | {ref} |")
    return "\n".join(lines) + "\n"


__all__ = ["run_synthetic", "to_markdown", "PAPER_ROBOMIMIC"]
