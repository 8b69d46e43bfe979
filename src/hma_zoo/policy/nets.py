"""The image network shared by behaviour-cloning policies and success judges, and the in-memory task data they
train on.

:class:`FrameGoalNet`: a timm backbone (built from scratch, nothing downloaded) over the last ``context`` frames
stacked on channels, its pooled features concatenated with the normalised goal, and an MLP to ``out_dim`` outputs.
:func:`load_task_frames` reads the episodes a task recorded (``hma-zoo policy demos``) into memory once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hma_zoo.eval.probe import _stack_to_input, context_frames
from hma_zoo.policy.tasks import TaskSpec


def frames_to_input(frames: Tensor, image_size: tuple[int, int] = (64, 64)) -> Tensor:
    """uint8 ``[N, C, H, W, 3]`` (``C`` context frames, oldest first) -> float ``[N, 3C, h, w]`` in ``[-1, 1]``
    (the state probe's own preprocessing, so both networks see frames alike)."""
    return _stack_to_input(frames, image_size)


def random_shift(x: Tensor, pad: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """Random translation by up to ``pad`` pixels (replicate padding, then a random crop), per sample; the
    augmentation that makes image BC work from few demonstrations (DrQ, Kostrikov et al. 2020)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (oy[:, None] + torch.arange(h)[None]).to(x.device)  # [N, h]
    cols = (ox[:, None] + torch.arange(w)[None]).to(x.device)  # [N, w]
    idx_r = rows[:, None, :, None].expand(n, c, h, w + 2 * pad)
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(n, c, h, w)
    return out.gather(3, idx_c)


class FrameGoalNet(nn.Module):
    """Frames (+ goal) -> ``out_dim`` values.

    Args:
        out_dim: number of outputs.
        goal_dim: width of the goal input (0: none).
        backbone: timm model name (``pretrained=False``).
        context: frames per input (1 or 2).
        image_size: ``(h, w)`` the backbone sees.
        goal_mean, goal_std: goal normalisation (per dim).
        hidden: width of the MLP after the backbone.
    """

    def __init__(self, out_dim: int, goal_dim: int = 0, backbone: str = "test_resnet", context: int = 2,
                 image_size: tuple[int, int] = (64, 64), goal_mean: Sequence[float] | None = None,
                 goal_std: Sequence[float] | None = None, hidden: int = 256) -> None:
        super().__init__()
        import timm

        if context not in (1, 2):
            raise ValueError(f"context must be 1 or 2 frames, got {context}")
        self.out_dim, self.goal_dim, self.context = int(out_dim), int(goal_dim), int(context)
        self.backbone_name, self.hidden = str(backbone), int(hidden)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        try:
            self.backbone = timm.create_model(self.backbone_name, pretrained=False, num_classes=0,
                                              in_chans=3 * self.context)
        except RuntimeError as exc:
            raise ValueError(f"unknown timm backbone {backbone!r} ({exc}); list names with timm.list_models()") from exc
        feat = self.backbone.num_features
        self.head = nn.Sequential(nn.Linear(feat + self.goal_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                  nn.GELU(), nn.Linear(hidden, self.out_dim))
        gm = torch.tensor(list(goal_mean) if goal_mean is not None else [0.0] * self.goal_dim, dtype=torch.float32)
        gs = torch.tensor(list(goal_std) if goal_std is not None else [1.0] * self.goal_dim, dtype=torch.float32)
        self.register_buffer("goal_mean", gm)
        self.register_buffer("goal_std", gs.clamp_min(1e-6))

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON) that rebuild this net."""
        return {"out_dim": self.out_dim, "goal_dim": self.goal_dim, "backbone": self.backbone_name,
                "context": self.context, "image_size": list(self.image_size), "hidden": self.hidden,
                "goal_mean": self.goal_mean.tolist(), "goal_std": self.goal_std.tolist()}

    def forward(self, x: Tensor, goal: Tensor | None = None) -> Tensor:
        """``x``: float ``[N, 3 * context, h, w]`` (see :func:`frames_to_input`); ``goal``: ``[N, goal_dim]`` raw.
        Returns ``[N, out_dim]``."""
        f = self.backbone(x)
        if self.goal_dim:
            if goal is None:
                raise ValueError(f"this net needs a goal [N, {self.goal_dim}]")
            f = torch.cat([f, (goal.to(f) - self.goal_mean) / self.goal_std], -1)
        return self.head(f)


def context_stack(frames: np.ndarray | Tensor, context: int) -> Tensor:
    """The context stack of the LAST frame of a clip: uint8 ``[T, H, W, 3]`` -> ``[1, context, H, W, 3]`` (the first
    frame repeats when the clip is shorter than the context), as :func:`hma_zoo.eval.probe.context_frames` stacks
    every frame of a video (``context`` 1 or 2)."""
    f = torch.as_tensor(np.asarray(frames))
    if f.ndim == 3:
        f = f[None]
    return context_frames(f[None, -context:], context)[:, -1]


def net_config(task: TaskSpec, goal: np.ndarray, out_dim: int, backbone: str, context: int = 2) -> dict[str, Any]:
    """The :class:`FrameGoalNet` config of a BC policy or judge for ``task``, its goal normalised with the mean and
    std (+ 1e-3) of the training goals ``goal [N, goal_dim]``."""
    return {"out_dim": out_dim, "goal_dim": task.goal_dim, "backbone": backbone, "context": context,
            "goal_mean": goal.mean(0).tolist() if task.goal_dim else None,
            "goal_std": (goal.std(0) + 1e-3).tolist() if task.goal_dim else None}


@dataclass
class TaskFrames:
    """Every frame of a split of a task dataset, in memory.

    Attributes:
        frames: uint8 ``[N, H, W, 3]`` all frames of all episodes, concatenated.
        prev: ``[N]`` index of each frame's previous frame (itself for an episode's first frame).
        chunk: float32 ``[N, stride * action_dim]`` the action chunk executed after each frame (zeros after the last
            frame of an episode; ``has_chunk`` marks the valid ones).
        has_chunk: bool ``[N]``.
        goal: float32 ``[N, goal_dim]``.
        label: float32 ``[N]`` the frame's success flag (success tasks) or progress (progress tasks).
        episode: ``[N]`` episode index; ``episode_success`` ``[E]`` whether the episode succeeded at any step.
        episode_ids: the episode ids.
    """

    frames: np.ndarray
    prev: np.ndarray
    chunk: np.ndarray
    has_chunk: np.ndarray
    goal: np.ndarray
    label: np.ndarray
    episode: np.ndarray
    episode_success: np.ndarray
    episode_ids: list[str]
    state: np.ndarray

    def inputs(self, idx: np.ndarray, context: int) -> Tensor:
        """uint8 ``[len(idx), context, H, W, 3]`` context stacks of frames ``idx``."""
        if context == 1:
            return torch.from_numpy(self.frames[idx][:, None])
        return torch.from_numpy(np.stack([self.frames[self.prev[idx]], self.frames[idx]], 1))


def episode_meta(ep: Any) -> dict[str, Any]:
    """The ``meta`` an episode was written with (an episode read from shards carries its whole JSON record in
    ``meta``, the written meta under ``meta["meta"]``)."""
    meta = ep.meta if isinstance(ep.meta, dict) else {}
    inner = meta.get("meta") if "episode_id" in meta else None
    return inner if isinstance(inner, dict) else meta


def read_episodes(data: str | os.PathLike, split: str, embodiment: str) -> list[Any]:
    """Every ``split`` episode of ``embodiment`` in a dataset (checked against its manifest), sorted by id."""
    from hma_zoo.data.loader import build_components
    from hma_zoo.data.shards import ShardExpectation, iter_episodes, load_manifest

    manifest = load_manifest(data)
    eps: list[Any] = []
    for comp in build_components([manifest], split, window=1, frame_skip={}, hop=None, only=[embodiment]):
        expect = ShardExpectation.for_embodiment(manifest, comp.name)
        for url, listed in comp.shards:
            eps += list(iter_episodes(url, keep={e for e, _ in listed}, expect=expect))
    return sorted(eps, key=lambda e: e.episode_id)


def _first_episodes(data: str | os.PathLike, split: str, task: TaskSpec, n: int | None) -> list[Any]:
    """The first ``n`` (all when ``None``) ``split`` episodes of the task's embodiment in ``data``, by id; a
    ValueError when there are none or fewer than ``n``."""
    eps = read_episodes(data, split, task.embodiment)
    if not eps:
        raise ValueError(f"{data} has no {split!r} episodes of {task.embodiment!r} (task {task.name!r})")
    if n is not None and n > len(eps):
        raise ValueError(f"asked for {n} episodes but {data} holds {len(eps)} {split!r} episodes")
    return eps if n is None else eps[:n]


def load_task_frames(data: str | os.PathLike, task: TaskSpec, split: str = "train", episodes: int | None = None,
                     extra: Sequence[str | os.PathLike] = (), extra_episodes: int | None = None) -> TaskFrames:
    """Read the ``split`` episodes of a task dataset (``hma-zoo policy demos``; or any dataset of the task's
    embodiment whose ``proprio`` is task state + goal) into a :class:`TaskFrames`.

    Args:
        data: dataset folder.
        task: the task (its stride, state and goal widths).
        split: ``train`` or ``val``.
        episodes: keep only the first ``episodes`` episodes (by id), e.g. 10 of 100.
        extra: further datasets whose ``train`` episodes are added (e.g. generated episodes).
        extra_episodes: add only the first ``extra_episodes`` (by id) of each ``extra`` dataset (nested subsets:
            the first 10 are among the first 50).
    """
    eps = _first_episodes(data, split, task, episodes)
    for more in extra:
        eps += _first_episodes(more, "train", task, extra_episodes)
    frames, prev, chunk, has, goal, label, epi, ep_succ, state = [], [], [], [], [], [], [], [], []
    offset, s, a = 0, task.stride, task.action_dim
    for k, ep in enumerate(eps):
        t = ep.frames.shape[0]
        acts = np.zeros((t, s * a), np.float32)
        n = min(t - 1, ep.actions.shape[0] // s)
        acts[:n] = ep.actions[: n * s].reshape(n, s * a)
        ok = np.zeros(t, bool)
        ok[:n] = True
        pro = ep.proprio
        own = episode_meta(ep)
        meta_goal = own.get("goal")
        if pro is None:  # generated episodes: no state; the goal is in meta (hma-zoo generate --actions policy)
            if task.goal_dim and meta_goal is None:
                raise ValueError(f"episode {ep.episode_id} stores neither proprio nor meta['goal']; task "
                                 f"{task.name!r} needs the goal (generate it with --actions policy --task)")
            pro = np.zeros((t, task.state_dim + task.goal_dim), np.float32)
            if task.goal_dim:
                pro[:, task.state_dim:] = np.asarray(meta_goal, np.float32)[None]
        if pro.shape[1] < task.state_dim + task.goal_dim:
            raise ValueError(f"episode {ep.episode_id}: proprio has {pro.shape[1]} dims; task {task.name!r} needs "
                             f"state ({task.state_dim}) + goal ({task.goal_dim}); record it with hma-zoo policy demos")
        lab = np.zeros(t, np.float32)
        if task.score == "success" and ep.success is not None:
            succ = np.asarray(ep.success, bool)
            for f in range(1, t):
                if f * s - 1 < succ.shape[0]:
                    lab[f] = float(succ[f * s - 1])
            ep_succ.append(bool(succ.any()))
        else:
            prog = own.get("progress")
            if prog is not None and len(prog) == t:
                lab = np.asarray(prog, np.float32)
            ep_succ.append(bool(ep.success.any()) if ep.success is not None else False)
        frames.append(ep.frames)
        prev.append(offset + np.maximum(np.arange(t) - 1, 0))
        chunk.append(acts)
        has.append(ok)
        goal.append(pro[:, task.state_dim: task.state_dim + task.goal_dim].astype(np.float32))
        state.append(pro[:, : task.state_dim].astype(np.float32))
        label.append(lab)
        epi.append(np.full(t, k))
        offset += t
    return TaskFrames(np.concatenate(frames), np.concatenate(prev), np.concatenate(chunk), np.concatenate(has),
                      np.concatenate(goal), np.concatenate(label), np.concatenate(epi), np.asarray(ep_succ),
                      [e.episode_id for e in eps], np.concatenate(state))


__all__ = ["FrameGoalNet", "frames_to_input", "random_shift", "context_stack", "TaskFrames", "load_task_frames",
           "net_config"]
