"""Sampling one frame: MaskGIT for ``vq`` (discrete ids) and MAR for ``mar`` (continuous tokens).

Both loops are written against a ``run(x, hidden)`` callable that returns the model's per-token video output for
the frame being generated (``vq`` logits ``[N, S, sum F]``, ``mar`` conditions ``[N, S, D]``), where ``N`` is the
batch, doubled (conditional rows then unconditional rows) when classifier-free guidance is on. Whether ``run``
uses a KV cache or recomputes the whole context is invisible here, which is what makes cached and uncached
generation comparable token for token.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from hma_zoo.model.heads import DiffusionTokenHead, FactorizedHead
from hma_zoo.model.stems import unfactorize_ids
from hma_zoo.sampling.schedule import masked_after_step

RunFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _guide(out: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    if cfg_scale == 1.0:
        return out
    cond, uncond = out.chunk(2)
    return uncond + cfg_scale * (cond - uncond)


def _double(x: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    return x if cfg_scale == 1.0 else torch.cat((x, x))


def sample_factors(
    logits: torch.Tensor,
    head: FactorizedHead,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ids ``[B, S]`` and their log-probabilities ``[B, S]`` from factorised logits ``[B, S, sum F]``.

    Grouped heads (logits ``[B, S, G, sum F]``) give ids ``[B, S, G]`` and the log-probability of the whole group
    ``[B, S]`` (the sum over its ``G`` ids), so a trunk token is revealed as one unit.

    Temperature divides the logits (so it really changes the distribution; the original divided
    probabilities and renormalised, which cancels it). ``temperature == 0`` is greedy. ``top_k`` keeps the
    ``k`` largest logits of every factor.
    """
    digits, logp = [], torch.zeros(logits.shape[:-1], device=logits.device, dtype=torch.float32)
    for lg in head.split(logits.float()):
        if top_k is not None and top_k < lg.shape[-1]:
            kth = lg.topk(top_k, dim=-1).values[..., -1:]
            lg = lg.masked_fill(lg < kth, float("-inf"))
        if temperature <= 0:
            d = lg.argmax(-1)
        else:
            probs = F.softmax(lg / temperature, dim=-1)
            d = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).view(probs.shape[:-1])
        digits.append(d)
        logp = logp + F.log_softmax(lg, dim=-1).gather(-1, d.unsqueeze(-1)).squeeze(-1)
    if logp.ndim == 3:  # grouped: [B, S, G] -> one score per trunk token
        logp = logp.sum(-1)
    return unfactorize_ids(torch.stack(digits, -1), head.factor_sizes), logp


@torch.no_grad()
def maskgit_frame(
    run: RunFn,
    head: FactorizedHead,
    batch: int,
    num_tokens: int,
    device: torch.device,
    steps: int = 8,
    temperature: float = 1.0,
    top_k: int | None = None,
    unmask: str = "random",
    cfg_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MaskGIT decoding of one frame of ids ``[B, S]`` (``[B, S, G]`` for a grouped head).

    Each step predicts every hidden token, then keeps hidden the ``masked_after_step`` tokens with the lowest
    score among the newly predicted ones (``unmask="confidence"``: score = log-probability; ``"random"``:
    uniformly random, the paper's default because confidence ordering tends to copy the previous frame).
    Tokens once revealed are never changed.
    """
    if unmask not in ("random", "confidence"):
        raise ValueError(f"unmask must be 'random' or 'confidence', got {unmask!r}")
    group = getattr(head, "group", 1)
    shape = (batch, num_tokens) if group == 1 else (batch, num_tokens, group)
    ids = torch.zeros(shape, dtype=torch.long, device=device)
    known = torch.zeros(batch, num_tokens, dtype=torch.bool, device=device)
    for k in range(steps):
        logits = _guide(run(_double(ids, cfg_scale), _double(~known, cfg_scale)), cfg_scale)
        new_ids, logp = sample_factors(logits, head, temperature, top_k, generator)
        new_ids = torch.where(known.unsqueeze(-1) if group > 1 else known, ids, new_ids)
        n_hidden = masked_after_step(k, steps, num_tokens)
        if n_hidden > 0:
            if unmask == "random":
                score = torch.rand(batch, num_tokens, device=device, generator=generator)
            else:
                score = logp
            score = score.masked_fill(known, float("inf"))
            hide = torch.zeros_like(known).scatter(1, score.topk(n_hidden, dim=1, largest=False).indices, True)
        else:
            hide = torch.zeros_like(known)
        ids, known = new_ids, ~hide
        if n_hidden == 0:
            break
    return ids


@torch.no_grad()
def mar_frame(
    run: RunFn,
    head: DiffusionTokenHead,
    batch: int,
    num_tokens: int,
    device: torch.device,
    dtype: torch.dtype,
    steps: int = 8,
    temperature: float = 1.0,
    cfg_scale: float = 1.0,
    diffusion_steps: int | None = None,
    generator: torch.Generator | None = None,
    sampler: str = "ddpm",
) -> torch.Tensor:
    """MAR decoding of one frame of continuous tokens ``[B, S, P]``.

    Tokens are revealed in a random order per sample on a cosine schedule; at each step the trunk conditions
    the diffusion head of the tokens due at that step, which are then fixed: a token once sampled is never
    re-sampled (the original re-sampled every not-yet-remasked token at every step). With ``cfg_scale != 1``
    the head's noise prediction is guided by the unconditional (null-action) rows. ``diffusion_steps`` and
    ``sampler`` (``"ddpm"`` / ``"ddim"``) choose the per-token diffusion sampler.
    """
    x = torch.zeros(batch, num_tokens, head.token_dim, device=device, dtype=dtype)
    known = torch.zeros(batch, num_tokens, dtype=torch.bool, device=device)
    order = torch.rand(batch, num_tokens, device=device, generator=generator).argsort(dim=1)
    revealed = 0
    rows = torch.arange(batch, device=device).unsqueeze(1)
    for k in range(steps):
        target = num_tokens - masked_after_step(k, steps, num_tokens)
        if target <= revealed:
            continue
        z = run(_double(x, cfg_scale), _double(~known, cfg_scale))
        pos = order[:, revealed:target]
        if cfg_scale != 1.0:
            zc, zu = z.chunk(2)
            zsel = torch.cat((zc[rows, pos], zu[rows, pos])).flatten(0, 1)
        else:
            zsel = z[rows, pos].flatten(0, 1)
        new = head.sample(zsel, temperature, cfg_scale, diffusion_steps, generator, sampler=sampler)
        x = x.clone()
        x[rows, pos] = new.view(batch, -1, head.token_dim).to(dtype)
        known = known.clone()
        known[rows, pos] = True
        revealed = target
    return x
