"""The world model behind the task interface: a gymnasium env whose frames come from an HMA :class:`Simulator`.

:class:`WorldModelTaskEnv` returns the same observations as :class:`~hma_zoo.policy.tasks.RealTaskEnv`, so a policy
runs unchanged in both::

    env = WorldModelTaskEnv(sim, "reach", probe=probe, judge=judge)
    obs, info = env.reset(options={"prompt_frames": real_first_frames, "goal": real_goal})
    obs, progress, terminated, truncated, info = env.step(policy.act(obs))

* ``obs["image"]``: the generated frame;
* ``obs["state"]``: the task state a state probe reads from the newest frame with the one before it as context (at
  reset: the last prompt frame alone). It is read once per step and the judge gets the same reading. ``None``
  probe: the prompt's state is repeated, and a warning says that state-based policies then act blind;
* ``obs["goal"]``: the goal given at reset (the world model does not change goals);
* ``info["success"]`` / ``info["progress"]``: the judge's verdict on the generated frames (a
  :class:`~hma_zoo.policy.judge.Judge`); without a judge both are 0.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from hma_zoo.policy.tasks import TaskSpec, action_rows, get_task

log = logging.getLogger(__name__)

try:
    import gymnasium as gym
    from gymnasium import spaces
except ImportError:  # pragma: no cover
    gym = None  # type: ignore[assignment]


if gym is not None:

    class WorldModelTaskEnv(gym.Env):
        """A task run inside a world model (see the module docstring).

        Args:
            simulator: an :class:`hma_zoo.Simulator` whose model knows ``task.embodiment``.
            task: task name or :class:`TaskSpec`.
            probe: a :class:`~hma_zoo.eval.probe.StateProbe` with a head for the embodiment whose selected dims
                are the task state (``hma-zoo probe fit --dims EMBODIMENT:0-<state_dim - 1>``).
            judge: a success judge (:class:`~hma_zoo.policy.judge.Judge`), or ``None``.
            horizon: frames per episode before ``truncated`` (default ``task.horizon``).

        ``reset(options=...)`` needs ``prompt_frames`` (uint8 ``[Tp, H, W, 3]``) and, for tasks with a goal, ``goal``;
        optional: ``prompt_actions`` (``[Tp - 1, chunk]``) and ``prompt_state`` (``[state_dim]``, the state
        ``obs["state"]`` keeps when there is no probe; zeros if not given).
        """

        metadata = {"render_modes": ["rgb_array"]}

        def __init__(self, simulator: Any, task: str | TaskSpec, probe: Any = None, judge: Any = None,
                     horizon: int | None = None) -> None:
            self.sim = simulator
            self.task = get_task(task) if isinstance(task, str) else task
            names = simulator.model.config.embodiment_names
            if self.task.embodiment not in names:
                raise ValueError(f"the world model serves {list(names)}, not {self.task.embodiment!r} of task "
                                 f"{self.task.name!r}; use a model trained on that embodiment")
            spec = simulator.model.config.embodiment(self.task.embodiment)
            if spec.chunk_dim != self.task.chunk_dim:
                raise ValueError(f"task {self.task.name!r} acts with chunks of {self.task.chunk_dim} values but the "
                                 f"model's {spec.name!r} takes {spec.chunk_dim} (stride {spec.stride} x "
                                 f"{spec.action_dim})")
            if probe is not None:
                width = next((t.width for t in probe.targets if t.name == self.task.embodiment), None)
                if width is None:
                    raise ValueError(f"the probe has no head for {self.task.embodiment!r} (it knows "
                                     f"{list(probe.embodiments)})")
                if width < self.task.state_dim:
                    raise ValueError(f"the probe reads {width} dims of {self.task.embodiment!r}; task "
                                     f"{self.task.name!r} needs its {self.task.state_dim}-dim state: fit it with "
                                     f"--dims {self.task.embodiment}:0-{self.task.state_dim - 1}")
            elif self.task.state_dim:
                log.warning("WorldModelTaskEnv without a state probe: obs['state'] stays the prompt's state, so "
                            "state-based (scripted) policies act blind inside the world model")
            self.probe, self.judge = probe, judge
            self.horizon = int(horizon or self.task.horizon)
            self.render_mode = "rgb_array"
            self.observation_space = spaces.Dict({
                "image": spaces.Box(0, 255, (64, 64, 3), np.uint8),
                "state": spaces.Box(-np.inf, np.inf, (self.task.state_dim,), np.float32),
                "goal": spaces.Box(-np.inf, np.inf, (self.task.goal_dim,), np.float32),
            })
            self.action_space = spaces.Box(-np.inf, np.inf, (self.task.chunk_dim,), np.float32)
            self._recent: list[np.ndarray] = []
            self._goal = np.zeros(self.task.goal_dim, np.float32)
            self._state = np.zeros(self.task.state_dim, np.float32)
            self.frame_index = 0
            self.actions: list[np.ndarray] = []

        def _observe(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
            """Observation and info of the newest frame: the probe reads the state once, the judge reuses it."""
            frames = np.stack(self._recent)  # the newest frame with the one before it (one frame at reset)
            if self.probe is not None:
                pred = self.probe.predict(torch.from_numpy(frames)[None], [self.task.embodiment])
                self._state = pred[0, -1, : self.task.state_dim].numpy().astype(np.float32)
            success, progress = (False, 0.0) if self.judge is None else \
                self.judge.judge(frames, self._goal, self._state)
            obs = {"image": self._recent[-1], "state": self._state, "goal": self._goal}
            return obs, {"success": success, "progress": progress}

        def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
            super().reset(seed=seed)
            options = options or {}
            if "prompt_frames" not in options:
                raise ValueError("WorldModelTaskEnv.reset needs options={'prompt_frames': uint8 [Tp, H, W, 3], "
                                 "'goal': [G], ...}: the world model starts from real frames")
            if seed is not None:
                gen = self.sim.stepper.generator or torch.Generator(device=self.sim.model.pos.device)
                gen.manual_seed(int(seed))
                self.sim.stepper.generator = gen
            prompt = np.asarray(options["prompt_frames"], np.uint8)
            if prompt.ndim == 3:
                prompt = prompt[None]
            goal = np.asarray(options.get("goal", np.zeros(self.task.goal_dim)), np.float32).reshape(-1)
            if goal.shape[0] != self.task.goal_dim:
                raise ValueError(f"task {self.task.name!r} has a {self.task.goal_dim}-dim goal, got {goal.shape[0]}")
            self._goal = goal
            # without a probe the state stays the prompt's (never the previous episode's)
            self._state = np.asarray(options.get("prompt_state", np.zeros(self.task.state_dim)),
                                     np.float32)[: self.task.state_dim]
            first = self.sim.reset(prompt, options.get("prompt_actions"), embodiment=self.task.embodiment)
            self._recent = [first.numpy()]
            self.frame_index = 0
            self.actions = []
            return self._observe()

        def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
            if not self._recent:
                raise RuntimeError("call reset(options={'prompt_frames': ...}) before step()")
            a = action_rows(self.task, action).reshape(-1)  # one control step is held for the frame
            frame = self.sim.step(a).numpy()
            self.actions.append(a)
            self._recent = (self._recent + [frame])[-2:]
            self.frame_index += 1
            obs, info = self._observe()
            truncated = self.frame_index >= self.horizon
            return obs, info["progress"], False, truncated, info

        def render(self) -> np.ndarray | None:
            return self._recent[-1] if self._recent else None


__all__ = ["WorldModelTaskEnv"]
