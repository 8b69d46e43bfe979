"""Gymnasium source: MuJoCo presets (Pusher 7-D, Reacher 2-D, Hopper 3-D ...) and any env id rendering rgb_array.

``params``:

* ``env_id`` (required), ``make_kwargs`` (extra ``gym.make`` keyword arguments);
* ``policy``: ``None`` (smoothed random in the action space) or ``"package.module:PolicyClass"``, a
  :class:`~hma_zoo.data.sources.base.Policy` (``reset(env, rng)``, ``__call__(obs, t) -> action``);
* ``camera``: optional ``default_camera_config`` dict for MuJoCo envs (the default cameras are far away).

An episode that terminates early is cut at the last complete frame (its length is then shorter than ``steps``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from hma_zoo.data.schema import EmbodimentInfo, Episode
from hma_zoo.data.sources.base import SourceSpec, disable_mujoco_fancy_rendering, load_policy

# closer cameras for the small MuJoCo scenes (gymnasium's defaults leave the robot tiny at 64x64)
CAMERAS: dict[str, dict[str, Any]] = {
    "Pusher-v5": {"trackbodyid": -1, "distance": 2.2, "elevation": -50.0, "azimuth": 90.0,
                  "lookat": np.array([0.2, -0.3, 0.0])},
    "Reacher-v5": {"trackbodyid": 0, "distance": 0.6, "elevation": -90.0},
}


class GymGenerator:
    """Episodes of one gymnasium environment id with a pluggable policy."""

    def __init__(self, spec: SourceSpec, image_size: tuple[int, int]) -> None:
        import gymnasium as gym

        self.spec, self.image_size = spec, image_size
        env_id = spec.params["env_id"]
        kwargs = dict(spec.params.get("make_kwargs", {}))
        h, w = image_size
        camera = spec.params.get("camera", CAMERAS.get(env_id))
        try:
            extra = {"width": w, "height": h, **({"default_camera_config": camera} if camera else {})}
            self.env = gym.make(env_id, render_mode="rgb_array", **extra, **kwargs)
        except TypeError:  # not a MuJoCo env: no width/height/camera arguments; frames are resized instead
            self.env = gym.make(env_id, render_mode="rgb_array", **kwargs)
        self.policy = load_policy(spec.params.get("policy"))
        space = self.env.action_space
        if not hasattr(space, "shape") or space.shape is None or len(space.shape) != 1:
            raise ValueError(f"{env_id}: only 1-D Box action spaces are supported, got {space}")
        dt = getattr(self.env.unwrapped, "dt", None)
        control_hz = round(1.0 / dt, 6) if dt else float(self.env.metadata.get("render_fps", 30))
        self.info = EmbodimentInfo(spec.name, int(space.shape[0]), control_hz, control_hz / spec.stride,
                                   camera="default", source=f"gymnasium/{env_id}")
        # render once and switch off shadows/reflections before any recorded frame, so all frames look alike
        self.env.reset(seed=0)
        self.env.render()
        with contextlib.suppress(ImportError, AttributeError):
            disable_mujoco_fancy_rendering(self.env)

    def _render(self) -> np.ndarray:
        frame = self.env.render()
        if frame.shape[:2] != tuple(self.image_size):
            from PIL import Image

            frame = np.asarray(Image.fromarray(frame).resize(self.image_size[::-1], Image.BILINEAR))
        return np.ascontiguousarray(frame[..., :3]).astype(np.uint8)

    def episode(self, index: int, seed: int) -> Episode:
        rng = np.random.default_rng(seed)
        obs, _ = self.env.reset(seed=int(seed % 2**31))
        self.env.action_space.seed(int(seed % 2**31))
        self.policy.reset(self.env, rng)
        s, n_act_max = self.spec.stride, (self.spec.num_frames - 1) * self.spec.stride
        frames, actions, reward = [self._render()], [], []
        for t in range(n_act_max):
            a = np.asarray(self.policy(obs, t), np.float32).reshape(self.env.action_space.shape)
            obs, r, terminated, truncated, _ = self.env.step(a)
            actions.append(a)
            reward.append(float(r))
            if (t + 1) % s == 0:
                frames.append(self._render())
            if terminated or truncated:
                break
        k = (len(frames) - 1) * s
        return Episode(f"{self.spec.name}_{index:06d}", self.spec.name, np.asarray(actions[:k], np.float32),
                       frames=np.stack(frames), reward=np.asarray(reward[:k], np.float32),
                       meta={"seed": int(seed), "env_id": self.spec.params["env_id"]})


def make_generator(spec: SourceSpec, image_size: tuple[int, int]) -> GymGenerator:
    return GymGenerator(spec, image_size)
