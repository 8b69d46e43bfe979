"""Shared pieces of the simulator sources: the source spec, deterministic seeds, action generators.

A *source* turns one :class:`SourceSpec` (one embodiment of one simulator family) into episodes. Each family
module (``dmc``, ``gym``, ``pusht``, ``metaworld``) exposes ``make_generator(spec, image_size)`` returning an
object with ``.info`` (:class:`~hma_zoo.data.schema.EmbodimentInfo`) and ``.episode(index, seed)`` returning an
:class:`~hma_zoo.data.schema.Episode`. Nothing here imports torch, so worker processes stay light.

Frames are rendered only every ``stride`` control steps (rendering is ~99% of the cost on CPU): an episode of
``steps`` control steps has ``steps // stride + 1`` frames and ``(steps // stride) * stride`` actions.
"""

from __future__ import annotations

import importlib
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FAMILIES: dict[str, str] = {
    "dmc": "hma_zoo.data.sources.dmc",
    "gym": "hma_zoo.data.sources.gym",
    "pusht": "hma_zoo.data.sources.pusht",
    "metaworld": "hma_zoo.data.sources.metaworld",
}


@dataclass(frozen=True)
class SourceSpec:
    """One embodiment to generate.

    Args:
        family: simulator family, one of :data:`FAMILIES` (one family per worker process: dm_control and
            gymnasium/metaworld EGL renderers must not share a process).
        name: embodiment name written to the dataset.
        episodes: number of episodes.
        steps: control steps per episode.
        stride: control steps per rendered frame.
        params: family-specific settings (``domain``/``task`` for dmc, ``env_id``/``policy`` for gym, ``tasks``
            for metaworld, ``scripted_fraction`` for pusht ...).
    """

    family: str
    name: str
    episodes: int
    steps: int
    stride: int = 1
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown source family {self.family!r}; known: {sorted(FAMILIES)}")
        if self.steps < self.stride or self.stride < 1 or self.episodes < 0:
            raise ValueError(f"source {self.name!r}: need steps >= stride >= 1 and episodes >= 0")

    @property
    def num_frames(self) -> int:
        return self.steps // self.stride + 1

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "name": self.name, "episodes": self.episodes, "steps": self.steps,
                "stride": self.stride, "params": dict(self.params)}


def make_generator(spec: SourceSpec, image_size: tuple[int, int]) -> Any:
    """Import the family module lazily and build its generator for ``spec``."""
    module = importlib.import_module(FAMILIES[spec.family])
    return module.make_generator(spec, image_size)


def episode_seed(base_seed: int, name: str, index: int) -> int:
    """Deterministic 32-bit seed of episode ``index`` of embodiment ``name`` (independent of worker layout)."""
    return int(np.random.SeedSequence([int(base_seed), zlib.crc32(name.encode()), int(index)]).generate_state(1)[0])


def smoothed_random_actions(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, n: int,
                            smoothing: float | None = None, hold_prob: float = 0.02) -> np.ndarray:
    """Temporally correlated random actions ``[n, A]`` that exercise the robot.

    An exponential moving average of uniform targets in ``[low, high]`` (smoothing drawn per episode in
    ``[0.6, 0.95]`` unless given) with occasional jumps to a new held target, clipped to the bounds. Smoothed
    noise moves the body coherently, which makes controllability learnable from the frames.
    """
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    alpha = rng.uniform(0.6, 0.95) if smoothing is None else smoothing
    out = np.empty((n, low.shape[0]), np.float32)
    a = rng.uniform(low, high)
    target = rng.uniform(low, high)
    for t in range(n):
        if rng.random() < 0.1:
            target = rng.uniform(low, high)
        if rng.random() < hold_prob:
            a = target.copy()
        a = alpha * a + (1 - alpha) * target + rng.normal(0, 0.05, size=a.shape) * (high - low)
        out[t] = np.clip(a, low, high)
    return out


class Policy:
    """Interface of a pluggable policy for :mod:`hma_zoo.data.sources.gym`.

    ``reset(env, rng)`` is called at the start of every episode; ``__call__(obs, t)`` returns the action of control
    step ``t``. Pass ``params={"policy": "my_module:MyPolicy"}`` (a class or zero-argument factory) in a
    :class:`SourceSpec` or ``--policy my_module:MyPolicy`` on the command line.
    """

    def reset(self, env: Any, rng: np.random.Generator) -> None:
        self.env, self.rng = env, rng

    def __call__(self, obs: Any, t: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class SmoothedRandomPolicy(Policy):
    """Default policy: :func:`smoothed_random_actions` inside the env's Box action space."""

    def __init__(self, horizon: int = 10000) -> None:
        self.horizon = horizon

    def reset(self, env: Any, rng: np.random.Generator) -> None:
        super().reset(env, rng)
        space = env.action_space
        self._actions = smoothed_random_actions(rng, space.low, space.high, self.horizon)

    def __call__(self, obs: Any, t: int) -> np.ndarray:
        return self._actions[t % self.horizon]


def load_policy(ref: str | Policy | None) -> Policy:
    """A :class:`Policy` from an instance, a ``"module:attr"`` reference, or ``None`` (smoothed random)."""
    if ref is None:
        return SmoothedRandomPolicy()
    if isinstance(ref, Policy) or callable(getattr(ref, "reset", None)):
        return ref  # type: ignore[return-value]
    module_name, _, attr = str(ref).partition(":")
    if not attr:
        raise ValueError(f"policy reference {ref!r} must look like 'package.module:PolicyClass'")
    return getattr(importlib.import_module(module_name), attr)()


def disable_mujoco_fancy_rendering(env: Any) -> None:
    """Turn off shadows and reflections of a gymnasium MuJoCo renderer (call after the first ``render()``)."""
    import mujoco

    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    if renderer is None:
        return
    viewer = renderer._get_viewer("rgb_array")
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
