"""A minimal DDPM (Ho et al. 2020) with the cosine schedule of Nichol & Dhariwal (2021) and respaced sampling.

Stated choices (see docs): epsilon prediction, **fixed** posterior variance (``beta_tilde``; no learned
variance, so the loss is the plain epsilon MSE), 1000 training steps, sampling respaced to any number of
steps by taking evenly spaced timesteps and recomputing the betas between them (IDDPM respacing).
When sampling, the ``x0`` estimate is clamped to ``[-clip_x0, clip_x0]`` (default 5: the zoo's continuous tokens
are scaled to unit variance, so this bounds only estimates no latent reaches). The cosine schedule ends at zero
SNR (alpha-bar 2.4e-9 at t = 999), where an epsilon-prediction's ``x0 = (x - sqrt(1 - ab) eps) / sqrt(ab)``
multiplies any error of ``eps`` by 2e4: unclamped, one imperfect first step sends the sample to |x| ~ 1e3
(measured on a partly trained hma-mar-t64: latents of std 969, 11 dB frames). ``clip_x0=None`` turns it off. The
zero-terminal-SNR problem of epsilon prediction is described by Lin et al. 2024 (arXiv 2305.08891), who retrain
with v-prediction; bounding x0 fixes sampling of models already trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def make_betas(schedule: str, steps: int) -> torch.Tensor:
    """Beta schedule ``[steps]`` in float64: ``cosine`` (IDDPM, s=0.008, betas <= 0.999) or ``linear``."""
    if schedule == "linear":
        scale = 1000.0 / steps
        return torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64)
    if schedule == "cosine":

        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)]
        return torch.tensor(betas, dtype=torch.float64)
    raise ValueError(f"unknown beta schedule {schedule!r}; use 'cosine' or 'linear'")


class GaussianDiffusion(nn.Module):
    """Training loss and ancestral sampling for a denoiser ``eps = net(x_t, t, cond)``.

    Args:
        train_steps: number of diffusion steps in training.
        schedule: ``cosine`` or ``linear``.
    """

    def __init__(self, train_steps: int = 1000, schedule: str = "cosine") -> None:
        super().__init__()
        self.train_steps = train_steps
        betas = make_betas(schedule, train_steps)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        # float64 tables as non-persistent buffers: derived from the config, never saved.
        self.register_buffer("alphas_cumprod", alphas_cumprod, persistent=False)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise ``x0`` ``[N, C]`` to timesteps ``t`` ``[N]``."""
        ab = self.alphas_cumprod[t].to(x0.dtype).unsqueeze(-1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def loss(self, net: Callable[..., torch.Tensor], x0: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Per-sample epsilon MSE ``[N]`` for targets ``x0`` ``[N, C]`` under conditions ``cond`` ``[N, Dc]``."""
        t = torch.randint(0, self.train_steps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        eps = net(self.q_sample(x0, t, noise), t, cond)
        return (eps - noise).pow(2).mean(dim=-1)

    def respaced(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Evenly spaced training timesteps ``[steps]`` (descending) and their alpha-bar ``[steps]`` (float64)."""
        steps = max(1, min(steps, self.train_steps))
        ts = torch.linspace(0, self.train_steps - 1, steps, device=self.alphas_cumprod.device).round().long()
        ts = torch.unique(ts)
        return ts.flip(0), self.alphas_cumprod[ts].flip(0)

    @torch.no_grad()
    def sample(
        self,
        net: Callable[..., torch.Tensor],
        cond: torch.Tensor,
        dim: int,
        steps: int = 100,
        temperature: float = 1.0,
        cfg_scale: float = 1.0,
        generator: torch.Generator | None = None,
        clip_x0: float | None = 5.0,
    ) -> torch.Tensor:
        """Draw ``x0`` ``[N, dim]`` given ``cond`` ``[N, Dc]`` with respaced DDPM.

        ``clip_x0``: bound of each step's ``x0`` estimate (see the module docstring); ``None`` = unbounded.

        With ``cfg_scale != 1`` the condition holds the conditional rows followed by the unconditional rows
        (``[2N, Dc]``) and epsilon is ``eps_u + cfg_scale * (eps_c - eps_u)``.

        ``temperature`` scales the standard deviation of the initial noise ``x_T ~ N(0, temperature^2)`` and of the
        noise injected at every step (MAR scales only the latter, so its temperature 0 still depends on the
        initial draw). ``temperature == 0`` starts from ``x_T = 0`` and injects nothing: the sample is a
        deterministic function of ``cond``, and the generator is not used at all.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        guided = cfg_scale != 1.0
        n = cond.shape[0] // 2 if guided else cond.shape[0]
        ts, abar = self.respaced(steps)
        if temperature > 0:
            x = temperature * torch.randn(n, dim, device=cond.device, dtype=cond.dtype, generator=generator)
        else:
            x = torch.zeros(n, dim, device=cond.device, dtype=cond.dtype)
        for i, t in enumerate(ts):
            ab = abar[i]
            ab_prev = abar[i + 1] if i + 1 < len(ts) else torch.ones((), dtype=ab.dtype, device=ab.device)
            beta = 1 - ab / ab_prev
            t_in = torch.full((x.shape[0] * (2 if guided else 1),), int(t), device=x.device, dtype=torch.long)
            eps = net(torch.cat((x, x)) if guided else x, t_in, cond)
            if guided:
                eps_c, eps_u = eps.chunk(2)
                eps = eps_u + cfg_scale * (eps_c - eps_u)
            x0 = (x - (1 - ab).sqrt().to(x.dtype) * eps) / ab.sqrt().to(x.dtype)
            if clip_x0 is not None:
                x0 = x0.clamp(-clip_x0, clip_x0)
            coef_x0 = (ab_prev.sqrt() * beta / (1 - ab)).to(x.dtype)
            coef_xt = ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)).to(x.dtype)
            mean = coef_x0 * x0 + coef_xt * x
            if i + 1 < len(ts) and temperature > 0:
                var = (beta * (1 - ab_prev) / (1 - ab)).to(x.dtype)
                noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
                x = mean + temperature * var.sqrt() * noise
            else:
                x = mean
        return x
