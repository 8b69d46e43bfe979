"""The interactive simulator: a world model plus a tokenizer behaving like an environment.

::

    sim = hma_zoo.Simulator(model, tokenizer, steps=2, temperature=0.0)
    frame = sim.reset(prompt_frames, embodiment="dmc_cheetah")      # uint8 [Tp, H, W, 3] or [B, Tp, H, W, 3]
    frame = sim.step(action)                                         # uint8 [H, W, 3] (or [B, H, W, 3])
    frames = sim.rollout(actions)                                    # uint8 [N, H, W, 3] (or [B, N, H, W, 3])
    sim.save("rollout.mp4")                                          # or .gif

Each step generates one frame with the KV cache of :class:`hma_zoo.sampling.FrameStepper` (the past is never
recomputed), decodes it with the tokenizer, and slides the context window at constant memory on long rollouts.
:class:`HMAEnv` wraps a simulator as a ``gymnasium.Env`` (observation = the generated frame).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hma_zoo.configs import EmbodimentSpec
from hma_zoo.sampling import FrameStepper

log = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]


def _tensor(x: ArrayLike, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A tensor from a tensor, an array or a (nested) list of numbers."""
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        t = x
    else:
        t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return t if dtype is None else t.to(dtype)


class Simulator:
    """Step an HMA world model frame by frame from a prompt, like an environment.

    Args:
        model: an :class:`hma_zoo.model.HMA` world model (put in eval mode here).
        tokenizer: the tokenizer the model was trained with (``encode`` uint8 frames, ``decode`` tokens).
        steps: MaskGIT / MAR steps per frame (paper: 2 for interactive use).
        temperature: sampling temperature (0 = greedy for ``vq``).
        cfg_scale: classifier-free guidance on actions (1 = off).
        window: frames of context (default ``model.config.trunk.max_frames``); longer rollouts slide.
        top_k, unmask, diffusion_steps, sampler: passed to :class:`~hma_zoo.sampling.FrameStepper`
            (``mar``: ``diffusion_steps=8`` is ~3x faster than the default 50 at -0.3 dB on the shipped model;
            ``sampler="ddim"`` needs ~20 steps for the same; docs/results.md, "Speed (issue 16)").
        generator: random generator for reproducible sampling.
        record: keep every frame (prompt and generated) for :meth:`save` / :attr:`frames`; turn off for endless
            rollouts so memory stays constant.
        compile: a ``torch.compile`` mode (``"default"``; ``"reduce-overhead"`` = CUDA graphs on a GPU) for the
            fixed-shape parts of the world model (:func:`hma_zoo.sampling.compile_for_inference`) and the tokenizer's
            decoder; ``None`` (default) runs eagerly. The first steps compile (tens of seconds).
        amp_dtype: run the world model and the decoder under ``torch.autocast`` to this dtype (``torch.bfloat16`` on
            a GPU); ``None`` (default) keeps the weights' dtype.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        steps: int = 2,
        temperature: float = 1.0,
        cfg_scale: float = 1.0,
        window: int | None = None,
        top_k: int | None = None,
        unmask: str = "random",
        diffusion_steps: int | None = None,
        generator: torch.Generator | None = None,
        record: bool = True,
        sampler: str = "ddpm",
        compile: str | None = None,
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        spec = getattr(tokenizer, "spec", None)
        if spec is not None and hasattr(spec, "token_spec"):
            from hma_zoo.tokenizers.base import check_compatible

            check_compatible(spec, model.config.tokens)
        self.model = model.eval()
        self.tokenizer = tokenizer.eval() if isinstance(tokenizer, nn.Module) else tokenizer
        self.stepper = FrameStepper(model, steps=steps, temperature=temperature, top_k=top_k, unmask=unmask,
                                    cfg_scale=cfg_scale, window=window, diffusion_steps=diffusion_steps,
                                    generator=generator, sampler=sampler)
        self.record = record
        self.amp_dtype = amp_dtype
        if compile is not None:
            from hma_zoo.sampling import compile_for_inference

            compile_for_inference(self.model, compile)
            decoder = getattr(self.tokenizer, "decoder", None)
            if isinstance(decoder, nn.Module):
                decoder.compile(mode=compile, dynamic=False)
        self._frames: list[torch.Tensor] = []  # uint8 [B, t, H, W, 3] pieces
        self._batched = True
        self._specs: list[EmbodimentSpec] = []
        self.num_steps = 0

    # ------------------------------------------------------------------ properties
    @property
    def batch_size(self) -> int:
        """Number of environments stepped together (after :meth:`reset`)."""
        self._require_reset()
        return self.stepper.batch

    @property
    def frames(self) -> torch.Tensor:
        """Every recorded frame so far, uint8 ``[B, T, H, W, 3]`` (``[T, H, W, 3]`` for an unbatched reset)."""
        self._require_reset()
        if not self._frames:
            raise RuntimeError("no frames recorded (record=False)")
        out = torch.cat(self._frames, 1)
        return out if self._batched else out[0]

    def cache_nbytes(self) -> int:
        """Bytes held by the KV cache (constant once the window is full)."""
        return self.stepper.cache_nbytes()

    def _require_reset(self) -> None:
        if self.stepper.frames is None:
            raise RuntimeError("call Simulator.reset(prompt_frames, embodiment=...) first")

    # ------------------------------------------------------------------ reset / step
    def _amp(self) -> Any:
        """The autocast context of ``amp_dtype`` on the model's device (a no-op context without one)."""
        from hma_zoo.sampling.accelerate import autocast_context

        return autocast_context(self.model.pos.device, self.amp_dtype)

    def _decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, T, ...]`` -> uint8 frames ``[B, T, H, W, 3]`` on the CPU."""
        param = next(iter(self.tokenizer.parameters()), None) if isinstance(self.tokenizer, nn.Module) else None
        if param is not None:
            tokens = tokens.to(param.device)
        with self._amp():
            return self.tokenizer.decode(tokens).cpu()

    @torch.no_grad()
    def reset(
        self,
        prompt_frames: ArrayLike | None = None,
        prompt_actions: ArrayLike | None = None,
        embodiment: str | Sequence[str] | None = None,
        prompt_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Start (a batch of) rollouts from prompt frames.

        Args:
            prompt_frames: uint8 ``[B, Tp, H, W, 3]`` or ``[Tp, H, W, 3]`` (one environment).
            prompt_actions: raw rows executed between the prompt frames, ``[B, Tp - 1, W]`` / ``[Tp - 1, W]`` with
                ``W`` a frame's chunk (``stride * action_dim``) or ``A_max``; ``None`` = unknown.
            embodiment: the robot's name (or one name per environment); optional for a one-embodiment model.
            prompt_tokens: already-tokenized prompt ``[B, Tp, ...]`` instead of ``prompt_frames``.

        Returns:
            the last prompt frame as the tokenizer reconstructs it, uint8 ``[B, H, W, 3]`` (``[H, W, 3]`` unbatched).
        """
        if (prompt_frames is None) == (prompt_tokens is None):
            raise ValueError("pass exactly one of prompt_frames (uint8 [B, Tp, H, W, 3]) or prompt_tokens")
        if prompt_frames is not None:
            frames = _tensor(prompt_frames)
            if frames.dtype != torch.uint8:
                raise TypeError(f"prompt_frames must be uint8 [B, Tp, H, W, 3], got {frames.dtype}")
            self._batched = frames.ndim == 5
            if frames.ndim == 4:
                frames = frames[None]
            if frames.ndim != 5 or frames.shape[-1] != 3:
                raise ValueError(f"prompt_frames must be [B, Tp, H, W, 3] or [Tp, H, W, 3], got {tuple(frames.shape)}")
            tokens = self.tokenizer.encode(frames)
        else:
            tokens = prompt_tokens
            self._batched = True
        b, tp = tokens.shape[:2]
        names = self._names(embodiment, b)
        self._specs = [self.model.config.embodiment(n) for n in names] if self.model.config.embodiments else []
        actions = None
        if prompt_actions is not None and tp > 1:
            pa = _tensor(prompt_actions, torch.float32)
            if not self._batched:
                pa = pa[None]
            if pa.ndim != 3 or pa.shape[:2] != (b, tp - 1):
                raise ValueError(f"prompt_actions must be [B, Tp - 1 = {tp - 1}, chunk], got {tuple(pa.shape)}")
            actions = torch.stack([self._action_rows(pa[:, t]) for t in range(tp - 1)], 1)
        with self._amp():
            self.stepper.reset(tokens, actions, names if names else torch.zeros(b, dtype=torch.long))
        self.num_steps = 0
        decoded = self._decode(tokens) if self.record else self._decode(tokens[:, -1:])
        self._frames = [decoded] if self.record else []
        last = decoded[:, -1]
        return last if self._batched else last[0]

    def _names(self, embodiment: str | Sequence[str] | None, batch: int) -> list[str]:
        known = self.model.config.embodiment_names
        if embodiment is None:
            if len(known) > 1:
                raise ValueError(f"this model serves several embodiments {list(known)}; pass embodiment=NAME")
            return [known[0]] * batch if known else []
        names = [embodiment] * batch if isinstance(embodiment, str) else list(embodiment)
        if len(names) != batch:
            raise ValueError(f"got {len(names)} embodiment names for {batch} environments")
        return names

    def _action_rows(self, action: torch.Tensor) -> torch.Tensor:
        """Per-environment actions ``[B, W]`` -> raw rows ``[B, A_max]``.

        ``W`` may be one control step (``action_dim``; tiled over the stride), a whole frame's chunk
        (``stride * action_dim``) or the padded ``A_max``.
        """
        a_max = self.model.config.max_chunk_dim
        rows = torch.zeros(action.shape[0], a_max)
        if not self._specs:  # action-free model: actions are ignored
            return rows
        width = action.shape[-1]
        for i, spec in enumerate(self._specs):
            if width == spec.action_dim:
                rows[i, : spec.chunk_dim] = action[i].repeat(spec.stride)
            elif width in (spec.chunk_dim, a_max):
                rows[i, : spec.chunk_dim] = action[i, : spec.chunk_dim]
            else:
                raise ValueError(
                    f"action width {width} fits neither one control step ({spec.action_dim}), a frame's chunk "
                    f"({spec.chunk_dim} = stride {spec.stride} x {spec.action_dim}) nor A_max ({a_max}) of "
                    f"embodiment {spec.name!r}"
                )
        return rows

    def _batch_action(self, action: ArrayLike | None) -> torch.Tensor | None:
        if action is None:
            return None
        a = _tensor(action, torch.float32).cpu()
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2:
            raise ValueError(f"an action must be [W] or [B, W], got shape {tuple(a.shape)}")
        b = self.stepper.batch
        if a.shape[0] == 1 and b > 1:
            a = a.expand(b, -1)
        if a.shape[0] != b:
            raise ValueError(f"got actions for {a.shape[0]} environments, the simulator runs {b}")
        return self._action_rows(a)

    @torch.no_grad()
    def step(self, action: ArrayLike | None) -> torch.Tensor:
        """Execute ``action`` and return the next frame, uint8 ``[B, H, W, 3]`` (``[H, W, 3]`` unbatched).

        ``action``: ``[W]`` (same for every environment) or ``[B, W]``, raw (un-normalised) values, with ``W`` one
        control step (tiled over the embodiment's stride), a whole frame's chunk, or ``A_max``. ``None`` = unknown
        action (the model's learned null action).
        """
        self._require_reset()
        rows = self._batch_action(action)
        with self._amp():
            tokens = self.stepper.step(rows)
        frame = self._decode(tokens.unsqueeze(1))
        if self.record:
            self._frames.append(frame)
        self.num_steps += 1
        return frame[:, 0] if self._batched else frame[0, 0]

    @torch.no_grad()
    def rollout(self, actions: ArrayLike) -> torch.Tensor:
        """Step through ``actions`` ``[B, N, W]`` (``[N, W]`` unbatched); returns the ``N`` generated frames
        uint8 ``[B, N, H, W, 3]`` (``[N, H, W, 3]``)."""
        self._require_reset()
        a = _tensor(actions, torch.float32)
        if not self._batched:
            a = a[None]
        if a.ndim != 3:
            raise ValueError(f"rollout actions must be [B, N, W] (or [N, W] unbatched), got {tuple(a.shape)}")
        from rich.progress import track

        steps = range(a.shape[1])
        if a.shape[1] >= 64:
            steps = track(steps, description="rollout", transient=True)
        out = [self.step(a[:, i] if self._batched else a[0, i]) for i in steps]
        return torch.stack(out, 1 if self._batched else 0)

    def save(self, path: str | os.PathLike, fps: float = 10.0, index: int | None = None) -> Path:
        """Write the recorded frames as ``.mp4`` or ``.gif``: environment ``index``, or all side by side."""
        from hma_zoo.video import save_video, side_by_side

        frames = torch.cat(self._frames, 1) if self._frames else None
        if frames is None:
            raise RuntimeError("nothing to save: call reset/step first (with record=True)")
        if index is not None:
            video = frames[index].numpy()
        else:
            video = side_by_side(*[f.numpy() for f in frames]) if frames.shape[0] > 1 else frames[0].numpy()
        return save_video(path, video, fps)


try:  # gymnasium is optional (the `sim` extra); the wrapper exists only where it is installed
    import gymnasium as _gym
except ImportError:  # pragma: no cover
    _gym = None


if _gym is not None:

    class HMAEnv(_gym.Env):
        """A ``gymnasium.Env`` over a :class:`Simulator` (one environment).

        Observations are the generated uint8 frames ``[H, W, 3]``; an action is one frame's raw action chunk
        (``stride * action_dim``; one control step ``action_dim`` is also accepted and tiled). There is no reward
        model: ``reward`` is 0 and ``terminated`` is False; ``truncated`` becomes True after ``max_episode_steps``.

        Args:
            simulator: the simulator to drive.
            prompt_frames: uint8 ``[Tp, H, W, 3]`` prompt used by :meth:`reset` (override with
                ``reset(options={"prompt_frames": ..., "prompt_actions": ...})``).
            embodiment: the robot's name.
            prompt_actions: ``[Tp - 1, chunk]`` raw rows between the prompt frames, or ``None``.
            max_episode_steps: truncate after this many steps (``None``: never).
        """

        metadata = {"render_modes": ["rgb_array"]}

        def __init__(self, simulator: Simulator, prompt_frames: ArrayLike, embodiment: str | None = None,
                     prompt_actions: ArrayLike | None = None, max_episode_steps: int | None = None) -> None:
            from gymnasium import spaces

            self.sim = simulator
            self.prompt_frames = prompt_frames
            self.prompt_actions = prompt_actions
            self.embodiment = embodiment
            self.max_episode_steps = max_episode_steps
            self.render_mode = "rgb_array"
            h, w = np.asarray(prompt_frames).shape[-3:-1]
            self.observation_space = spaces.Box(0, 255, (h, w, 3), dtype=np.uint8)
            names = simulator.model.config.embodiment_names
            name = embodiment or (names[0] if names else None)
            chunk = simulator.model.config.embodiment(name).chunk_dim if name else 1
            self.action_space = spaces.Box(-np.inf, np.inf, (chunk,), dtype=np.float32)
            self._last: np.ndarray | None = None

        def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
                  ) -> tuple[np.ndarray, dict[str, Any]]:
            super().reset(seed=seed)
            if seed is not None:
                gen = self.sim.stepper.generator or torch.Generator(device=self.sim.model.pos.device)
                gen.manual_seed(seed)
                self.sim.stepper.generator = gen
            options = options or {}
            frames = options.get("prompt_frames", self.prompt_frames)
            actions = options.get("prompt_actions", self.prompt_actions if "prompt_frames" not in options else None)
            obs = self.sim.reset(frames, actions, embodiment=options.get("embodiment", self.embodiment))
            self._last = obs.numpy()
            return self._last, {"step": 0}

        def step(self, action: ArrayLike) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
            obs = self.sim.step(np.asarray(action, dtype=np.float32))
            self._last = obs.numpy()
            n = self.sim.num_steps
            truncated = self.max_episode_steps is not None and n >= self.max_episode_steps
            return self._last, 0.0, False, truncated, {"step": n}

        def render(self) -> np.ndarray | None:
            return self._last
