"""dm_control suite source: smoothed-random actions, fast 64x64 rendering (shadow map 256, no MSAA).

``params``: ``domain``, ``task`` (e.g. ``cheetah`` / ``run``), optional ``camera_id`` (default 0).
Run in its own worker process: dm_control renders black frames once a gymnasium EGL context exists.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hma_zoo.data.schema import EmbodimentInfo, Episode
from hma_zoo.data.sources.base import SourceSpec, smoothed_random_actions


def _flat_obs(observation: dict[str, Any]) -> np.ndarray:
    return np.concatenate([np.asarray(v, np.float32).ravel() for v in observation.values()])


class DMCGenerator:
    """Episodes of one dm_control ``domain-task`` (see module docstring)."""

    def __init__(self, spec: SourceSpec, image_size: tuple[int, int]) -> None:
        from dm_control import suite

        self.spec, self.image_size = spec, image_size
        self.domain, self.task = spec.params["domain"], spec.params["task"]
        self.camera_id = int(spec.params.get("camera_id", 0))
        self.env = suite.load(self.domain, self.task, task_kwargs={"random": 0})
        model = self.env.physics.model
        model.vis.quality.shadowsize = 256
        model.vis.quality.offsamples = 0
        aspec = self.env.action_spec()
        self.low, self.high = aspec.minimum.astype(np.float64), aspec.maximum.astype(np.float64)
        control_hz = round(1.0 / self.env.control_timestep(), 6)
        names = tuple(aspec.name.split("\t")) if aspec.name and len(aspec.name.split("\t")) == aspec.shape[0] else ()
        self.info = EmbodimentInfo(spec.name, int(aspec.shape[0]), control_hz, control_hz / spec.stride,
                                   action_names=names, camera=f"camera{self.camera_id}",
                                   source=f"dm_control/{self.domain}-{self.task}")

    def _render(self) -> np.ndarray:
        h, w = self.image_size
        return self.env.physics.render(height=h, width=w, camera_id=self.camera_id).copy()

    def episode(self, index: int, seed: int) -> Episode:
        rng = np.random.default_rng(seed)
        self.env.task._random = np.random.RandomState(seed % 2**32)  # the suite's per-task RNG drives reset
        ts = self.env.reset()
        n_frames = self.spec.num_frames
        n_act = (n_frames - 1) * self.spec.stride
        actions = smoothed_random_actions(rng, self.low, self.high, n_act)
        frames, proprio, reward = [self._render()], [_flat_obs(ts.observation)], np.zeros(n_act, np.float32)
        for t in range(n_act):
            ts = self.env.step(actions[t])
            reward[t] = ts.reward or 0.0
            if (t + 1) % self.spec.stride == 0:
                frames.append(self._render())
                proprio.append(_flat_obs(ts.observation))
        return Episode(f"{self.spec.name}_{index:06d}", self.spec.name, actions, frames=np.stack(frames),
                       proprio=np.stack(proprio), reward=reward, meta={"seed": int(seed), "task": self.task})


def make_generator(spec: SourceSpec, image_size: tuple[int, int]) -> DMCGenerator:
    return DMCGenerator(spec, image_size)
