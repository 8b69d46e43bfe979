"""The few-step DDIM sampler of the diffusion head (issue 16) and the sampling shortcuts of the denoiser.

DDIM is checked against diffusers' ``DDIMScheduler`` (the reference implementation of Song et al. 2021) given the
same alpha-bar table, so the update rule, the trailing timesteps, the bounded x0 and the final step are the
library's; the shortcut of :meth:`DiffusionMLP.prepare` must equal the plain forward.
"""

from __future__ import annotations

import pytest
import torch

from hma_zoo.diffusion import DiffusionMLP, GaussianDiffusion
from hma_zoo.sampling import FrameStepper
from tests.model.helpers import batch, tiny


def _net(seed: int = 0) -> DiffusionMLP:
    torch.manual_seed(seed)
    net = DiffusionMLP(in_dim=6, cond_dim=8, width=32, depth=2).double().eval()
    with torch.no_grad():  # zero-initialised output and modulation layers would make eps = 0
        for p in net.parameters():
            p.normal_(0.0, 0.2)
    return net


@pytest.mark.parametrize("steps", [1, 4, 8])
@pytest.mark.parametrize("clip", [5.0, 0.5])
def test_ddim_equals_diffusers_ddim_scheduler(steps: int, clip: float) -> None:
    diffusers = pytest.importorskip("diffusers")
    net, diffusion = _net(), GaussianDiffusion(1000)
    cond = torch.randn(16, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x_t = torch.randn(16, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = diffusion.sample(net, cond, 6, steps=steps, temperature=1.0, clip_x0=clip, sampler="ddim",
                                generator=torch.Generator().manual_seed(2))  # draws the same x_T as x_t
        sched = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                        clip_sample=True, clip_sample_range=clip, set_alpha_to_one=True,
                                        timestep_spacing="trailing", prediction_type="epsilon")
        sched.alphas_cumprod = diffusion.alphas_cumprod.clone()  # the same float64 table
        sched.set_timesteps(steps)
        assert sched.timesteps.tolist() == diffusion.coefficients(steps, "ddim")[0]
        x = x_t
        for t in sched.timesteps:
            eps = net(x, torch.full((16,), int(t)), cond)
            x = sched.step(eps, int(t), x, eta=0.0, use_clipped_model_output=True).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-9, atol=1e-9)


def test_ddim_is_deterministic_given_x_t_and_ddpm_is_not() -> None:
    net, diffusion = _net(), GaussianDiffusion(1000)
    cond = torch.randn(32, 8, dtype=torch.float64)
    with torch.no_grad():
        a = diffusion.sample(net, cond, 6, steps=6, sampler="ddim", generator=torch.Generator().manual_seed(0))
        b = diffusion.sample(net, cond, 6, steps=6, sampler="ddim", generator=torch.Generator().manual_seed(0))
        gen = torch.Generator().manual_seed(0)
        c = diffusion.sample(net, cond, 6, steps=6, sampler="ddpm", generator=gen)
        d = diffusion.sample(net, cond, 6, steps=6, sampler="ddpm", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(c, d)
    # one random draw (x_T) per sample for DDIM: after it the generator is untouched by the steps
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        diffusion.sample(net, cond, 6, steps=6, sampler="ddim", generator=gen)
    after_ddim = torch.rand(1, generator=gen)
    gen = torch.Generator().manual_seed(0)
    torch.randn(32, 6, generator=gen, dtype=torch.float64)
    assert torch.equal(after_ddim, torch.rand(1, generator=gen))
    assert not torch.allclose(a, c)


def test_trailing_timesteps_use_every_step() -> None:
    diffusion = GaussianDiffusion(1000)
    assert diffusion.coefficients(4, "ddim")[0] == [999, 749, 499, 249]
    assert diffusion.coefficients(4, "ddpm")[0] == [999, 666, 333, 0]
    with pytest.raises(ValueError, match="sampler"):
        diffusion.coefficients(4, "euler")


@pytest.mark.parametrize("t", [0, 499, 999])
def test_prepared_denoiser_equals_forward(t: int) -> None:
    net = _net(3)
    x = torch.randn(10, 6, dtype=torch.float64)
    z = torch.randn(10, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = net(x, torch.full((10,), t), z)
        fast = net.prepare(z, [999, t])(x.clone(), t)
        assert torch.equal(net.prepare(z, [999, t])(x.clone(), t), fast)  # the cached tables give the same
        torch.testing.assert_close(net.prepare(z)(x.clone(), t), ref, rtol=1e-12, atol=1e-12)  # t not in the list
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)


def test_prepared_denoiser_keeps_gradients_in_training() -> None:
    net = _net(4).train()
    z = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    net.prepare(z)(torch.randn(4, 6, dtype=torch.float64), 10).sum().backward()
    assert z.grad is not None and net.blocks[0].ada.weight.grad is not None


def test_stepper_sampler_option_reaches_the_head(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny("mar")
    tokens, actions, names = batch(model, b=2)
    seen: list[tuple] = []
    original = model.video_head.diffusion.sample

    def spy(*args, **kwargs):
        seen.append((args[3], kwargs["sampler"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(model.video_head.diffusion, "sample", spy)
    out = model.generate(tokens[:, :2], actions, names, 1, steps=2, temperature=0.0, sampler="ddim",
                         diffusion_steps=3)
    assert out.shape[1] == 3 and seen and set(seen) == {(3, "ddim")}
    with pytest.raises(ValueError, match="sampler"):
        FrameStepper(model, sampler="dpm")
    with pytest.raises(ValueError, match="diffusion_steps"):
        FrameStepper(model, diffusion_steps=0)


def test_prepared_tables_follow_weight_updates() -> None:
    """The cached timestep embeddings and stacked modulation layers are rebuilt after an in-place weight update
    (an optimiser step between validation samplings must not leave stale tables)."""
    net = _net(5)
    x, z = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64)
    with torch.no_grad():
        before = net.prepare(z, [7])(x.clone(), 7)
        net.blocks[1].ada.weight.mul_(1.5)
        net.time_embed[0].bias.add_(0.3)
        after = net.prepare(z, [7])(x.clone(), 7)
        ref = net(x, torch.full((4,), 7), z)
    torch.testing.assert_close(after, ref, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(before, after)
