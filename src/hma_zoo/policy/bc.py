"""Image-based behaviour cloning: ``hma-zoo policy train``.

A :class:`BCNet` maps the last two frames and the goal to one frame's action chunk (normalised by the
demonstrations' per-dim mean and std); :class:`BCPolicy` runs it behind the :class:`~hma_zoo.policy.policies.Policy`
interface, in the real simulator or in a world model alike. It reads images and the goal only, never the
simulator state, so nothing it uses is missing inside a world model.

Training (:func:`train_bc`) exports the network at several steps (``--save-steps``): the paper ranks policies
"from different training iterations" (Table 5), and these snapshots are such a graded family::

    hma-zoo policy train --data data/demos-reach --task reach --steps 3000 --save-steps 100,300,1000,3000 \\
        --out policies/bc-reach
    # -> policies/bc-reach/step-000100 ... step-003000 (config.json + model.safetensors each)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hma_zoo import hub
from hma_zoo.policy.nets import FrameGoalNet, context_stack, frames_to_input, load_task_frames, net_config
from hma_zoo.policy.policies import Obs, Policy
from hma_zoo.policy.tasks import TaskSpec, action_bounds, get_task

log = logging.getLogger(__name__)

KIND = "bc_policy"


class BCNet(nn.Module):
    """Frames + goal -> raw action chunk ``[stride * action_dim]`` of a task (see the module docstring)."""

    hub_kind = KIND

    def __init__(self, task: str, net: dict[str, Any], chunk_mean: Sequence[float], chunk_std: Sequence[float],
                 ) -> None:
        super().__init__()
        self.task_name = task
        self.net = FrameGoalNet(**net)
        self.register_buffer("chunk_mean", torch.tensor(list(chunk_mean), dtype=torch.float32))
        self.register_buffer("chunk_std", torch.tensor(list(chunk_std), dtype=torch.float32).clamp_min(1e-6))

    def config(self) -> dict[str, Any]:
        """JSON config that rebuilds this net."""
        return {"task": self.task_name, "net": self.net.config(), "chunk_mean": self.chunk_mean.tolist(),
                "chunk_std": self.chunk_std.tolist()}

    @torch.no_grad()
    def predict(self, frames: Tensor, goal: Tensor) -> Tensor:
        """uint8 ``[N, context, H, W, 3]`` + goal ``[N, G]`` -> raw chunks ``[N, stride * action_dim]``."""
        out = self.net(frames_to_input(frames, self.net.image_size), goal)
        return out * self.chunk_std + self.chunk_mean


hub.register_kind(KIND, lambda c: BCNet(**c), lambda m: m.config())


class BCPolicy(Policy):
    """A trained :class:`BCNet` behind the policy interface (keeps the previous frame for its context)."""

    def __init__(self, model: BCNet, task: str | TaskSpec | None = None, name: str | None = None) -> None:
        task = task if task is not None else model.task_name
        super().__init__(task)
        if model.task_name != self.task.name:
            raise ValueError(f"this BC policy was trained on task {model.task_name!r}, not {self.task.name!r}")
        self.model = model.eval()
        self.name = name or "bc"
        self._history: list[np.ndarray] = []
        self.low, self.high = action_bounds(self.task)

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self._history = []

    def act(self, obs: Obs) -> np.ndarray:
        self._history = (self._history + [np.asarray(obs["image"], np.uint8)])[-2:]
        frames = context_stack(np.stack(self._history), self.model.net.context)
        goal = torch.as_tensor(np.asarray(obs.get("goal", np.zeros(0)), np.float32))[None]
        chunk = self.model.predict(frames, goal)[0].numpy()
        rows = chunk.reshape(self.task.stride, self.task.action_dim)
        return np.clip(rows, self.low, self.high).astype(np.float32).reshape(-1)


def load_bc_policy(path: str | os.PathLike, task: str | TaskSpec | None = None, **_: Any) -> BCPolicy:
    """A :class:`BCPolicy` from a folder written by :func:`train_bc` (weights-only load, never unpickled)."""
    model = hub.load_pretrained(str(path))
    if not isinstance(model, BCNet):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a BC policy (hma-zoo policy train)")
    return BCPolicy(model, task, name=f"bc:{Path(path).name}")


def train_bc(data: str | os.PathLike, task: str | TaskSpec, out_dir: str | os.PathLike, steps: int = 3000,
             save_steps: Sequence[int] = (), episodes: int | None = None, extra: Sequence[str | os.PathLike] = (),
             seed: int = 0, batch_size: int = 64, backbone: str = "test_resnet", lr: float = 1e-3,
             progress: bool = True, extra_episodes: int | None = None) -> list[Path]:
    """Train a BC policy on the ``train`` episodes of ``data`` (+ all of ``extra``) and export snapshots.

    Args:
        data: a task dataset (``hma-zoo policy demos``).
        task: the task.
        out_dir: the snapshots go to ``out_dir/step-NNNNNN``.
        steps: optimizer steps (training stops on this count).
        save_steps: further steps to export (the last step is always exported).
        episodes: use only the first ``episodes`` train episodes of ``data`` (e.g. 10 of 100).
        extra: datasets whose train episodes are added (e.g. generated with ``hma-zoo generate``).
        extra_episodes: add only the first ``extra_episodes`` episodes (by id) of each ``extra`` dataset.
        seed: sampling and initialisation seed.
        batch_size, backbone, lr: training settings.

    Returns:
        the exported folders, in step order.
    """
    from hma_zoo.policy.train import FrameBatches, FrameGoalLit, SaveAtSteps, fit

    spec = get_task(task) if isinstance(task, str) else task
    frames = load_task_frames(data, spec, "train", episodes=episodes, extra=extra, extra_episodes=extra_episodes)
    valid = frames.chunk[frames.has_chunk]
    mean, std = valid.mean(0), valid.std(0) + 1e-3
    torch.manual_seed(seed)
    model = BCNet(spec.name, net_config(spec, frames.goal, spec.chunk_dim, backbone), mean.tolist(), std.tolist())
    net = model.net
    out = Path(out_dir)
    written: list[Path] = []
    n_eps = len(frames.episode_ids)

    def save(step: int) -> None:
        path = hub.save_pretrained(model, out / f"step-{step:06d}", meta={
            "task": spec.name, "step": step, "data": str(data), "episodes": n_eps, "extra": [str(e) for e in extra],
            "extra_episodes": extra_episodes,
            "seed": seed, "batch_size": batch_size, "backbone": backbone})
        written.append(Path(path))

    batches = FrameBatches(frames, "chunk", batch_size, context=2, seed=seed, chunk_mean=mean, chunk_std=std)
    lit = FrameGoalLit(net, "mse", lr=lr, max_steps=steps)
    fit(lit, batches, steps, callbacks=[SaveAtSteps([s for s in save_steps if s < steps], save)], progress=progress)
    log.info("trained a BC policy on %d episodes (%d frames) for %d steps -> %s", n_eps, len(frames.label), steps, out)
    return sorted(written)


__all__ = ["BCNet", "BCPolicy", "load_bc_policy", "train_bc"]
