"""The per-token MLP denoiser of MAR (Li et al., "Autoregressive Image Generation without Vector
Quantization", 2024): residual MLP blocks modulated (adaLN) by the timestep embedding plus the condition ``z``
that the trunk produced for that token. Output and modulation layers start at zero (adaLN-Zero, as in DiT)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[N, dim]`` of integer timesteps ``t`` ``[N]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat((args.cos(), args.sin()), dim=-1)


class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Linear(width, 3 * width)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(F.silu(c)).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)

    def fast(self, x: torch.Tensor, c_act: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` given ``silu(c)`` (computed once for all blocks), at inference: ``1 + scale`` folded into
        the modulation's bias and the residual added in place (no autograd)."""
        w, b = self.ada.weight, self.ada.bias
        d = x.shape[-1]
        mod = torch.addmm(b, c_act, w.t())
        mod[:, d : 2 * d] += 1.0
        shift, scale1, gate = mod.split(d, dim=-1)
        h = torch.addcmul(shift, F.layer_norm(x, (d,), self.norm.weight, self.norm.bias, self.norm.eps), scale1)
        h = self.mlp[2](F.silu(self.mlp[0](h), inplace=True))
        return x.addcmul_(gate, h)


class DiffusionMLP(nn.Module):
    """Denoiser ``eps = f(x_t, t, z)`` for tokens of width ``in_dim``, conditioned on ``z`` of width ``cond_dim``.

    Args:
        in_dim: token width (``c * p * p`` for patchified latents, or an action chunk width).
        cond_dim: width of the condition (the trunk's ``d_model``).
        width: hidden width (paper: 1024).
        depth: number of residual blocks (paper: 4).
    """

    def __init__(self, in_dim: int, cond_dim: int, width: int = 1024, depth: int = 4) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.time_freq_dim = 256
        self.time_embed = nn.Sequential(nn.Linear(self.time_freq_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.cond_embed = nn.Linear(cond_dim, width)
        self.input_proj = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(_ResBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, in_dim)
        for block in self.blocks:
            nn.init.zeros_(block.ada.weight)
            nn.init.zeros_(block.ada.bias)
        for layer in (self.final_ada, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, in_dim]``, ``t`` ``[N]``, ``z`` ``[N, cond_dim]`` -> predicted noise ``[N, in_dim]``."""
        c = self.time_embed(timestep_embedding(t, self.time_freq_dim).to(x.dtype)) + self.cond_embed(z)
        h = self.input_proj(x)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_ada(F.silu(c)).chunk(2, dim=-1)
        return self.out(self.final_norm(h) * (1 + scale) + shift)

    def prepare(self, z: torch.Tensor) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """Sampling helper: ``eps = fn(x, t)`` for fixed conditions ``z`` ``[N, cond_dim]`` and one integer timestep
        ``t`` shared by all rows, equal to ``forward(x, full(t), z)``. The condition's projection is computed here
        once, the timestep embedding once per call on one row; under autograd (training) it falls back to
        :meth:`forward`."""
        cz = self.cond_embed(z)

        def fn(x: torch.Tensor, t: int) -> torch.Tensor:
            t_row = torch.full((1,), t, device=x.device, dtype=torch.long)
            if torch.is_grad_enabled():
                return self.forward(x, t_row.expand(x.shape[0]), z)
            c = cz + self.time_embed(timestep_embedding(t_row, self.time_freq_dim).to(x.dtype))
            c_act = F.silu(c)
            h = self.input_proj(x)
            for block in self.blocks:
                h = block.fast(h, c_act)
            shift, scale = self.final_ada(c_act).chunk(2, dim=-1)
            return self.out(torch.addcmul(shift, self.final_norm(h), 1 + scale))

        return fn
