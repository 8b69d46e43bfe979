"""Policies with one interface for the real simulator and the world model.

A policy maps the task observation ``{"image", "state", "goal"}`` (see :mod:`hma_zoo.policy.tasks`) to one frame's
action chunk ``[stride * action_dim]`` (raw units). It never sees which environment produced the observation, so
the same object runs in :class:`~hma_zoo.policy.tasks.RealTaskEnv` and in
:class:`~hma_zoo.policy.wm_env.WorldModelTaskEnv`::

    policy = make_policy("scripted:noise=0.5", "reach")
    policy.reset(seed=0)
    chunk = policy.act(obs)

Kinds (``make_policy`` strings):

* ``scripted[:noise=S]``: the task's scripted expert acting on ``obs["state"]`` with Gaussian action noise of scale
  ``S`` (in units of the action range; graded noise gives policies of graded quality);
* ``random``: uniform random actions in the action range;
* ``bc:PATH``: a behaviour-cloning policy trained with ``hma-zoo policy train`` (:mod:`hma_zoo.policy.bc`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hma_zoo.policy.tasks import TaskSpec, action_bounds, get_task

Obs = dict[str, np.ndarray]


class Policy:
    """Base class: ``reset(seed)`` at the start of an episode, ``act(obs)`` -> one frame's chunk (float32).

    Attributes:
        task: the :class:`TaskSpec` the policy acts in.
        name: a short label used in reports.
    """

    name = "policy"

    def __init__(self, task: str | TaskSpec) -> None:
        self.task = get_task(task) if isinstance(task, str) else task
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int | None = None) -> None:
        """Start an episode; ``seed`` makes the policy's own randomness reproducible."""
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Obs) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, obs: Obs) -> np.ndarray:
        return self.act(obs)


class ScriptedPolicy(Policy):
    """The task's scripted expert on ``obs["state"]``, plus Gaussian action noise.

    * Meta-World tasks (``reach``, ``push``): Meta-World's own expert policy for the task, fed the hand, gripper and
      object positions of ``obs["state"]`` and the goal of ``obs["goal"]`` (the only parts of its observation the
      experts read).
    * ``pusht``: the pusher of :func:`hma_zoo.data.sources.pusht.scripted_push_target` (walk behind the block,
      push it toward the goal), recomputed every frame.

    Args:
        task: task name or spec.
        noise: standard deviation of the noise added to every control step, as a fraction of the action range
            (0 = the clean expert).
    """

    def __init__(self, task: str | TaskSpec, noise: float = 0.0) -> None:
        super().__init__(task)
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.noise = float(noise)
        self.low, self.high = action_bounds(self.task)
        self.name = f"scripted(noise={self.noise:g})"
        self._expert: Any = None

    def _clean(self, obs: Obs) -> np.ndarray:
        state = np.asarray(obs["state"], np.float64)
        if self.task.embodiment == "metaworld_sawyer":
            if self._expert is None:
                from metaworld.policies import ENV_POLICY_MAP

                self._expert = ENV_POLICY_MAP[self.task.params["env_name"]]()
            full = np.zeros(39)
            full[:7], full[-3:] = state[:7], np.asarray(obs["goal"], np.float64)
            return np.asarray(self._expert.get_action(full), np.float64)
        if self.task.name == "pusht":
            from hma_zoo.data.sources.pusht import scripted_push_target

            block = state[2:4]
            return scripted_push_target(state[:2], block, np.array([256.0, 256.0]))
        raise ValueError(f"no scripted expert for task {self.task.name!r}")  # pragma: no cover

    def act(self, obs: Obs) -> np.ndarray:
        clean = self._clean(obs)
        rows = np.tile(clean, (self.task.stride, 1))
        if self.noise > 0:
            rows = rows + self.rng.normal(0.0, self.noise, rows.shape) * (self.high - self.low)
        return np.clip(rows, self.low, self.high).astype(np.float32).reshape(-1)


class RandomPolicy(Policy):
    """Uniform random actions in the task's action range (the floor of every ranking)."""

    name = "random"

    def __init__(self, task: str | TaskSpec) -> None:
        super().__init__(task)
        self.low, self.high = action_bounds(self.task)

    def act(self, obs: Obs) -> np.ndarray:
        rows = self.rng.uniform(self.low, self.high, (self.task.stride, self.task.action_dim))
        return rows.astype(np.float32).reshape(-1)


def make_policy(spec: str, task: str | TaskSpec, **kwargs: Any) -> Policy:
    """A policy from a short spec: ``scripted[:noise=S]``, ``random`` or ``bc:PATH`` (see the module docstring)."""
    kind, _, rest = spec.partition(":")
    if kind == "scripted":
        opts = dict(kv.split("=", 1) for kv in rest.split(",") if kv) if rest else {}
        unknown = set(opts) - {"noise"}
        if unknown:
            raise ValueError(f"scripted policy options are noise=S; got {sorted(unknown)} in {spec!r}")
        return ScriptedPolicy(task, float(opts.get("noise", 0.0)))
    if kind == "random":
        return RandomPolicy(task)
    if kind == "bc":
        if not rest:
            raise ValueError("a bc policy needs a path: bc:PATH (a folder written by `hma-zoo policy train`)")
        from hma_zoo.policy.bc import load_bc_policy

        return load_bc_policy(rest, task, **kwargs)
    raise ValueError(f"unknown policy {spec!r}; use scripted[:noise=S], random or bc:PATH")


__all__ = ["Policy", "ScriptedPolicy", "RandomPolicy", "make_policy", "Obs"]
