"""Meta-World (Sawyer, 4-D) source: scripted expert policies mixed with noise and random actions.

``params``: ``tasks`` (Meta-World v3 env names, default five manipulation tasks; episode ``i`` uses task
``i % len(tasks)``), ``camera`` (default ``corner2``; its frames come out upside down and are flipped).
Per episode the behaviour is drawn: expert + Gaussian noise of random scale (60%), expert interleaved with random
segments (20%), smoothed random (20%).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hma_zoo.data.schema import EmbodimentInfo, Episode
from hma_zoo.data.sources.base import SourceSpec, disable_mujoco_fancy_rendering, smoothed_random_actions

DEFAULT_TASKS = ("reach-v3", "push-v3", "drawer-open-v3", "button-press-topdown-v3", "door-open-v3")


class MetaWorldGenerator:
    """Episodes of Meta-World MT1 tasks with the bundled expert policies."""

    def __init__(self, spec: SourceSpec, image_size: tuple[int, int]) -> None:
        import metaworld  # noqa: F401  (registers the gymnasium ids)

        self.spec, self.image_size = spec, image_size
        self.tasks = tuple(spec.params.get("tasks", DEFAULT_TASKS))
        self.camera = spec.params.get("camera", "corner2")
        self._envs: dict[str, Any] = {}
        env = self._env(self.tasks[0])
        control_hz = round(1.0 / env.unwrapped.dt, 6)
        self.info = EmbodimentInfo(spec.name, 4, control_hz, control_hz / spec.stride,
                                   action_names=("dx", "dy", "dz", "grip"), camera=self.camera,
                                   source="metaworld/MT1")

    def _env(self, task: str) -> Any:
        if task not in self._envs:
            import gymnasium as gym
            from metaworld.policies import ENV_POLICY_MAP

            h, w = self.image_size
            env = gym.make("Meta-World/MT1", env_name=task, render_mode="rgb_array", width=w, height=h,
                           camera_name=self.camera, seed=0)
            env.reset(seed=0)
            env.render()
            disable_mujoco_fancy_rendering(env)
            self._envs[task] = (env, ENV_POLICY_MAP[task]())
        return self._envs[task][0]

    def episode(self, index: int, seed: int) -> Episode:
        rng = np.random.default_rng(seed)
        task = self.tasks[index % len(self.tasks)]
        env = self._env(task)
        policy = self._envs[task][1]
        obs, _ = env.reset(seed=int(seed % 2**31))
        s, n_act = self.spec.stride, (self.spec.num_frames - 1) * self.spec.stride
        u = rng.random()
        mode = "expert_noise" if u < 0.6 else ("expert_random" if u < 0.8 else "random")
        noise = rng.uniform(0.05, 0.5)
        low, high = env.action_space.low, env.action_space.high
        rand = smoothed_random_actions(rng, low, high, n_act)
        random_mask = np.zeros(n_act, bool)
        if mode == "expert_random":
            for start in rng.integers(0, n_act, 3):
                random_mask[start:start + int(rng.integers(5, 20))] = True
        frames, proprio, actions, reward, success = [env.render()[::-1]], [obs], [], [], []
        for t in range(n_act):
            if mode == "random" or random_mask[t]:
                a = rand[t]
            else:
                a = policy.get_action(obs) + (rng.normal(0, noise, 4) if mode == "expert_noise" else 0.0)
            a = np.clip(a, low, high).astype(np.float32)
            obs, r, _, _, info = env.step(a)
            actions.append(a)
            reward.append(float(r))
            success.append(bool(info.get("success", 0.0)))
            if (t + 1) % s == 0:
                frames.append(env.render()[::-1])
                proprio.append(obs)
        return Episode(f"{self.spec.name}_{index:06d}", self.spec.name, np.asarray(actions, np.float32),
                       frames=np.ascontiguousarray(np.stack(frames)).astype(np.uint8),
                       proprio=np.asarray(proprio, np.float32), reward=np.asarray(reward, np.float32),
                       success=np.asarray(success), meta={"seed": int(seed), "task": task, "mode": mode})


def make_generator(spec: SourceSpec, image_size: tuple[int, int]) -> MetaWorldGenerator:
    return MetaWorldGenerator(spec, image_size)
