"""Frame-by-frame generation with a KV cache over past frames, and the ``generate`` / ``teacher_forced`` loops.

The model is a sliding-window causal transformer in time (every frame attends to at most ``window`` frames,
itself included, at every layer; see :mod:`hma_zoo.model.trunk`). With the cache, frames already given or
generated are never recomputed: each MaskGIT/MAR step runs the trunk on the one frame being generated, reading the
cached temporal keys/values; the finished frame is committed to the cache in the same pass as the next frame's
first step. Rollouts longer than the window run at constant memory (the cache keeps ``window - 1`` frames; rotary
time positions keep the kept keys valid as positions advance).

``use_cache=False`` is the reference: it keeps **every** frame so far and runs the whole sequence from position 0
through the trunk with the sliding-window mask at every step. That is exactly the computation the cache
performs, for any rollout length, so greedy decoding gives the same frames both ways (tested well past the
window). Its cost and memory grow with the rollout; it exists to check the cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hma_zoo.model.hma import HMA
from hma_zoo.model.trunk import KVCache
from hma_zoo.sampling.frame import mar_frame, maskgit_frame


class FrameStepper:
    """Generate frames one at a time for a batch of rollouts.

    Args:
        model: the world model (put it in eval mode).
        steps: MaskGIT / MAR steps per frame (paper: 2 for the simulator).
        temperature: sampling temperature (0 = greedy for ``vq``; scales the diffusion noise for ``mar``).
        top_k: ``vq`` only: keep the k most likely values of each factor.
        unmask: ``vq`` only: ``"random"`` (paper default) or ``"confidence"``.
        cfg_scale: classifier-free guidance on actions (1 = off); needs a model trained with action dropout.
        window: frames each frame attends to, itself included (default ``trunk.max_frames``, the span the model
            was trained with; a smaller value shortens the span for both the cached and the reference path).
        diffusion_steps: ``mar`` only: respaced diffusion steps (default ``diffusion.sample_steps``).
        sampler: ``mar`` only: ``"ddpm"`` (default; ancestral) or ``"ddim"`` (deterministic DDIM, for few
            ``diffusion_steps``; see :mod:`hma_zoo.diffusion.gaussian`).
        use_cache: ``False`` recomputes the whole sequence every step (reference path for tests and benchmarks;
            memory grows with the rollout).
        generator: random generator for reproducible sampling.
    """

    def __init__(
        self,
        model: HMA,
        steps: int = 2,
        temperature: float = 1.0,
        top_k: int | None = None,
        unmask: str = "random",
        cfg_scale: float = 1.0,
        window: int | None = None,
        diffusion_steps: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        sampler: str = "ddpm",
    ) -> None:
        if int(steps) < 1:
            raise ValueError(f"steps (MaskGIT / MAR steps per frame) must be >= 1, got {steps}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        self.model = model
        self.steps = int(steps)
        self.temperature = temperature
        self.top_k = top_k
        self.unmask = unmask
        self.cfg_scale = float(cfg_scale)
        self.window = window or model.config.trunk.max_frames
        if self.window > model.config.trunk.max_frames:
            raise ValueError(f"window {self.window} exceeds the model's max_frames {model.config.trunk.max_frames}")
        from hma_zoo.diffusion.gaussian import SAMPLERS

        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS} (the mar diffusion head's sampler), got {sampler!r}")
        if diffusion_steps is not None and int(diffusion_steps) < 1:
            raise ValueError(f"diffusion_steps must be >= 1, got {diffusion_steps}")
        self.diffusion_steps = diffusion_steps
        self.sampler = sampler
        self.use_cache = use_cache
        self.generator = generator
        self.cache: KVCache | None = None
        self.frames: torch.Tensor | None = None
        self._pending = False  # last held frame not yet in the cache (committed with the next frame's first pass)
        self._last_a: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None  # (row, unk, embedding)
        self._pending_a: torch.Tensor | None = None  # the pending frame's action embedding, when already known

    # ------------------------------------------------------------------ state
    @property
    def guided(self) -> bool:
        return self.cfg_scale != 1.0 and self.model.action_stems is not None

    def _rows(self, action: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One action row per sample -> (rows [N, 1, A], unknown [N, 1]), doubled with null rows under CFG."""
        b = self.batch
        a_max = self.model.config.max_chunk_dim
        if action is None:
            row = torch.zeros(b, 1, a_max, device=self.device, dtype=self.dtype)
            unk = torch.ones(b, 1, dtype=torch.bool, device=self.device)
        else:
            row = action.to(self.device, self.dtype).reshape(b, 1, -1)
            need = getattr(self, "chunk_width", 0)
            if row.shape[-1] < need or row.shape[-1] > a_max:
                raise ValueError(f"action rows are {row.shape[-1]} wide; this batch's embodiments take {need} values "
                                 f"per frame (stride x action_dim), and the model at most {a_max}")
            if row.shape[-1] < a_max:
                row = torch.nn.functional.pad(row, (0, a_max - row.shape[-1]))
            unk = torch.zeros(b, 1, dtype=torch.bool, device=self.device)
        if self.guided:
            row = torch.cat((row, torch.zeros_like(row)))
            unk = torch.cat((unk, torch.ones_like(unk)))
        return row, unk

    def reset(self, prompt_tokens: torch.Tensor, prompt_actions: torch.Tensor | None, embodiment: Sequence[str] | str
              | torch.Tensor) -> None:
        """Start rollouts from ``prompt_tokens`` ``[B, Tp, ...]`` (public token format).

        ``prompt_actions`` ``[B, Tp - 1, A]``: the rows executed between the prompt frames (``None``: unknown).
        """
        model = self.model
        self.batch, tp = prompt_tokens.shape[:2]
        self.device, self.dtype = model.pos.device, model.pos.dtype
        self.emb_idx = model.embodiment_index(embodiment, self.batch)
        embs = model.config.embodiments
        self.chunk_width = max((embs[int(i)].chunk_dim for i in self.emb_idx.tolist()), default=0) if embs else 0
        n = 2 if self.guided else 1
        self.run_idx = self.emb_idx.repeat(n)
        trunk_tokens = model.to_trunk_tokens(prompt_tokens.to(self.device))
        self.frames = trunk_tokens.repeat(n, *([1] * (trunk_tokens.ndim - 1)))
        if self.kind_is_mar:
            self.frames = self.frames.to(self.dtype)
        rows, unks = self._rows(None)
        for t in range(1, tp):
            r, u = self._rows(None if prompt_actions is None else prompt_actions[:, t - 1])
            rows, unks = torch.cat((rows, r), 1), torch.cat((unks, u), 1)
        self.rows, self.unks = rows, unks  # rows conditioning each frame held, [N, T, A]
        self.cache = KVCache(self.window) if self.use_cache else None
        self._pending = False
        self._last_a = self._pending_a = None
        if self.cache is not None:
            # Commit the prompt in window-sized pieces (bounded activations; the mask slides across pieces).
            for start in range(0, tp, self.window):
                stop = min(start + self.window, tp)
                x = model.embed_video(self.frames[:, start:stop], None)
                a = model.embed_actions(rows[:, start:stop], unks[:, start:stop], self.run_idx)
                model._run(x, a, cache=self.cache, commit=True)
        self._trim()

    @property
    def kind_is_mar(self) -> bool:
        return self.model.kind == "mar"

    def _commit(self, t: int) -> None:
        """Commit held frame ``t`` (already in ``self.frames``) to the cache."""
        model = self.model
        x = model.embed_video(self.frames[:, t : t + 1], None)
        a = model.embed_actions(self.rows[:, t : t + 1], self.unks[:, t : t + 1], self.run_idx)
        model._run(x, a, cache=self.cache, commit=True)

    def _trim(self) -> None:
        """With the cache, keep only the last ``window - 1`` frames (constant memory on long rollouts; the cache
        holds their keys). The reference path keeps every frame: it recomputes the whole sequence."""
        if self.cache is None:
            return
        keep = self.window - 1
        if self.frames.shape[1] > keep:
            self.frames = self.frames[:, -keep:] if keep > 0 else self.frames[:, :0]
            self.rows = self.rows[:, -keep:] if keep > 0 else self.rows[:, :0]
            self.unks = self.unks[:, -keep:] if keep > 0 else self.unks[:, :0]

    # ------------------------------------------------------------------ stepping
    def _run_fn(self, row: torch.Tensor, unk: torch.Tensor):  # noqa: ANN202 - a closure for the frame samplers
        model = self.model
        a_new = model.embed_actions(row, unk, self.run_idx)  # the same for every step of this frame
        self._last_a = (row, unk, a_new)

        def run(x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
            if self.cache is not None:
                xe = model.embed_video(x.unsqueeze(1), hidden.unsqueeze(1))
                a = a_new
                commit = 0
                if self._pending:
                    # Commit the previous frame in the same pass as this frame's first step (one call, not two).
                    prev = model.embed_video(self.frames[:, -1:], None)
                    a_prev = self._pending_a
                    if a_prev is None:
                        a_prev = model.embed_actions(self.rows[:, -1:], self.unks[:, -1:], self.run_idx)
                    xe = torch.cat((prev, xe), 1)
                    a = None if a_new is None else torch.cat((a_prev, a_new), 1)
                    commit, self._pending = 1, False
                h, _ = model._run(xe, a, cache=self.cache, commit=commit)
            else:
                # the whole sequence from position 0, sliding-window mask: what the cache computes
                frames = torch.cat((self.frames, x.unsqueeze(1)), 1)
                mask = torch.zeros(frames.shape[:3], dtype=torch.bool, device=x.device)
                mask[:, -1] = hidden
                xe = model.embed_video(frames, mask)
                a = model.embed_actions(torch.cat((self.rows, row), 1), torch.cat((self.unks, unk), 1), self.run_idx)
                h, _ = model._run(xe, a, window=self.window)
            h = h[:, -1]
            return model.video_head(h) if model.kind == "vq" else model.video_head.condition(h)

        return run

    def flush(self) -> None:
        """Write a deferred frame to the cache now (normally it rides along with the next frame's first pass)."""
        if self._pending and self.cache is not None:
            self._pending = False
            self._commit(self.frames.shape[1] - 1)

    @torch.no_grad()
    def next_output(self, action: torch.Tensor | None, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The model's output for the frame that follows ``action`` given the held past, without committing it.

        Args:
            action: raw row ``[B, A]`` executed after the latest frame (``None``: unknown).
            x: the next frame's trunk-level tokens ``[N, S]`` (``vq``) or ``[N, S, P]`` (``mar``); ``N = 2B`` under
                classifier-free guidance (conditional rows, then unconditional).
            hidden: ``bool [N, S]``, True = that token is replaced by the mask token.

        Returns:
            ``vq`` logits ``[N, S, sum F]`` or ``mar`` diffusion conditions ``[N, S, D]``: what the MaskGIT / MAR
            samplers read at each step (and what ``HMA.forward`` gives for that frame of the whole sequence).
        """
        if self.frames is None:
            raise RuntimeError("call reset() before stepping")
        row, unk = self._rows(action)
        return self._run_fn(row, unk)(x.to(self.device), hidden.to(self.device))

    @torch.no_grad()
    def sample_next(self, action: torch.Tensor | None) -> torch.Tensor:
        """Sample the frame that follows ``action`` ``[B, A]`` (raw, executed after the latest frame), without
        committing it. Returns trunk-level tokens ``[B, S]`` (``vq``) or ``[B, S, P]`` (``mar``)."""
        if self.frames is None:
            raise RuntimeError("call reset() before stepping")
        row, unk = self._rows(action)
        run = self._run_fn(row, unk)
        model = self.model
        common = dict(batch=self.batch, num_tokens=model.num_tokens, device=self.device, steps=self.steps,
                      temperature=self.temperature, cfg_scale=self.cfg_scale if self.guided else 1.0,
                      generator=self.generator)
        if model.kind == "vq":
            return maskgit_frame(run, model.video_head, top_k=self.top_k, unmask=self.unmask, **common)
        return mar_frame(run, model.video_head, dtype=self.dtype, diffusion_steps=self.diffusion_steps,
                         sampler=self.sampler, **common)

    @torch.no_grad()
    def commit(self, frame: torch.Tensor, action: torch.Tensor | None) -> None:
        """Append a frame (trunk-level tokens ``[B, S(, P)]``) that followed ``action`` to the context."""
        self.flush()  # at most one frame is ever deferred
        row, unk = self._rows(action)
        n = 2 if self.guided else 1
        frame = frame.to(self.device).repeat(n, *([1] * (frame.ndim - 1)))
        self.frames = torch.cat((self.frames, frame.unsqueeze(1).to(self.frames.dtype)), 1)
        self.rows, self.unks = torch.cat((self.rows, row), 1), torch.cat((self.unks, unk), 1)
        last = self._last_a  # the committed row is usually the one the frame was sampled with: reuse its embedding
        same = last is not None and torch.equal(last[0], row) and torch.equal(last[1], unk)
        self._pending_a = last[2] if same else None  # type: ignore[index]
        self._pending = self.cache is not None
        self._trim()

    @torch.no_grad()
    def step(self, action: torch.Tensor | None) -> torch.Tensor:
        """Generate and commit the next frame; returns it in the public token format ``[B, h, w(, c)]``."""
        frame = self.sample_next(action)
        self.commit(frame, action)
        return self.model.from_trunk_tokens(frame.unsqueeze(1))[:, 0]

    def cache_nbytes(self) -> int:
        """Bytes held by the KV cache (constant once the window is full)."""
        self.flush()
        return 0 if self.cache is None else self.cache.nbytes()


def _start(model: HMA, prompt: torch.Tensor, actions: torch.Tensor | None, embodiment: Sequence[str] | str
           | torch.Tensor, needed: int, kwargs: dict[str, object]) -> FrameStepper:
    """Check that ``actions`` has ``needed`` rows, then a :class:`FrameStepper` reset on ``prompt``."""
    if actions is not None and actions.shape[1] < needed:
        raise ValueError(f"actions has {actions.shape[1]} rows; generating needs at least {needed} "
                         "(one row per frame transition)")
    stepper = FrameStepper(model, **kwargs)  # type: ignore[arg-type]
    tp = prompt.shape[1]
    stepper.reset(prompt, None if actions is None else actions[:, : tp - 1], embodiment)
    return stepper


@torch.no_grad()
def generate(
    model: HMA,
    prompt_tokens: torch.Tensor,
    actions: torch.Tensor | None,
    embodiment: Sequence[str] | str | torch.Tensor,
    num_frames: int,
    **kwargs: object,
) -> torch.Tensor:
    """Generate ``num_frames`` frames after ``prompt_tokens`` ``[B, Tp, ...]``, feeding each one back.

    ``actions`` ``[B, >= Tp + num_frames - 1, A]``: row ``t`` is executed after frame ``t``. Extra keyword
    arguments go to :class:`FrameStepper` (``steps``, ``temperature``, ``top_k``, ``unmask``, ``cfg_scale``,
    ``use_cache``, ``generator``, ...). Returns ``[B, Tp + num_frames, ...]``.
    """
    tp = prompt_tokens.shape[1]
    if int(num_frames) < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    stepper = _start(model, prompt_tokens, actions, embodiment, tp + num_frames - 1, kwargs)
    out = [prompt_tokens.to(stepper.device)]
    for i in range(num_frames):
        action = None if actions is None else actions[:, tp - 1 + i]
        out.append(stepper.step(action).unsqueeze(1).to(prompt_tokens.dtype))
    return torch.cat(out, 1)


@torch.no_grad()
def teacher_forced(
    model: HMA,
    tokens: torch.Tensor,
    actions: torch.Tensor | None,
    embodiment: Sequence[str] | str | torch.Tensor,
    **kwargs: object,
) -> torch.Tensor:
    """Predict every frame ``t >= 1`` of ``tokens`` ``[B, T, ...]`` from the ground-truth frames ``< t``.

    Frame 0 is copied. Returns ``[B, T, ...]``. Uses the KV cache: the ground truth is committed after each
    prediction, so the whole window costs about one pass per frame plus the sampling steps.
    """
    t_total = tokens.shape[1]
    stepper = _start(model, tokens[:, :1], actions, embodiment, t_total - 1, kwargs)
    out = [tokens[:, :1].to(stepper.device)]
    gt = model.to_trunk_tokens(tokens.to(stepper.device))
    for t in range(1, t_total):
        action = None if actions is None else actions[:, t - 1]
        pred = stepper.sample_next(action)
        out.append(model.from_trunk_tokens(pred.unsqueeze(1)).to(tokens.dtype))
        stepper.commit(gt[:, t], action)
    return torch.cat(out, 1)
