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

    def modulated(self, x: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` given this block's modulation ``ada(silu(c))`` ``[N, 3 * width]`` (computed for all blocks
        in one matmul), at inference: the residual is added in place (no autograd)."""
        d = x.shape[-1]
        shift, scale, gate = mod.split(d, dim=-1)
        scale1 = scale + 1.0
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

    def _inference_tables(self, timesteps: tuple[int, ...], like: torch.Tensor
                          ) -> tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Per-timestep embeddings ``{t: [1, width]}`` of ``timesteps`` and the modulation layers of all blocks and
        the final layer stacked into one weight ``[n_mod, width]`` and bias, kept until a parameter changes (an
        optimiser step bumps its version) or another dtype / device / timestep list asks."""
        params = [p for m in (self.time_embed, *[b.ada for b in self.blocks], self.final_ada) for p in m.parameters()]
        key = (timesteps, like.dtype, like.device, tuple((p.data_ptr(), p._version) for p in params))
        cached = self.__dict__.get("_tables")
        if cached is not None and cached[0] == key:
            return cached[1]
        t = torch.tensor(timesteps, device=like.device, dtype=torch.long)
        temb = self.time_embed(timestep_embedding(t, self.time_freq_dim).to(like.dtype))
        rows = {step: temb[i : i + 1] for i, step in enumerate(timesteps)}
        mods = [*[b.ada for b in self.blocks], self.final_ada]
        weight = torch.cat([m.weight for m in mods]).to(like.dtype)
        bias = torch.cat([m.bias for m in mods]).to(like.dtype)
        self.__dict__["_tables"] = (key, (rows, weight, bias))
        return rows, weight, bias

    def prepare(self, z: torch.Tensor, timesteps: list[int] | None = None,
                ) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """Sampling helper: ``eps = fn(x, t)`` for fixed conditions ``z`` ``[N, cond_dim]`` and one integer timestep
        ``t`` shared by all rows, equal to ``forward(x, full(t), z)``.

        The condition's projection is computed here once. Given the sampler's ``timesteps``, their embeddings and
        the stacked modulation layers (one matmul for the adaLN shift/scale/gate of every block instead of one per
        block) are computed once and reused across calls while the weights stay the same. Under autograd
        (training) it falls back to :meth:`forward`."""
        if torch.is_grad_enabled():
            return lambda x, t: self.forward(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long), z)
        cz = self.cond_embed(z)
        rows, weight, bias = self._inference_tables(tuple(timesteps or ()), cz)
        width = cz.shape[-1]

        def fn(x: torch.Tensor, t: int) -> torch.Tensor:
            temb = rows.get(t)
            if temb is None:
                t_row = torch.full((1,), t, device=x.device, dtype=torch.long)
                temb = self.time_embed(timestep_embedding(t_row, self.time_freq_dim).to(x.dtype))
            c_act = F.silu(cz + temb)
            mod = torch.addmm(bias, c_act, weight.t())  # [N, 3 * width * depth + 2 * width]
            h = self.input_proj(x)
            for i, block in enumerate(self.blocks):
                h = block.modulated(h, mod[:, 3 * width * i : 3 * width * (i + 1)])
            shift, scale = mod[:, 3 * width * len(self.blocks) :].chunk(2, dim=-1)
            return self.out(torch.addcmul(shift, self.final_norm(h), 1 + scale))

        return fn
