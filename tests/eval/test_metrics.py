"""Metric functions against hand-computed values and reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from hma_zoo.configs import EmbodimentSpec
from hma_zoo.eval.features import PixelVideoFeatures, load_fid, load_fvd, load_lpips, own_fvd
from hma_zoo.eval.metrics import (
    MAX_PSNR,
    delta_psnr,
    frechet_distance,
    frechet_distance_from_features,
    perplexity,
    psnr,
    sample_random_actions,
    ssim,
)


def test_psnr_hand_computed() -> None:
    a = torch.zeros(2, 3, 4, 4, 3, dtype=torch.uint8)
    b = a.clone()
    b[0, 1] = 10  # mse 100 -> 10 log10(255^2 / 100)
    b[1, 2, 0, 0, 0] = 48  # one of 48 values off by 48 -> mse 48
    out = psnr(b, a)
    assert out.shape == (2, 3)
    assert out[0, 1].item() == pytest.approx(10 * math.log10(255**2 / 100), rel=1e-6)
    assert out[1, 2].item() == pytest.approx(10 * math.log10(255**2 / 48), rel=1e-6)
    assert out[0, 0].item() == MAX_PSNR  # identical frames are capped, not inf


def test_psnr_matches_torchmetrics_per_frame() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 16, 16, 3), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 256, (5, 16, 16, 3), generator=g, dtype=torch.uint8)
    ours = psnr(x, y)
    for i in range(5):
        ref = peak_signal_noise_ratio(x[i].float(), y[i].float(), data_range=255.0)
        assert ours[i].item() == pytest.approx(ref.item(), rel=1e-5)


def test_ssim_properties_and_reference() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (2, 3, 32, 32, 3), generator=g, dtype=torch.uint8)
    assert torch.allclose(ssim(x, x), torch.ones(2, 3), atol=1e-5)
    noisy = (x.float() + torch.randn(x.shape, generator=g) * 40).clamp(0, 255).to(torch.uint8)
    s = ssim(noisy, x)
    assert s.shape == (2, 3) and (s < 0.9).all()
    ref = structural_similarity_index_measure(noisy[1, 2].permute(2, 0, 1)[None].float(),
                                              x[1, 2].permute(2, 0, 1)[None].float(), data_range=255.0)
    assert s[1, 2].item() == pytest.approx(ref.item(), abs=1e-5)


def test_ssim_hand_computed_constant_images() -> None:
    # Constant images: variances and covariance are 0, so SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
    x = torch.full((1, 16, 16, 3), 100, dtype=torch.uint8)
    y = torch.full((1, 16, 16, 3), 150, dtype=torch.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 150 + c1) / (100**2 + 150**2 + c1)
    # float32 convolutions (see ssim): constant images are the worst case for E[x^2] - E[x]^2, still within 1e-3
    assert ssim(x, y)[0].item() == pytest.approx(expected, rel=1e-3)


def test_ssim_float32_agrees_with_float64_on_real_looking_frames() -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure

    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (6, 32, 32, 3), generator=g, dtype=torch.uint8)
    b = (a.float() + 20 * torch.randn(a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    ref = structural_similarity_index_measure(a.permute(0, 3, 1, 2).double(), b.permute(0, 3, 1, 2).double(),
                                              data_range=255.0, reduction="none")
    assert torch.allclose(ssim(a, b).double(), ref, atol=1e-5)


def test_psnr_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(2, 4, 4, 3), torch.zeros(3, 4, 4, 3))
    with pytest.raises(ValueError, match="channels last"):
        psnr(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))


def test_sample_random_actions_statistics() -> None:
    embs = (EmbodimentSpec("a", action_dim=2, stride=3, action_mean=(5.0, -1.0), action_std=(0.5, 2.0)),
            EmbodimentSpec("b", action_dim=1, stride=1))
    g = torch.Generator().manual_seed(0)
    out = sample_random_actions(embs, ["a", "b"] * 2000, num_rows=4, max_chunk_dim=6, generator=g)
    assert out.shape == (4000, 4, 6)
    a = out[0::2].reshape(-1, 3, 2)  # [N, stride, dim]
    assert a[..., 0].mean().item() == pytest.approx(5.0, abs=0.02)
    assert a[..., 1].std().item() == pytest.approx(2.0, rel=0.02)
    b = out[1::2]
    assert b[..., 0].std().item() == pytest.approx(1.0, rel=0.03)
    assert (b[..., 1:] == 0).all()  # zero padding past the chunk
    with pytest.raises(KeyError, match="unknown embodiment"):
        sample_random_actions(embs, ["c"], 1, 6)


def test_delta_psnr_and_perplexity() -> None:
    true = torch.tensor([30.0, 20.0])
    draws = torch.tensor([[25.0, 20.0], [27.0, 22.0]])
    assert torch.allclose(delta_psnr(true, draws), torch.tensor([4.0, -1.0]))
    assert perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert perplexity(0.0) == 1.0


def test_frechet_distance_hand_computed() -> None:
    # 1-D Gaussians: (mu1 - mu2)^2 + (s1 - s2)^2.
    d = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([3.0]), torch.tensor([[9.0]]))
    assert d == pytest.approx(4.0 + 1.0, rel=1e-9)
    # Diagonal covariances: sum over dimensions.
    s1, s2 = torch.diag(torch.tensor([1.0, 4.0])), torch.diag(torch.tensor([9.0, 16.0]))
    d = frechet_distance(torch.zeros(2), s1, torch.ones(2), s2)
    assert d == pytest.approx(2.0 + (1 - 3) ** 2 + (2 - 4) ** 2, rel=1e-9)
    # Non-diagonal: compare with scipy's sqrtm formula.
    scipy_linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 5, generator=g), torch.randn(40, 5, generator=g) * 1.5 + 0.3
    c1, c2 = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    ref = (np.square(a.numpy().mean(0) - b.numpy().mean(0)).sum() + np.trace(c1) + np.trace(c2)
           - 2 * np.trace(scipy_linalg.sqrtm(c1 @ c2).real))
    assert frechet_distance_from_features(a, b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance_from_features(a, a) == pytest.approx(0.0, abs=1e-6)


def test_own_fvd_separates_static_from_moving() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 256, (8, 1, 16, 16, 3), generator=g, dtype=torch.uint8)
    static = base.expand(8, 4, 16, 16, 3).contiguous()
    moving = torch.stack([torch.roll(base[:, 0], shifts=2 * t, dims=2) for t in range(4)], 1)
    feats = PixelVideoFeatures(size=4)
    assert feats(static).shape == (8, 2 * 3 * 16)
    same = own_fvd(static, static.clone(), feats)
    diff = own_fvd(static, moving, feats)
    assert same == pytest.approx(0.0, abs=1e-6) and diff > 1.0


def test_standard_metric_loaders_skip_without_weights(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        assert load_lpips(None) is None
        assert load_fid(None) is None
        assert load_fvd(None) is None
    text = caplog.text
    assert "LPIPS skipped" in text and "FID skipped" in text and "FVD (I3D) skipped" in text
    with pytest.raises(FileNotFoundError):
        load_lpips("/nonexistent/alexnet.pth")


def test_lpips_loads_a_torchvision_alexnet_state(tmp_path) -> None:
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    state = tv.models.alexnet(weights=None).state_dict()
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    lpips = load_lpips(path)
    x = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    assert torch.allclose(lpips(x, x), torch.zeros(2), atol=1e-6)
    assert (lpips(x, 255 - x) > 0).all()
