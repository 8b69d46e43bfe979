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

Two samplers read the same trained epsilon-prediction network (``sampler=``):

* ``"ddpm"``: ancestral sampling with the fixed posterior variance on evenly spaced timesteps (IDDPM respacing,
  Nichol & Dhariwal 2021).
* ``"ddim"``: deterministic DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", eta = 0) on
  *trailing* timesteps (``T-1, T-1-T/n, ...``; recommended by Lin et al. 2024: every step does work, where evenly spaced
  timesteps spend the last step at ``t = 0``). The update is ``x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev) eps``
  with ``eps`` re-derived from the bounded ``x0`` (so the clamp acts as in the DDPM sampler). Works with the
  shipped weights: no retraining. Measured on the shipped hma-mar-t64 at temperature 0 (docs/results.md, "Speed
  (issue 16)"): DDIM needs ~20 steps to stay within 0.5 dB of 50 DDPM steps; DDPM itself at 8 steps stays within
  0.3 dB.
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
        self._coef_cache: dict[tuple[int, str], tuple[list[int], list[tuple[float, ...]]]] = {}

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

    def respaced(self, steps: int, spacing: str = "linspace") -> tuple[torch.Tensor, torch.Tensor]:
        """Training timesteps ``[steps]`` (descending) and their alpha-bar ``[steps]`` (float64).

        ``spacing="linspace"``: evenly spaced from ``0`` to ``T-1`` (both ends; IDDPM respacing);
        ``"trailing"``: ``T-1, T-1-T/steps, ...`` down to ``T/steps - 1`` (Lin et al. 2024).
        """
        steps = max(1, min(steps, self.train_steps))
        device = self.alphas_cumprod.device
        if spacing == "linspace":
            ts = torch.linspace(0, self.train_steps - 1, steps, device=device).round().long()
        elif spacing == "trailing":
            ts = (torch.arange(steps, 0, -1, device=device, dtype=torch.float64) * self.train_steps / steps).round()
            ts = (ts.long() - 1).clamp_min(0)
        else:
            raise ValueError(f"unknown timestep spacing {spacing!r}; use 'linspace' or 'trailing'")
        ts = torch.unique(ts)
        return ts.flip(0), self.alphas_cumprod[ts].flip(0)

    def coefficients(self, steps: int, sampler: str) -> tuple[list[int], list[tuple[float, ...]]]:
        """Timesteps (descending) and, per step, five constants of ``sampler`` as Python floats (computed in float64
        on the CPU once per ``(steps, sampler)``; no device tensor is read while sampling).

        Per step: ``1/sqrt(ab)``, ``sqrt(1-ab)``, then for ``ddpm`` the posterior-mean coefficients of ``x0`` and
        ``x_t`` and the posterior standard deviation; for ``ddim`` ``sqrt(ab)``, ``sqrt(ab_prev)`` and
        ``sqrt(1-ab_prev)``.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown diffusion sampler {sampler!r}; use one of {SAMPLERS}")
        key = (int(steps), sampler)
        cache = self._coef_cache
        if key in cache:
            return cache[key]
        ts, abar = self.respaced(steps, "trailing" if sampler == "ddim" else "linspace")
        ts, abar = ts.cpu(), abar.cpu()
        ab_prev = torch.cat((abar[1:], torch.ones_like(abar[:1])))
        rows = [1 / abar.sqrt(), (1 - abar).sqrt()]
        if sampler == "ddpm":
            beta = 1 - abar / ab_prev
            rows += [ab_prev.sqrt() * beta / (1 - abar), (1 - beta).sqrt() * (1 - ab_prev) / (1 - abar),
                     (beta * (1 - ab_prev) / (1 - abar)).sqrt()]
        else:
            rows += [abar.sqrt(), ab_prev.sqrt(), (1 - ab_prev).sqrt()]
        cache[key] = ([int(t) for t in ts.tolist()], [tuple(r) for r in torch.stack(rows, 1).tolist()])
        return cache[key]

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
        sampler: str = "ddpm",
    ) -> torch.Tensor:
        """Draw ``x0`` ``[N, dim]`` given ``cond`` ``[N, Dc]`` with respaced DDPM or deterministic DDIM.

        ``sampler``: ``"ddpm"`` (ancestral, linspace timesteps) or ``"ddim"`` (eta = 0, trailing timesteps); see the
        module docstring. ``clip_x0``: bound of each step's ``x0`` estimate (see the module docstring); ``None`` =
        unbounded.

        With ``cfg_scale != 1`` the condition holds the conditional rows followed by the unconditional rows
        (``[2N, Dc]``) and epsilon is ``eps_u + cfg_scale * (eps_c - eps_u)``.

        ``temperature`` scales the standard deviation of the initial noise ``x_T ~ N(0, temperature^2)`` and, for
        ``ddpm``, of the noise injected at every step (MAR scales only the latter, so its temperature 0 still
        depends on the initial draw). ``temperature == 0`` starts from ``x_T = 0`` and injects nothing: the sample
        is a deterministic function of ``cond``, and the generator is not used at all. ``ddim`` injects no noise
        after ``x_T`` at any temperature.

        If ``net`` has a ``prepare(cond, timesteps) -> fn(x, t: int)`` method (as
        :class:`~hma_zoo.diffusion.DiffusionMLP` has), the work that depends on ``cond`` only is done once, not at
        every step.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        guided = cfg_scale != 1.0
        n = cond.shape[0] // 2 if guided else cond.shape[0]
        ts, table = self.coefficients(steps, sampler)
        prepared = net.prepare(cond, ts) if hasattr(net, "prepare") else None
        rows = cond.shape[0]
        if temperature > 0:
            x = temperature * torch.randn(n, dim, device=cond.device, dtype=cond.dtype, generator=generator)
        else:
            x = torch.zeros(n, dim, device=cond.device, dtype=cond.dtype)
        for i, t in enumerate(ts):
            c = table[i]
            x_in = torch.cat((x, x)) if guided else x
            if prepared is not None:
                eps = prepared(x_in, t)
            else:
                eps = net(x_in, torch.full((rows,), t, device=x.device, dtype=torch.long), cond)
            if guided:
                eps_c, eps_u = eps.chunk(2)
                eps = eps_u + cfg_scale * (eps_c - eps_u)
            x0 = (x - c[1] * eps) * c[0]
            if clip_x0 is not None:
                x0 = x0.clamp(-clip_x0, clip_x0)
            if sampler == "ddim":
                if i + 1 == len(ts):
                    x = x0
                    break
                eps = (x - c[2] * x0) / c[1]  # epsilon consistent with the bounded x0
                x = c[3] * x0 + c[4] * eps
                continue
            mean = c[2] * x0 + c[3] * x
            if i + 1 < len(ts) and temperature > 0:
                noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
                x = mean + temperature * c[4] * noise
            else:
                x = mean
        return x


SAMPLERS = ("ddpm", "ddim")
