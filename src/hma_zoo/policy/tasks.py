"""Policy tasks: a real simulator behind the same gymnasium interface as the world model.

A :class:`TaskSpec` names one task of one embodiment the world models know (``reach``: Meta-World ``reach-v3`` on
the Sawyer, ``pusht``: gym-pusht). :class:`RealTaskEnv` runs it in the real simulator at the *frame rate of the
dataset*: one ``step`` executes one frame's action chunk (``stride`` control steps) and renders one frame, exactly
as :class:`~hma_zoo.policy.wm_env.WorldModelTaskEnv` steps the world model. Both return the same
observation::

    {"image": uint8 [H, W, 3], "state": float32 [S], "goal": float32 [G]}

``state`` is the task's low-dimensional state (Meta-World: the Sawyer hand position, gripper opening and object
position, the first 7 entries of its observation; Push-T: the agent position and block pose as ``x, y, cos,
sin``): the simulator's own in the real env, read from the generated frames by a state probe in the world model.
``goal`` is the task's target (the reach or push goal; empty for Push-T, whose goal never moves). ``info`` carries
``success`` (the simulator's own signal) and ``progress`` (Meta-World: 1 if successful in this step, else 0; Push-T:
the coverage of the goal by the block, the env's reward before clipping).

Episodes recorded through :class:`RealTaskEnv` store ``proprio`` as the task state followed by the goal, so a probe
fitted with ``--dims NAME:0-<S-1>`` reads the state back from frames (:func:`record_episode`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

try:
    import gymnasium as gym
    from gymnasium import spaces
except ImportError:  # pragma: no cover - gymnasium comes with the `sim` extra
    gym = None  # type: ignore[assignment]


@dataclass(frozen=True)
class TaskSpec:
    """One policy task.

    Args:
        name: task name (``reach``, ``pusht``).
        embodiment: the world-model embodiment that runs it (its stride and action width must match).
        stride: control steps per frame.
        action_dim: width of one control step's action.
        state_dim: width of ``obs["state"]``.
        goal_dim: width of ``obs["goal"]`` (0: a fixed goal).
        horizon: frames per evaluation episode by default (a multiple of the world model's 8-frame window).
        score: how an episode is scored: ``"success"`` (any success) or ``"progress"`` (final progress).
        description: one line for ``hma-zoo policy tasks``.
        success_radius: reach only: distance of the hand to the goal that counts as success (the env's own).
        params: family settings.
    """

    name: str
    embodiment: str
    stride: int
    action_dim: int
    state_dim: int
    goal_dim: int
    horizon: int
    score: str
    description: str = ""
    success_radius: float = 0.05
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def chunk_dim(self) -> int:
        """Width of one frame's action chunk (``stride * action_dim``)."""
        return self.stride * self.action_dim


TASKS: dict[str, TaskSpec] = {
    "reach": TaskSpec("reach", "metaworld_sawyer", stride=4, action_dim=4, state_dim=7, goal_dim=3, horizon=32,
                      score="success",
                      description="Meta-World reach-v3 (Sawyer, 4-D delta actions) with a new goal from 50 per reset; "
                                  "success = hand within 5 cm of the goal at any step",
                      params={"env_name": "reach-v3", "camera": "corner2", "num_tasks": 50}),
    "push": TaskSpec("push", "metaworld_sawyer", stride=4, action_dim=4, state_dim=7, goal_dim=3, horizon=32,
                     score="success",
                     description="Meta-World push-v3 (Sawyer): push the puck to a goal drawn from 50 per reset; "
                                 "success = puck within 5 cm of the goal at any step",
                     params={"env_name": "push-v3", "camera": "corner2", "num_tasks": 50}),
    "pusht": TaskSpec("pusht", "pusht", stride=1, action_dim=2, state_dim=6, goal_dim=0, horizon=32,
                      score="progress",
                      description="gym-pusht (2-D absolute pusher targets); score = final coverage of the goal "
                                  "by the T block (the env's reward before clipping)",
                      params={}),
}


def get_task(name: str) -> TaskSpec:
    """The :class:`TaskSpec` called ``name``; a KeyError names the known tasks."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]


def action_bounds(task: TaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` of one control step's action ``[action_dim]`` (Push-T: pixel targets in ``[0, 512]``;
    Meta-World: deltas in ``[-1, 1]``)."""
    if task.embodiment == "pusht":
        return np.zeros(2, np.float32), np.full(2, 512.0, np.float32)
    return -np.ones(task.action_dim, np.float32), np.ones(task.action_dim, np.float32)


def action_rows(task: TaskSpec, action: Any) -> np.ndarray:
    """One frame's action as control-step rows float32 ``[stride, action_dim]``: ``action`` is the frame's chunk
    ``[stride * action_dim]`` (row ``i`` runs control step ``i``) or one control step ``[action_dim]`` held for the
    frame. Raises ``ValueError`` for another width or a NaN / inf value."""
    a = np.asarray(action, np.float32).reshape(-1)
    if a.shape[0] == task.action_dim:
        rows = np.tile(a, (task.stride, 1))
    elif a.shape[0] == task.chunk_dim:
        rows = a.reshape(task.stride, task.action_dim)
    else:
        raise ValueError(f"task {task.name!r} takes a frame's chunk of {task.chunk_dim} values (stride {task.stride} "
                         f"x {task.action_dim}) or one control step of {task.action_dim}, got {a.shape[0]}")
    if not np.isfinite(rows).all():
        raise ValueError(f"action has NaN or inf values: {a.tolist()}")
    return rows


# ------------------------------------------------------------------------------------------------ Push-T geometry
def pusht_state(agent: np.ndarray, block_pose: np.ndarray) -> np.ndarray:
    """Push-T task state ``[agent_x, agent_y, block_x, block_y, cos(angle), sin(angle)]`` (float32)."""
    return np.array([agent[0], agent[1], block_pose[0], block_pose[1], np.cos(block_pose[2]),
                     np.sin(block_pose[2])], np.float32)


class PushTCoverage:
    """Coverage of the Push-T goal by a block at a given pose, with gym-pusht's own geometry (no simulation)."""

    def __init__(self) -> None:
        import gym_pusht  # noqa: F401
        from gym_pusht.envs.pusht import PushTEnv

        env = PushTEnv()
        env.reset(seed=0)
        self._env = env

    def __call__(self, state: np.ndarray) -> float:
        """Coverage in ``[0, 1]`` of a task state ``[..., block_x, block_y, cos, sin]`` (see :func:`pusht_state`)."""
        from gym_pusht.envs.pusht import pymunk_to_shapely

        env = self._env
        pose = np.array([state[2], state[3], np.arctan2(state[5], state[4])], np.float64)
        goal = pymunk_to_shapely(env.get_goal_pose_body(env.goal_pose), env.block.shapes)
        block = pymunk_to_shapely(env.get_goal_pose_body(pose), env.block.shapes)
        return float(goal.intersection(block).area / goal.area)


# ------------------------------------------------------------------------------------------------- real env
def _env_vars() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


if gym is not None:

    class RealTaskEnv(gym.Env):
        """A task in its real simulator, one step per dataset frame (see the module docstring).

        Args:
            task: a task name or :class:`TaskSpec`.
            image_size: ``(H, W)`` of the rendered frames (the world model's, 64 x 64 for sim-mix).
            horizon: frames per episode before ``truncated`` (default ``task.horizon``).

        ``step(action)``: ``action`` is one frame's chunk ``[stride * action_dim]`` (row ``i`` runs control step
        ``i``), or one control step ``[action_dim]`` held for the frame. The control-step actions, rewards and
        success flags of the episode so far are kept in :attr:`trace` for :func:`record_episode`.
        """

        metadata = {"render_modes": ["rgb_array"]}

        def __init__(self, task: str | TaskSpec, image_size: tuple[int, int] = (64, 64),
                     horizon: int | None = None) -> None:
            self.task = get_task(task) if isinstance(task, str) else task
            self.image_size = (int(image_size[0]), int(image_size[1]))
            self.horizon = int(horizon or self.task.horizon)
            self.render_mode = "rgb_array"
            h, w = self.image_size
            self.observation_space = spaces.Dict({
                "image": spaces.Box(0, 255, (h, w, 3), np.uint8),
                "state": spaces.Box(-np.inf, np.inf, (self.task.state_dim,), np.float32),
                "goal": spaces.Box(-np.inf, np.inf, (self.task.goal_dim,), np.float32),
            })
            self.action_space = spaces.Box(-np.inf, np.inf, (self.task.chunk_dim,), np.float32)
            self._env: Any = None
            self._open()
            self.trace: dict[str, list[Any]] = {}
            self.frame_index = 0
            self._image: np.ndarray | None = None

        # -------------------------------------------------------------- family specifics
        def _open(self) -> None:
            import warnings

            warnings.filterwarnings("ignore", module="gymnasium")
            if self.task.embodiment == "metaworld_sawyer":
                _env_vars()
                # torchvision (through timm) must be imported before a MuJoCo EGL context exists: importing it
                # afterwards segfaults (torch 2.14.1 / torchvision 0.29.1 / mujoco 3.3.0, measured here).
                import metaworld  # noqa: F401
                import timm  # noqa: F401

                from hma_zoo.data.sources.base import disable_mujoco_fancy_rendering

                h, w = self.image_size
                p = self.task.params
                self._env = gym.make("Meta-World/MT1", env_name=p["env_name"], render_mode="rgb_array", width=w,
                                     height=h, camera_name=p["camera"], seed=0, num_tasks=p.get("num_tasks", 1))
                self._env.reset(seed=0)
                self._env.render()
                disable_mujoco_fancy_rendering(self._env)
                self._low, self._high = self._env.action_space.low, self._env.action_space.high
            elif self.task.embodiment == "pusht":
                import gym_pusht  # noqa: F401

                h, w = self.image_size
                self._env = gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", observation_width=w,
                                     observation_height=h)
                self._low, self._high = action_bounds(self.task)
            else:  # pragma: no cover - TASKS only holds the two above
                raise ValueError(f"no real simulator for embodiment {self.task.embodiment!r}")

        def _read(self, raw_obs: Any, info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """(image, state, goal) of the current simulator state."""
            if self.task.embodiment == "metaworld_sawyer":
                image = np.ascontiguousarray(self._env.render()[::-1])
                obs = np.asarray(raw_obs, np.float32)
                return image, obs[:7].copy(), obs[-3:].copy()
            image = np.asarray(raw_obs["pixels"], np.uint8)
            state = pusht_state(np.asarray(info["pos_agent"]), np.asarray(info["block_pose"]))
            return image, state, np.zeros(0, np.float32)

        def _progress(self, info: dict[str, Any], success: bool) -> float:
            if self.task.embodiment == "pusht":
                return float(info.get("coverage", 0.0))
            return 1.0 if success else 0.0

        # -------------------------------------------------------------- gymnasium API
        def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
            super().reset(seed=seed)
            raw, info = self._env.reset(seed=None if seed is None else int(seed % 2**31))
            if self.task.embodiment == "pusht":
                info = dict(info, **self._env.unwrapped._get_info())
                info["coverage"] = self._env.unwrapped._get_coverage()
            image, state, goal = self._read(raw, info)
            success = bool(info.get("success", info.get("is_success", False)))
            self._image = image
            self.frame_index = 0
            self.trace = {"frames": [image], "state": [state], "goal": goal, "actions": [], "reward": [],
                          "success": [], "progress": [self._progress(info, success)]}
            return {"image": image, "state": state, "goal": goal}, {"success": success,
                                                                   "progress": self.trace["progress"][0]}

        def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
            if not self.trace:
                raise RuntimeError("call reset() before step()")
            rows = np.clip(action_rows(self.task, action), self._low, self._high)  # NaN / inf refused before clipping
            success_any = False
            raw, info = None, {}
            for row in rows:
                raw, reward, _, _, info = self._env.step(row)
                success = bool(info.get("success", info.get("is_success", False)))
                success_any |= success
                self.trace["actions"].append(row.astype(np.float32))
                self.trace["reward"].append(float(reward))
                self.trace["success"].append(success)
            image, state, goal = self._read(raw, info)
            self._image = image
            self.frame_index += 1
            progress = self._progress(info, success_any)
            self.trace["frames"].append(image)
            self.trace["state"].append(state)
            self.trace["progress"].append(progress)
            truncated = self.frame_index >= self.horizon
            return ({"image": image, "state": state, "goal": goal}, progress, False, truncated,
                    {"success": success_any, "progress": progress})

        def render(self) -> np.ndarray | None:
            return self._image

        def close(self) -> None:
            if self._env is not None:
                self._env.close()
                self._env = None


def record_episode(env: Any, episode_id: str, meta: dict[str, Any] | None = None) -> Any:
    """The episode a :class:`RealTaskEnv` has run since its last reset, as an :class:`~hma_zoo.data.schema.Episode`
    of the task's embodiment: frames, control-step actions, ``proprio`` = task state + goal per frame, reward and
    success per control step, and ``meta`` (task, policy, seed ...)."""
    from hma_zoo.data.schema import Episode

    tr = env.trace
    goal = np.asarray(tr["goal"], np.float32)
    proprio = np.stack([np.concatenate([s, goal]) for s in tr["state"]]).astype(np.float32)
    return Episode(episode_id, env.task.embodiment, np.stack(tr["actions"]).astype(np.float32),
                   frames=np.stack(tr["frames"]).astype(np.uint8), proprio=proprio,
                   reward=np.asarray(tr["reward"], np.float32), success=np.asarray(tr["success"], bool),
                   meta=dict(meta or {}, task=env.task.name, progress=[float(p) for p in tr["progress"]]))


def run_episode(env: Any, policy: Callable[[dict[str, np.ndarray]], np.ndarray] | Any, seed: int | None = None,
                options: dict[str, Any] | None = None, frames: int | None = None) -> dict[str, Any]:
    """Run ``policy`` in ``env`` (real or world model) for ``frames`` steps (default: until ``truncated``).

    ``policy`` is a :class:`~hma_zoo.policy.policies.Policy` (``reset(seed)`` is called) or any callable
    ``obs -> action``. Returns ``{"success": any step successful, "progress": final progress, "score": the task's
    score, "steps": n, "images": uint8 [n + 1, H, W, 3]}``.
    """
    obs, info = env.reset(seed=seed, options=options)
    if hasattr(policy, "reset"):
        policy.reset(seed)
    images, success, progress, n = [obs["image"]], bool(info.get("success", False)), info.get("progress", 0.0), 0
    while True:
        act = policy.act(obs) if hasattr(policy, "act") else policy(obs)
        obs, _, terminated, truncated, info = env.step(act)
        images.append(obs["image"])
        success |= bool(info["success"])
        progress = float(info["progress"])
        n += 1
        if terminated or truncated or (frames is not None and n >= frames):
            break
    task = env.task
    score = float(success) if task.score == "success" else progress
    return {"success": success, "progress": progress, "score": score, "steps": n, "images": np.stack(images)}


__all__ = ["TASKS", "TaskSpec", "get_task", "RealTaskEnv", "record_episode", "run_episode", "pusht_state",
           "PushTCoverage", "action_bounds", "action_rows"]
