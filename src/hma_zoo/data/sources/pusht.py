"""gym-pusht source (2-D absolute target actions in [0, 512]): a scripted pusher mixed with random motion.

``params``: ``scripted_fraction`` (default 0.6): share of episodes driven by the scripted pusher (with noise of a
per-episode scale); the rest use smoothed random targets. The pusher walks around the T block to the side
opposite its goal, then pushes it toward the goal.
"""

from __future__ import annotations

import numpy as np

from hma_zoo.data.schema import EmbodimentInfo, Episode
from hma_zoo.data.sources.base import SourceSpec, smoothed_random_actions


def scripted_push_target(agent: np.ndarray, block: np.ndarray, goal: np.ndarray, standoff: float = 45.0) -> np.ndarray:
    """Next target position of the pusher (all in pixels of the 512x512 board).

    Pushes the block centre toward the goal: first reach the contact point ``standoff`` behind the block
    (detouring sideways when the block is in the way), then move through the block toward the goal.
    """
    to_goal = goal - block
    dist = np.linalg.norm(to_goal)
    if dist < 1e-6:
        return agent.copy()
    u = to_goal / dist
    contact = block - u * standoff
    rel = agent - block
    ahead = float(rel @ u)  # > 0: the agent is on the goal side of the block
    if np.linalg.norm(agent - contact) > 15.0:
        if ahead > -standoff * 0.5:  # go around: step sideways first
            side = np.array([-u[1], u[0]])
            side = side if float(rel @ side) >= 0 else -side
            return block + side * standoff * 1.6 - u * standoff * 0.5
        return contact
    return block + u * min(dist, 40.0)


class PushTGenerator:
    """Episodes of ``gym_pusht/PushT-v0`` at the requested image size."""

    def __init__(self, spec: SourceSpec, image_size: tuple[int, int]) -> None:
        import gym_pusht  # noqa: F401  (registers the env)
        import gymnasium as gym

        self.spec, self.image_size = spec, image_size
        h, w = image_size
        self.env = gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", observation_width=w,
                            observation_height=h)
        control_hz = float(getattr(self.env.unwrapped, "control_hz", 10))
        self.scripted_fraction = float(spec.params.get("scripted_fraction", 0.6))
        self.info = EmbodimentInfo(spec.name, 2, control_hz, control_hz / spec.stride, action_names=("x", "y"),
                                   camera="top", source="gym_pusht/PushT-v0")

    def episode(self, index: int, seed: int) -> Episode:
        rng = np.random.default_rng(seed)
        obs, info = self.env.reset(seed=int(seed % 2**31))
        s, n_act = self.spec.stride, (self.spec.num_frames - 1) * self.spec.stride
        scripted = rng.random() < self.scripted_fraction
        noise = rng.uniform(2.0, 25.0)
        random_targets = smoothed_random_actions(rng, np.array([40.0, 40.0]), np.array([472.0, 472.0]), n_act)
        frames, proprio, actions, reward, success = [obs["pixels"]], [obs["agent_pos"]], [], [], []
        for t in range(n_act):
            if scripted:
                target = scripted_push_target(np.asarray(info["pos_agent"], float),
                                              np.asarray(info["block_pose"][:2], float),
                                              np.asarray(info["goal_pose"][:2], float))
                a = np.clip(target + rng.normal(0, noise, 2), 0, 512).astype(np.float32)
            else:
                a = random_targets[t]
            obs, r, _, _, info = self.env.step(a)
            actions.append(a)
            reward.append(float(r))
            success.append(bool(info.get("is_success", False)))
            if (t + 1) % s == 0:
                frames.append(obs["pixels"])
                proprio.append(obs["agent_pos"])
        return Episode(f"{self.spec.name}_{index:06d}", self.spec.name, np.asarray(actions, np.float32),
                       frames=np.stack(frames).astype(np.uint8), proprio=np.asarray(proprio, np.float32),
                       reward=np.asarray(reward, np.float32), success=np.asarray(success),
                       meta={"seed": int(seed), "policy": "scripted" if scripted else "random"})


def make_generator(spec: SourceSpec, image_size: tuple[int, int]) -> PushTGenerator:
    return PushTGenerator(spec, image_size)
