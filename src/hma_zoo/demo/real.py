"""The real simulator beside the prediction: one twin per embodiment the shipped ``sim-mix`` models know.

A twin resets to a seeded start, renders it as the world model's prompt, and then executes the same action chunk as
the world model at every frame, so the page shows what the robot really does next to what the model predicts. The
environments are the ones the training data came from (:mod:`hma_zoo.data.sources`, :mod:`hma_zoo.policy.tasks`):

=====================  ===============================================  =========================
embodiment             simulator                                        needs
=====================  ===============================================  =========================
``pusht``              gym-pusht ``PushT-v0`` (:class:`RealTaskEnv`)     ``gym-pusht``
``metaworld_sawyer``   Meta-World ``reach-v3``, ``corner2`` camera        ``metaworld``
``dmc_cartpole``       dm_control ``cartpole-swingup``                   ``dm-control``
``dmc_cheetah``        dm_control ``cheetah-run``                        ``dm-control``
=====================  ===============================================  =========================

All are in the ``sim`` extra. A twin must be created, stepped and closed on one thread (MuJoCo's EGL context is
bound to it); the demo runs each session on its own worker thread. Other embodiments have no twin: the page says so.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Protocol

import numpy as np

#: embodiment -> (module the simulator needs, how it is made)
REAL_SIMULATORS: dict[str, tuple[str, str]] = {
    "pusht": ("gym_pusht", "gym-pusht PushT-v0"),
    "metaworld_sawyer": ("metaworld", "Meta-World reach-v3"),
    "dmc_cartpole": ("dm_control", "dm_control cartpole-swingup"),
    "dmc_cheetah": ("dm_control", "dm_control cheetah-run"),
}


class RealTwin(Protocol):
    """What the demo needs of a real simulator."""

    def reset(self, seed: int) -> np.ndarray:
        """Start a new episode; returns its first frame, uint8 ``[H, W, 3]``."""

    def step(self, chunk: np.ndarray) -> np.ndarray:
        """Execute one frame's action chunk ``[stride * action_dim]``; returns the next frame."""

    def position(self) -> np.ndarray | None:
        """Where a position-controlled agent is now, as an action ``[action_dim]`` (``None``: velocity control)."""

    def close(self) -> None:
        """Free the simulator."""


def real_status(embodiment: str) -> tuple[bool, str]:
    """Whether a real twin can be made for ``embodiment`` here, and a one-line reason (what it is or what is
    missing), without importing the simulator."""
    if embodiment not in REAL_SIMULATORS:
        return False, f"no real simulator is known for {embodiment!r} (known: {', '.join(sorted(REAL_SIMULATORS))})"
    module, what = REAL_SIMULATORS[embodiment]
    if importlib.util.find_spec(module) is None:
        return False, f"{what} is not installed: pip install -e '.[sim]'"
    return True, what


class _TaskTwin:
    """A :class:`~hma_zoo.policy.tasks.RealTaskEnv` (Push-T, Meta-World) as a twin."""

    def __init__(self, task: str, image_size: tuple[int, int]) -> None:
        from hma_zoo.policy.tasks import RealTaskEnv

        self.env = RealTaskEnv(task, image_size=image_size, horizon=10**9)
        inner = self.env._env.unwrapped
        if hasattr(inner, "max_path_length"):  # Meta-World stops at 500 control steps; a drive may be longer
            inner.max_path_length = 10**9

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        return obs["image"]

    def step(self, chunk: np.ndarray) -> np.ndarray:
        obs = self.env.step(np.asarray(chunk, np.float32))[0]
        self.env.trace = {k: (v[-1:] if isinstance(v, list) else v) for k, v in self.env.trace.items()}  # bounded
        return obs["image"]

    def position(self) -> np.ndarray | None:
        if self.env.task.embodiment != "pusht" or not self.env.trace:
            return None
        return np.asarray(self.env.trace["state"][-1][:2], np.float32)  # the pusher's position

    def close(self) -> None:
        self.env.close()


class _DMCTwin:
    """A dm_control suite task rendered like the ``dmc`` data source (64 x 64, camera 0, cheap shadows)."""

    def __init__(self, domain: str, task: str, stride: int, image_size: tuple[int, int]) -> None:
        from hma_zoo.data.sources.base import SourceSpec, make_generator

        spec = SourceSpec("dmc", f"dmc_{domain}", episodes=1, steps=stride, stride=stride,
                          params={"domain": domain, "task": task})
        self._gen: Any = make_generator(spec, image_size)
        self.env, self.stride, self.image_size = self._gen.env, stride, image_size
        self.low, self.high = self._gen.low, self._gen.high

    def _render(self) -> np.ndarray:
        h, w = self.image_size
        return self.env.physics.render(height=h, width=w, camera_id=self._gen.camera_id).copy()

    def reset(self, seed: int) -> np.ndarray:
        self.env.task._random = np.random.RandomState(seed % 2**32)  # as the data source seeds an episode
        self.env.reset()
        return self._render()

    def step(self, chunk: np.ndarray) -> np.ndarray:
        rows = np.asarray(chunk, np.float64).reshape(self.stride, -1)
        for row in rows:
            self.env.step(np.clip(row, self.low, self.high))
        return self._render()

    def position(self) -> np.ndarray | None:
        return None

    def close(self) -> None:
        self.env.close()


def make_real(embodiment: str, stride: int, image_size: tuple[int, int]) -> RealTwin:
    """A real twin of ``embodiment`` stepping ``stride`` control steps per frame, rendering ``image_size`` frames.

    Raises:
        ValueError: no twin is known for the embodiment, or its simulator is not installed (the message says which).
    """
    ok, why = real_status(embodiment)
    if not ok:
        raise ValueError(why)
    if embodiment == "pusht":
        return _TaskTwin("pusht", image_size)
    if embodiment == "metaworld_sawyer":
        return _TaskTwin("reach", image_size)
    domain, task = {"dmc_cartpole": ("cartpole", "swingup"), "dmc_cheetah": ("cheetah", "run")}[embodiment]
    return _DMCTwin(domain, task, stride, image_size)
