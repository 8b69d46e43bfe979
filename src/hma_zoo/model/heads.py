"""Heads: what turns trunk outputs into video tokens and actions.

* :class:`FactorizedHead` (``vq``): one logit group per vocabulary factor; cross-entropy with label smoothing
  summed over factors.
* :class:`DiffusionTokenHead` (``mar``): per-token diffusion (MAR): ``z = LN(Linear(h)) + pos``, then a
  :class:`~hma_zoo.diffusion.DiffusionMLP` denoises the token given ``z``.
* :class:`RegressionActionHead` (``vq``) / :class:`DiffusionActionHead` (``mar``): one per embodiment, predicting
  that embodiment's normalised action chunk from a per-frame feature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hma_zoo.configs import DiffusionHeadConfig, EmbodimentSpec
from hma_zoo.diffusion import DiffusionMLP, GaussianDiffusion
from hma_zoo.model.stems import factorize_ids


class FactorizedHead(nn.Module):
    """``[..., D]`` -> logits ``[..., sum(factor_sizes)]`` (one group per factor).

    With ``group = G > 1`` (grouped ``vq`` trunk tokens) the logits are ``[..., G, sum F]``: one set per id of the
    trunk token's patch, predicted independently given the trunk output.
    """

    def __init__(self, dim: int, factor_sizes: Sequence[int], label_smoothing: float = 0.01, group: int = 1) -> None:
        super().__init__()
        self.factor_sizes = tuple(factor_sizes)
        self.label_smoothing = label_smoothing
        self.group = int(group)
        self.proj = nn.Linear(dim, self.group * sum(self.factor_sizes))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.proj(h)
        return out if self.group == 1 else out.unflatten(-1, (self.group, sum(self.factor_sizes)))

    def split(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """Logits ``[..., sum F]`` -> one ``[..., F_i]`` tensor per factor."""
        return list(logits.split(self.factor_sizes, dim=-1))

    def loss(self, logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token loss and correctness for logits ``[N, sum F]`` and target ids ``[N]``.

        Grouped (``G > 1``): logits ``[N, G, sum F]`` and ids ``[N, G]``; the loss of a trunk token is the mean
        over its ``G`` ids (so it reads per tokenizer token, as with ``G = 1``) and ``correct`` is ``[N * G]``.

        Returns:
            ``(ce [N], correct [N])``: cross-entropy summed over factors, and whether every factor's argmax is right.
        """
        if self.group > 1:
            n = ids.shape[0]
            ce, correct = self._loss(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1))
            return ce.view(n, self.group).mean(1), correct
        return self._loss(logits, ids)

    def _loss(self, logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        digits = factorize_ids(ids, self.factor_sizes)
        ce = logits.new_zeros(ids.shape[0], dtype=torch.float32)
        correct = torch.ones_like(ids, dtype=torch.bool)
        for i, lg in enumerate(self.split(logits)):
            lg = lg.float()
            ce = ce + F.cross_entropy(lg, digits[:, i], label_smoothing=self.label_smoothing, reduction="none")
            correct &= lg.argmax(-1) == digits[:, i]
        return ce, correct


class DiffusionTokenHead(nn.Module):
    """Per-token diffusion head of the ``mar`` family.

    Args:
        dim: trunk width ``D``.
        token_dim: width of one (patchified) continuous token.
        tokens_per_frame: ``S``; a learned position embedding ``[S, D]`` is added to ``z``.
        config: diffusion settings.
    """

    def __init__(self, dim: int, token_dim: int, tokens_per_frame: int, config: DiffusionHeadConfig) -> None:
        super().__init__()
        self.token_dim = token_dim
        self.config = config
        self.z_proj = nn.Linear(dim, dim)
        self.z_norm = nn.LayerNorm(dim, eps=1e-6)
        self.pos = nn.Parameter(torch.zeros(tokens_per_frame, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.net = DiffusionMLP(token_dim, dim, config.width, config.depth)
        self.diffusion = GaussianDiffusion(config.train_steps, config.schedule)

    def condition(self, h: torch.Tensor) -> torch.Tensor:
        """Trunk outputs ``[B, T, S, D]`` -> per-token conditions ``z`` ``[B, T, S, D]``."""
        return self.z_norm(self.z_proj(h)) + self.pos.to(h.dtype)

    def loss(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-token epsilon MSE ``[N]`` for conditions ``z`` ``[N, D]`` and clean tokens ``[N, token_dim]``."""
        mul = self.config.batch_mul
        if mul > 1:
            z, target = z.repeat(mul, 1), target.repeat(mul, 1)
        loss = self.diffusion.loss(self.net, target, z)
        return loss.view(mul, -1).mean(0) if mul > 1 else loss

    def sample(self, z: torch.Tensor, temperature: float = 1.0, cfg_scale: float = 1.0,
               steps: int | None = None, generator: torch.Generator | None = None,
               sampler: str = "ddpm") -> torch.Tensor:
        """Tokens ``[N, token_dim]`` for conditions ``z`` ``[N, D]`` (``[2N, D]``: cond then uncond, with CFG).

        ``steps``: diffusion steps (default ``config.sample_steps``); ``sampler``: ``"ddpm"`` or ``"ddim"`` (few-step,
        deterministic; see :mod:`hma_zoo.diffusion.gaussian`)."""
        return self.diffusion.sample(self.net, z, self.token_dim, steps or self.config.sample_steps,
                                     temperature, cfg_scale, generator, sampler=sampler)


class RegressionActionHead(nn.Module):
    """``vq`` action head of one embodiment: ``LN -> Linear -> GELU -> Linear`` to the normalised chunk."""

    def __init__(self, spec: EmbodimentSpec, dim: int, max_chunk: int) -> None:
        super().__init__()
        self.chunk = spec.chunk_dim
        self.max_chunk = max_chunk
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, self.chunk))

    def loss(self, feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``feat`` ``[n, T, D]``, normalised ``target`` ``[n, T, A_max]`` -> MSE per frame ``[n, T]``."""
        return (self.net(feat) - target[..., : self.chunk]).pow(2).mean(-1)

    def predict(self, feat: torch.Tensor, *_: object) -> torch.Tensor:
        """``[n, T, D]`` -> normalised chunk zero-padded to ``[n, T, A_max]``."""
        return F.pad(self.net(feat), (0, self.max_chunk - self.chunk))


class DiffusionActionHead(nn.Module):
    """``mar`` action head of one embodiment: a per-frame diffusion over the normalised chunk."""

    def __init__(self, spec: EmbodimentSpec, dim: int, max_chunk: int, config: DiffusionHeadConfig) -> None:
        super().__init__()
        self.chunk = spec.chunk_dim
        self.max_chunk = max_chunk
        self.config = config
        self.net = DiffusionMLP(self.chunk, dim, config.width, config.depth)
        self.diffusion = GaussianDiffusion(config.train_steps, config.schedule)

    def loss(self, feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n, t, d = feat.shape
        loss = self.diffusion.loss(self.net, target[..., : self.chunk].reshape(n * t, -1), feat.reshape(n * t, d))
        return loss.view(n, t)

    def predict(self, feat: torch.Tensor, noise_seed: torch.Tensor | None = None) -> torch.Tensor:
        n, t, d = feat.shape
        x = self.diffusion.sample(self.net, feat.reshape(n * t, d), self.chunk, self.config.sample_steps)
        return F.pad(x.view(n, t, -1), (0, self.max_chunk - self.chunk))
