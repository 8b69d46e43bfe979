"""Frame and video metrics for world-model evaluation (torch, batched, per frame).

* :func:`psnr`, :func:`ssim`: per-frame image quality of predictions against the ground truth.
* :func:`sample_random_actions` + :func:`delta_psnr`: controllability (HMA / Genie's delta-PSNR): PSNR with the
  true actions minus PSNR with actions drawn from the embodiment's action statistics ``N(mean, std^2)``.
* :func:`perplexity`: ``exp`` of a mean cross-entropy (``vq`` models; see :func:`hma_zoo.eval.rollout.vq_perplexity`).
* :func:`frechet_distance`: the Frechet distance between two Gaussians fitted to feature sets, used by the
  project's own video distance (:mod:`hma_zoo.eval.features`) and by the standard FID/FVD when their weights exist.

Frames are uint8 ``[..., H, W, 3]`` (the data contract) or float in ``[0, 255]`` with the same layout.
"""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from hma_zoo.configs import EmbodimentSpec

MAX_PSNR = 100.0  # dB for identical frames (normalised mse floored at 1e-10) instead of inf: means stay finite


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if pred.ndim < 3 or pred.shape[-1] != 3:
        raise ValueError(f"frames must be [..., H, W, 3] (channels last, as in the data), got {tuple(pred.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of every frame, in dB: the project's one PSNR (validation, evaluation and the
    tokenizer code all call it), computed by ``torchmetrics``' ``peak_signal_noise_ratio`` per frame.

    Identical frames (``mse = 0``) would read ``inf``; the normalised error ``mse / data_range^2`` is floored at
    ``1e-10`` instead, so they read :data:`MAX_PSNR` (100 dB) and per-sample means over frames stay finite. For
    uint8 frames any other pair of frames up to about 226x226 pixels reads below 100 dB, so the floor only ever
    applies to identical frames there.

    Args:
        pred, target: frames ``[..., H, W, 3]`` (uint8, or float on the scale of ``data_range``).
        data_range: the value range (255 for uint8 frames; 2 for images in ``[-1, 1]``).

    Returns:
        ``float32 [...]``: ``10 log10(data_range^2 / max(mse, 1e-10 data_range^2))`` per frame.
    """
    _check_pair(pred, target)
    lead = pred.shape[:-3]
    # float64 on the [0, 1] scale: torchmetrics would take log(data_range) in float32 (3e-7 dB off at 255)
    x = pred.reshape(-1, *pred.shape[-3:]).double() / data_range
    y = target.reshape(-1, *target.shape[-3:]).double() / data_range
    if x.shape[0] == 0:
        return torch.zeros(lead)
    value = peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return value.clamp(max=MAX_PSNR).float().reshape(lead)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 255.0, kernel_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004, Gaussian window) of every frame, averaged over RGB.

    Args:
        pred, target: frames ``[..., H, W, 3]``.
        data_range: value range of the frames.
        kernel_size: Gaussian window (odd); shrunk to the largest odd size that fits in small frames.
        sigma: Gaussian standard deviation.

    Returns:
        ``float32 [...]`` SSIM per frame in ``[-1, 1]``.
    """
    _check_pair(pred, target)
    lead = pred.shape[:-3]
    h, w = pred.shape[-3:-1]
    k = min(kernel_size, h - (1 - h % 2), w - (1 - w % 2))
    if k < 3:
        raise ValueError(f"frames of {h}x{w} are too small for SSIM (need at least 3x3)")
    # float32: torch's CPU conv2d is ~80x slower in float64 (37 s vs 0.45 s for 248 frames of 64x64 on one thread)
    # and SSIM in float32 agrees with float64 to ~1e-6
    x = pred.reshape(-1, h, w, 3).permute(0, 3, 1, 2).float()
    y = target.reshape(-1, h, w, 3).permute(0, 3, 1, 2).float()
    if x.shape[0] == 0:
        return torch.zeros(lead)
    value = structural_similarity_index_measure(x, y, data_range=data_range, kernel_size=k, sigma=sigma,
                                                reduction="none")
    return value.float().reshape(lead)


def sample_random_actions(
    embodiments: list[EmbodimentSpec] | tuple[EmbodimentSpec, ...],
    names: list[str],
    num_rows: int,
    max_chunk_dim: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Raw action chunks drawn from each sample's embodiment statistics, for delta-PSNR.

    Each control-step action is drawn independently from ``N(action_mean, action_std^2)`` of the sample's
    embodiment (``0`` / ``1`` when the spec carries no statistics); a frame's row is ``stride`` such draws, zero-padded
    to ``max_chunk_dim``.

    Args:
        embodiments: the model's :class:`EmbodimentSpec` (``model.config.embodiments``).
        names: embodiment name of every sample (length ``B``).
        num_rows: rows (frames) per sample, ``T``.
        max_chunk_dim: ``A_max`` of the action tensor.
        generator: random generator (reproducible draws).

    Returns:
        ``float32 [B, T, A_max]``.
    """
    by_name = {e.name: e for e in embodiments}
    out = torch.zeros(len(names), num_rows, max_chunk_dim)
    for i, name in enumerate(names):
        if name not in by_name:
            raise KeyError(f"unknown embodiment {name!r}; known: {sorted(by_name)}")
        e = by_name[name]
        mean = torch.tensor(e.action_mean if e.action_mean is not None else [0.0] * e.action_dim)
        std = torch.tensor(e.action_std if e.action_std is not None else [1.0] * e.action_dim)
        noise = torch.randn(num_rows, e.stride, e.action_dim, generator=generator)
        out[i, :, : e.chunk_dim] = (mean + std * noise).reshape(num_rows, e.chunk_dim)
    return out.to(device)


def delta_psnr(psnr_true: torch.Tensor, psnr_random: torch.Tensor) -> torch.Tensor:
    """Controllability: ``psnr_true - psnr_random``.

    ``psnr_random`` may carry a leading axis of draws ``[D, ...]`` (averaged first). A model that ignores its actions
    scores about 0; one whose predictions follow the actions scores clearly above 0.
    """
    if psnr_random.ndim == psnr_true.ndim + 1:
        psnr_random = psnr_random.mean(0)
    if psnr_random.shape != psnr_true.shape:
        raise ValueError(f"psnr_true {tuple(psnr_true.shape)} and psnr_random {tuple(psnr_random.shape)} differ")
    return psnr_true - psnr_random


def perplexity(mean_cross_entropy: float | torch.Tensor) -> float:
    """``exp`` of a mean per-token cross-entropy in nats (``vq``); 1 is perfect, the vocabulary size is chance."""
    value = float(mean_cross_entropy)
    return math.exp(value) if value < 700 else float("inf")


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[F]`` and unbiased covariance ``[F, F]`` (float64) of features ``[N, F]`` (``N >= 2``)."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, F] to fit a Gaussian, got {tuple(features.shape)}")
    f = features.double()
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (f.shape[0] - 1)


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``:
    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1^1/2 sigma2 sigma1^1/2)^1/2)``.

    Computed with symmetric eigendecompositions in float64 (stable for the rank-deficient covariances of small
    evaluation sets).
    """
    mu1, mu2, sigma1, sigma2 = (x.double() for x in (mu1, mu2, sigma1, sigma2))
    s1h = _sqrtm_psd(sigma1)
    inner = s1h @ sigma2 @ s1h
    tr_cross = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).square().sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * tr_cross
    return float(value.clamp_min(0))


def frechet_distance_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to feature sets ``[N, F]`` and ``[M, F]``."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
