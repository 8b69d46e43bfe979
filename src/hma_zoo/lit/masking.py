"""The paper's masking and corruption for training HMA (arXiv 2502.04296, section 3 and the original collator).

Per training window of ``T`` frames and an ``h x w`` token grid:

* **Masked (MLM) samples** (probability ``1 - non_mlm_ratio``, 0.8 in the paper): frames ``1..T-1`` are masked;
  frame 0 is never masked.
* **Prompt samples** (probability ``non_mlm_ratio``): the first ``k`` frames stay fully visible, ``k`` drawn
  uniformly from ``[min(num_prompt_frames, T-1), T-1]``; frames ``>= k`` are masked and, for ``vq``, their visible
  tokens are additionally corrupted (a random id) at a rate that grows along time: ``c ~ U(0.2, 1)``, then per
  frame ``c <- c * U(0.9, 1)``, and a token is corrupted with probability ``1 - c``. This teaches the model to
  continue from its own, imperfect, predictions.
* **Mask ratio**: per sample and frame ``p = cos(pi/2 * u)``, ``u ~ U(u_min, 1)`` (``u_min`` is 0 for ``vq``, 0.1
  for ``mar``), each token of a maskable frame masked iid with probability ``p``. A sample that draws no masked
  token gets exactly one (random maskable frame and position), so every sample contributes to the loss.
* **Whole hidden frames** (``full_frame_ratio``, 0 in the paper): each maskable frame is hidden entirely with this
  probability instead of drawing its ratio, as the next frame is when it is generated: no token of it is left to
  copy, so its motion must come from the past frames and the action.
* **Global corruption** (``vq`` only, Copilot4D style): every token of every frame (frame 0 included) is replaced
  by a random id with probability ``max_corrupt_rate * u``, ``u ~ U(0, 1)`` once per batch. Masked tokens are not
  corrupted (a masked token's id is never read), and corrupted-but-visible tokens are not supervised.
* **Action masks** for joint / policy training (``action_mask_mode``): ``"none"`` (forward dynamics: every action
  visible), ``"random"`` (the original's joint mode: per sample a ratio ``r ~ U(0, 1)``, each frame's action
  hidden with probability ``r``, interpolating forward dynamics and policy), ``"all"`` (pure policy).

The masks go to :meth:`hma_zoo.model.HMA.compute_loss` as ``token_mask`` / ``corrupt`` / ``action_mask``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from hma_zoo.configs import TokenSpec

ActionMaskMode = Literal["none", "random", "all"]


@dataclass(frozen=True)
class MaskingConfig:
    """Knobs of :func:`sample_masks`; the defaults are the paper's.

    Args:
        non_mlm_ratio: probability that a sample keeps a prompt of visible frames and corrupts the rest (0.2).
        num_prompt_frames: smallest prompt length of such a sample (4 in the paper; clamped to ``T - 1``).
        max_corrupt_rate: ``vq`` global corruption rate bound (0.2); 0 disables it.
        prompt_corruption: ``vq``: corrupt visible tokens of the masked frames of prompt samples.
        mask_u_min: lower bound of ``u`` in ``p = cos(pi/2 u)``; ``None`` = 0 for ``vq``, 0.1 for ``mar``.
        action_mask_mode: ``"none"``, ``"random"`` or ``"all"`` (see the module docstring).
        full_frame_ratio: probability that a maskable frame is hidden entirely (0 in the paper).
    """

    non_mlm_ratio: float = 0.2
    num_prompt_frames: int = 4
    max_corrupt_rate: float = 0.2
    prompt_corruption: bool = True
    mask_u_min: float | None = None
    action_mask_mode: ActionMaskMode = "none"
    full_frame_ratio: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.full_frame_ratio <= 1.0:
            raise ValueError(f"MaskingConfig.full_frame_ratio must be in [0, 1], got {self.full_frame_ratio}")
        if not 0.0 <= self.non_mlm_ratio <= 1.0:
            raise ValueError(f"MaskingConfig.non_mlm_ratio must be in [0, 1], got {self.non_mlm_ratio}")
        if self.num_prompt_frames < 1:
            raise ValueError(f"MaskingConfig.num_prompt_frames must be >= 1, got {self.num_prompt_frames}")
        if not 0.0 <= self.max_corrupt_rate <= 1.0:
            raise ValueError(f"MaskingConfig.max_corrupt_rate must be in [0, 1], got {self.max_corrupt_rate}")
        if self.mask_u_min is not None and not 0.0 <= self.mask_u_min < 1.0:
            raise ValueError(f"MaskingConfig.mask_u_min must be in [0, 1), got {self.mask_u_min}")
        if self.action_mask_mode not in ("none", "random", "all"):
            raise ValueError(
                f"MaskingConfig.action_mask_mode must be 'none', 'random' or 'all', got {self.action_mask_mode!r}"
            )


class Masks(NamedTuple):
    """Output of :func:`sample_masks`.

    Attributes:
        token_mask: bool ``[B, T, h, w]``, True = hidden (predicted, supervised).
        corrupt: bool ``[B, T, h, w]`` (``vq``; never overlaps ``token_mask``) or ``None`` (``mar``).
        action_mask: bool ``[B, T]``, True = that frame's action row is hidden from the model.
        first_masked: long ``[B]``, the first frame that may be masked (1 for MLM samples, the prompt length else).
    """

    token_mask: torch.Tensor
    corrupt: torch.Tensor | None
    action_mask: torch.Tensor
    first_masked: torch.Tensor


def cosine_mask_ratio(u: torch.Tensor) -> torch.Tensor:
    """MaskGIT's cosine schedule: a mask ratio ``cos(pi/2 * u)`` for ``u`` in ``[0, 1]`` (any shape)."""
    return torch.cos(0.5 * math.pi * u)


def _rand(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, device=device, generator=generator)


def sample_masks(
    batch: int,
    frames: int,
    grid: tuple[int, int],
    kind: Literal["vq", "mar"],
    config: MaskingConfig | None = None,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Masks:
    """Draw the paper's token masks, corruption and action masks for one batch.

    Args:
        batch: ``B``.
        frames: ``T`` (>= 2: frame 0 is never masked, so a single frame has nothing to predict).
        grid: ``(h, w)`` of the token grid (the *latent* grid for ``mar``; the model reduces it per patch).
        kind: ``"vq"`` (corruption enabled) or ``"mar"`` (no corruption, ``u_min`` 0.1 by default).
        config: the knobs; paper defaults if ``None``.
        device: where the masks live (defaults to the generator's device, else CPU).
        generator: optional ``torch.Generator`` for reproducible draws.

    Returns:
        :class:`Masks` with ``token_mask [B,T,h,w]``, ``corrupt [B,T,h,w] | None``, ``action_mask [B,T]``,
        ``first_masked [B]``.
    """
    cfg = config or MaskingConfig()
    if frames < 2:
        raise ValueError(f"masking needs a window of at least 2 frames (frame 0 is never masked), got T={frames}")
    if kind not in ("vq", "mar"):
        raise ValueError(f"kind must be 'vq' or 'mar', got {kind!r}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    h, w = grid
    b, t = batch, frames
    frame_idx = torch.arange(t, device=device)

    # Which samples keep a visible prompt, and how long it is.
    prompt_sample = _rand((b,), device, generator) < cfg.non_mlm_ratio
    low = min(cfg.num_prompt_frames, t - 1)
    span = t - low  # prompt length uniform in [low, t-1]
    prompt_len = low + (_rand((b,), device, generator) * span).long().clamp_max(span - 1)
    first_masked = torch.where(prompt_sample, prompt_len, torch.ones_like(prompt_len))
    maskable = frame_idx.view(1, t) >= first_masked.view(b, 1)  # [B, T]; frame 0 never maskable

    # Cosine mask ratio per sample and frame, iid Bernoulli per token.
    u_min = cfg.mask_u_min if cfg.mask_u_min is not None else (0.0 if kind == "vq" else 0.1)
    u = u_min + (1.0 - u_min) * _rand((b, t), device, generator)
    ratio = cosine_mask_ratio(u)
    if cfg.full_frame_ratio > 0:
        ratio = torch.where(_rand((b, t), device, generator) < cfg.full_frame_ratio, torch.ones_like(ratio), ratio)
    token_mask = _rand((b, t, h, w), device, generator) < ratio.view(b, t, 1, 1)
    token_mask &= maskable.view(b, t, 1, 1)

    # At least one masked token per sample: force one at a random maskable frame and position.
    empty = ~token_mask.flatten(1).any(1)
    if bool(empty.any()):
        n_maskable = (t - first_masked).float()
        f = first_masked + (_rand((b,), device, generator) * n_maskable).long().clamp_max(t - 1 - first_masked)
        pos = (_rand((b,), device, generator) * (h * w)).long().clamp_max(h * w - 1)
        forced = torch.zeros(b, t, h * w, dtype=torch.bool, device=device)
        forced[torch.arange(b, device=device), f, pos] = True
        token_mask |= forced.view(b, t, h, w) & empty.view(b, 1, 1, 1)

    corrupt: torch.Tensor | None = None
    if kind == "vq":
        corrupt = torch.zeros(b, t, h, w, dtype=torch.bool, device=device)
        if cfg.prompt_corruption and bool(prompt_sample.any()):
            # keep-probability c starts in U(0.2, 1) and shrinks by U(0.9, 1) per frame after the prompt.
            c0 = 0.2 + 0.8 * _rand((b, 1), device, generator)
            decay = 0.9 + 0.1 * _rand((b, t), device, generator)
            steps = (frame_idx.view(1, t) - first_masked.view(b, 1) + 1).clamp_min(0)
            # cumulative product of the per-frame decays over the frames since the prompt ended
            log_decay = torch.where(steps > 0, decay.log(), torch.zeros_like(decay)).cumsum(1)
            keep = c0 * log_decay.exp()
            rate = torch.where(maskable & prompt_sample.view(b, 1), 1.0 - keep, torch.zeros_like(keep))
            corrupt |= _rand((b, t, h, w), device, generator) < rate.view(b, t, 1, 1)
        if cfg.max_corrupt_rate > 0:
            global_rate = cfg.max_corrupt_rate * float(_rand((1,), device, generator))
            corrupt |= _rand((b, t, h, w), device, generator) < global_rate
        corrupt &= ~token_mask

    action_mask = sample_action_mask(b, t, cfg.action_mask_mode, device=device, generator=generator)
    return Masks(token_mask, corrupt, action_mask, first_masked)


def sample_trunk_masks(
    tokens: TokenSpec,
    batch: int,
    frames: int,
    config: MaskingConfig | None = None,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Masks:
    """:func:`sample_masks` on the grid the trunk sees (``tokens.trunk_grid``: the **patch** grid for ``mar``, so a
    mask never hides a whole patch because one of its positions was drawn), with ``token_mask`` / ``corrupt``
    flattened to ``bool [B, T, S]``, the form :meth:`hma_zoo.model.HMA.compute_loss` takes directly."""
    m = sample_masks(batch, frames, tokens.trunk_grid, tokens.kind, config, device=device, generator=generator)
    return m._replace(token_mask=m.token_mask.flatten(2),
                      corrupt=None if m.corrupt is None else m.corrupt.flatten(2))


def sample_action_mask(
    batch: int,
    frames: int,
    mode: ActionMaskMode,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-frame action masks ``bool [B, T]`` (True = hidden) for ``mode`` ``"none"``, ``"random"`` or ``"all"``.

    ``"random"``: per sample a ratio ``r ~ U(0, 1)``; each frame's action hidden iid with probability ``r``.
    """
    device = torch.device(device)
    if mode == "none":
        return torch.zeros(batch, frames, dtype=torch.bool, device=device)
    if mode == "all":
        return torch.ones(batch, frames, dtype=torch.bool, device=device)
    if mode == "random":
        r = _rand((batch, 1), device, generator)
        return _rand((batch, frames), device, generator) < r
    raise ValueError(f"action mask mode must be 'none', 'random' or 'all', got {mode!r}")


def apply_corruption(tokens: torch.Tensor, corrupt: torch.Tensor, vocab_size: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace the ids of ``tokens`` ``[B,T,h,w]`` where ``corrupt`` is True by uniform random ids in
    ``[0, vocab_size)`` (for inspection and tests; the model applies ``corrupt`` itself in ``compute_loss``)."""
    noise = torch.randint(0, vocab_size, tokens.shape, device=tokens.device, generator=generator,
                          dtype=tokens.dtype)
    return torch.where(corrupt, noise, tokens)
