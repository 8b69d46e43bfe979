"""Success judges: did the task succeed in these frames? Needed to score rollouts inside a world model, which has
no simulator state and no reward.

Two judges, one interface ``judge(frames, goal, state) -> (success, progress)`` (``frames``: uint8 ``[k, H, W, 3]``,
the last ``k <= 2`` frames, newest last):

* :class:`ClassifierJudge`: a frame classifier (two frames + goal -> success logit, or progress for progress tasks)
  trained on real frames labelled by the simulator's own success signal (``hma-zoo policy judge``): no hand labels,
  no network model.
* :class:`ProbeRuleJudge`: the task's success rule applied to the state a state probe reads from the frames (the
  probe of "Measure a world model honestly", fitted on the task's data): reach succeeds when the hand is within
  ``success_radius`` of the goal, push when the puck is.

:func:`fit_judge` trains a classifier and measures both judges on the held-out ``val`` episodes: per-frame accuracy
and AUROC (torchmetrics), and per-episode accuracy of "any frame judged successful" against the simulator's verdict.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hma_zoo import hub
from hma_zoo.policy.nets import FrameGoalNet, TaskFrames, context_stack, frames_to_input, load_task_frames, net_config
from hma_zoo.policy.tasks import TaskSpec, get_task

log = logging.getLogger(__name__)

KIND = "success_judge"

# Which entries of the task state the success rule compares with the goal (Meta-World's own success rules).
SUCCESS_DIMS: dict[str, tuple[int, ...]] = {"reach": (0, 1, 2), "push": (4, 5, 6)}


class ClassifierJudge(nn.Module):
    """Frames + goal -> probability that the task is solved in the newest frame.

    Args:
        task: task name.
        net: :class:`FrameGoalNet` config (``out_dim`` 1).
        threshold: probability above which a frame counts as successful.
    """

    hub_kind = KIND

    def __init__(self, task: str, net: dict[str, Any], threshold: float = 0.5) -> None:
        super().__init__()
        self.task_name, self.threshold = task, float(threshold)
        self.net = FrameGoalNet(**net)
        self.meta: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        """JSON config that rebuilds this judge."""
        return {"task": self.task_name, "net": self.net.config(), "threshold": self.threshold}

    @torch.no_grad()
    def probabilities(self, frames: Tensor, goal: Tensor, chunk: int = 256) -> Tensor:
        """uint8 ``[N, context, H, W, 3]`` + goal ``[N, G]`` -> success probability (or progress) ``[N]``."""
        self.eval()
        out = [torch.sigmoid(self.net(frames_to_input(frames[i:i + chunk], self.net.image_size),
                                      goal[i:i + chunk])[:, 0]) for i in range(0, frames.shape[0], chunk)]
        return torch.cat(out)

    def judge(self, frames: np.ndarray, goal: np.ndarray, state: np.ndarray | None = None) -> tuple[bool, float]:
        """Verdict on the newest of ``frames`` (uint8 ``[k, H, W, 3]``): ``(success, progress)``."""
        x = context_stack(frames, self.net.context)
        p = float(self.probabilities(x, torch.as_tensor(np.asarray(goal, np.float32))[None])[0])
        return p >= self.threshold, p


hub.register_kind(KIND, lambda c: ClassifierJudge(**c), lambda m: m.config())


class ProbeRuleJudge:
    """The task's success rule on the state a :class:`~hma_zoo.eval.probe.StateProbe` reads from the frames.

    Args:
        probe: a probe whose head for the task's embodiment reads at least the task state dims.
        task: task name or spec (``reach`` or ``push``).
    """

    def __init__(self, probe: Any, task: str | TaskSpec) -> None:
        self.probe, self.task = probe, get_task(task) if isinstance(task, str) else task
        if self.task.name not in SUCCESS_DIMS:
            raise ValueError(f"no state rule for task {self.task.name!r}; rules exist for {sorted(SUCCESS_DIMS)}")
        self.dims = list(SUCCESS_DIMS[self.task.name])

    def distances(self, frames: Tensor, goal: Tensor) -> Tensor:
        """Distance of the rule's object to the goal, read from every frame: uint8 ``[B, T, H, W, 3]`` videos,
        goal ``[B, G]`` (or per frame ``[B, T, G]``) -> ``[B, T]``."""
        state = self.probe.predict(frames, [self.task.embodiment] * frames.shape[0])
        goal = goal[:, None, :] if goal.ndim == 2 else goal
        return (state[..., self.dims] - goal.to(state)).norm(dim=-1)

    def judge(self, frames: np.ndarray, goal: np.ndarray, state: np.ndarray | None = None) -> tuple[bool, float]:
        """Verdict on the newest of ``frames``; uses ``state`` when the caller already read it with the probe."""
        g = np.asarray(goal, np.float64)
        if state is None:
            d = float(self.distances(torch.as_tensor(np.asarray(frames))[None], torch.as_tensor(g)[None])[0, -1])
        else:
            d = float(np.linalg.norm(np.asarray(state, np.float64)[self.dims] - g))
        ok = d <= self.task.success_radius
        return ok, float(ok)


def _episode_accuracy(frame_pred: np.ndarray, data: TaskFrames) -> float:
    """Share of episodes whose "any frame judged successful" equals the simulator's episode verdict."""
    n = len(data.episode_ids)
    pred = np.zeros(n, bool)
    for e in range(n):
        pred[e] = bool(frame_pred[data.episode == e].any())
    return float((pred == data.episode_success).mean())


def judge_metrics(scores: np.ndarray, pred: np.ndarray, data: TaskFrames) -> dict[str, float]:
    """Frame accuracy and AUROC of ``scores`` (higher = more successful) / ``pred`` (bool) against the frame labels,
    and episode accuracy."""
    from torchmetrics.functional.classification import binary_auroc

    labels = data.label >= 0.5
    m = {"frame_accuracy": float((pred == labels).mean()), "episode_accuracy": _episode_accuracy(pred, data),
         "positive_frames": int(labels.sum()), "frames": int(labels.size), "episodes": len(data.episode_ids),
         "successful_episodes": int(data.episode_success.sum())}
    if 0 < labels.sum() < labels.size:
        m["frame_auroc"] = float(binary_auroc(torch.as_tensor(scores, dtype=torch.float32),
                                              torch.as_tensor(labels, dtype=torch.long)))
    else:
        m["frame_auroc"] = float("nan")
    return m


def evaluate_judges(data: TaskFrames, task: TaskSpec, judge: ClassifierJudge | None = None,
                    probe: Any = None) -> dict[str, dict[str, float]]:
    """Both judges on every frame of ``data`` (held-out real episodes): ``{"classifier": ..., "probe_rule": ...}``."""
    out: dict[str, dict[str, float]] = {}
    if judge is not None:
        every = np.arange(len(data.label))
        p = judge.probabilities(data.inputs(every, judge.net.context), torch.from_numpy(data.goal)).numpy()
        out["classifier"] = judge_metrics(p, p >= judge.threshold, data)
    if probe is not None and task.name in SUCCESS_DIMS:
        rule = ProbeRuleJudge(probe, task)
        # one video per episode (episodes are contiguous): the probe reads each frame with its previous one as
        # context, once per frame
        ends = np.cumsum(np.bincount(data.episode))
        d = np.concatenate([rule.distances(torch.from_numpy(data.frames[a:b])[None],
                                           torch.from_numpy(data.goal[a:b])[None])[0].numpy()
                            for a, b in zip(np.r_[0, ends[:-1]], ends, strict=True)])
        out["probe_rule"] = judge_metrics(-d, d <= task.success_radius, data)
    return out


def fit_judge(data: str | os.PathLike, task: str | TaskSpec, out_dir: str | os.PathLike, steps: int = 1500,
              seed: int = 0, batch_size: int = 64, backbone: str = "test_resnet", lr: float = 1e-3,
              probe: Any = None, progress: bool = True) -> tuple[ClassifierJudge, dict[str, Any]]:
    """Train a :class:`ClassifierJudge` on the ``train`` frames of a task dataset and measure it (and the probe rule,
    when ``probe`` is given) on the ``val`` episodes; saves the judge with its metrics to ``out_dir``.

    Positive and negative frames are drawn equally often (success frames are the minority). Returns the judge and
    the metrics ``{"classifier": {...}, "probe_rule": {...}}``.
    """
    from hma_zoo.policy.train import FrameBatches, FrameGoalLit, fit

    spec = get_task(task) if isinstance(task, str) else task
    train = load_task_frames(data, spec, "train")
    val = load_task_frames(data, spec, "val")
    if train.label.max() < 0.5 and spec.score == "success":
        raise ValueError(f"{data} has no successful training frame; record successes and failures (e.g. "
                         "--policy scripted:noise=0 --policy random) before fitting a judge")
    torch.manual_seed(seed)
    judge = ClassifierJudge(spec.name, net_config(spec, train.goal, 1, backbone))
    batches = FrameBatches(train, "label", batch_size, context=2, seed=seed, balance=spec.score == "success")
    fit(FrameGoalLit(judge.net, "bce", lr=lr, max_steps=steps), batches, steps, progress=progress)
    metrics = evaluate_judges(val, spec, judge, probe)
    judge.meta = {"task": spec.name, "data": str(data), "steps": steps, "seed": seed, "metrics": metrics}
    hub.save_pretrained(judge, out_dir, meta=judge.meta)
    log.info("judge for %s saved to %s: %s", spec.name, out_dir, metrics)
    return judge, metrics


def load_judge(path: str | os.PathLike) -> ClassifierJudge:
    """A :class:`ClassifierJudge` saved by :func:`fit_judge` (weights-only)."""
    model = hub.load_pretrained(str(path))
    if not isinstance(model, ClassifierJudge):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a success judge (hma-zoo policy judge)")
    model.meta = dict(getattr(model, "pretrained_meta", {}))
    return model


__all__ = ["ClassifierJudge", "ProbeRuleJudge", "fit_judge", "load_judge", "evaluate_judges", "judge_metrics",
           "SUCCESS_DIMS"]
