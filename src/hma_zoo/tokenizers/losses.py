"""Training losses and image metrics shared by the zoo's trainable tokenizers.

* :class:`TokenizerLoss`: reconstruction (L1 + L2, optional image-gradient L1: no pretrained network needed)
  + the tokenizer's own auxiliary loss (quantiser or KL) + an optional hinge adversarial loss with a
  :class:`~hma_zoo.tokenizers.nets.PatchDiscriminator` (off by default: ``adv_weight=0``).
* :func:`psnr`, :func:`ssim`, :func:`codebook_usage`: evaluation on images in ``[-1, 1]`` / ids.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from hma_zoo.tokenizers.nets import PatchDiscriminator


class TokenizerOutput(NamedTuple):
    """What a trainable tokenizer's ``forward(images)`` returns.

    ``recon``: ``[N, 3, H, W]`` reconstruction; ``aux_loss``: scalar (quantiser / KL term, already weighted);
    ``tokens``: ids ``[N, h, w]`` (vq) or unscaled latents ``[N, h, w, c]`` (kl).
    """

    recon: torch.Tensor
    aux_loss: torch.Tensor
    tokens: torch.Tensor


def image_gradient_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between the finite-difference gradients of ``x`` and ``y`` (``[N, C, H, W]``): sharpens edges."""
    dx = (x[..., :, 1:] - x[..., :, :-1]) - (y[..., :, 1:] - y[..., :, :-1])
    dy = (x[..., 1:, :] - x[..., :-1, :]) - (y[..., 1:, :] - y[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


class TokenizerLoss(nn.Module):
    """Generator and discriminator losses of tokenizer training.

    Args:
        l1_weight, l2_weight, grad_weight: weights of the L1, L2 and image-gradient L1 reconstruction terms.
        adv_weight: weight of the generator's hinge adversarial term; ``0`` builds no discriminator.
        adv_start_step: step from which the adversarial terms are used (the autoencoder warms up first).
        disc_width: width of the patch discriminator.
    """

    def __init__(
        self,
        l1_weight: float = 1.0,
        l2_weight: float = 1.0,
        grad_weight: float = 0.0,
        adv_weight: float = 0.0,
        adv_start_step: int = 2000,
        disc_width: int = 32,
    ) -> None:
        super().__init__()
        self.l1_weight, self.l2_weight, self.grad_weight = l1_weight, l2_weight, grad_weight
        self.adv_weight, self.adv_start_step = adv_weight, adv_start_step
        self.discriminator = PatchDiscriminator(disc_width) if adv_weight > 0 else None

    def adversarial_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.adv_start_step

    def generator_loss(
        self, images: torch.Tensor, out: TokenizerOutput, step: int = 0, pixel_weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total autoencoder loss for ``images [N, 3, H, W]`` and its parts (detached) for logging.

        ``pixel_weight`` ``[N, 1, H, W]`` (optional, >= 0): the L1 and L2 terms become weighted means over pixels,
        e.g. to up-weight the pixels that move between frames (:func:`hma_zoo.tokenizers.train.motion_masks`);
        the logged ``l1`` / ``l2`` stay the plain means so runs with and without weights compare.
        """
        recon = out.recon
        parts: dict[str, torch.Tensor] = {}
        loss = out.aux_loss
        parts["aux"] = out.aux_loss.detach()
        if pixel_weight is not None:
            w = pixel_weight.to(recon.dtype).expand_as(recon)
            norm = w.sum().clamp_min(1e-8)
        if self.l1_weight:
            parts["l1"] = F.l1_loss(recon, images)
            term = (w * (recon - images).abs()).sum() / norm if pixel_weight is not None else parts["l1"]
            loss = loss + self.l1_weight * term
        if self.l2_weight:
            parts["l2"] = F.mse_loss(recon, images)
            term = (w * (recon - images).square()).sum() / norm if pixel_weight is not None else parts["l2"]
            loss = loss + self.l2_weight * term
        if self.grad_weight:
            parts["grad"] = image_gradient_l1(recon, images)
            loss = loss + self.grad_weight * parts["grad"]
        if self.adversarial_active(step):
            assert self.discriminator is not None
            parts["g_adv"] = -self.discriminator(recon).mean()
            loss = loss + self.adv_weight * parts["g_adv"]
        parts = {k: v.detach() for k, v in parts.items()}
        return loss, parts

    def discriminator_loss(self, images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Hinge loss of the patch discriminator (real ``images`` vs detached ``recon``)."""
        if self.discriminator is None:
            raise RuntimeError("no discriminator: build TokenizerLoss with adv_weight > 0 to train one")
        real = self.discriminator(images)
        fake = self.discriminator(recon.detach())
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, sigma 1.5) of images ``[N, 3, H, W]`` in ``[-1, 1]``."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a = (x.float().clamp(-1, 1) + 1) / 2
    b = (y.float().clamp(-1, 1) + 1) / 2
    return structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")


def codebook_usage(counts: torch.Tensor) -> dict[str, float]:
    """Usage statistics from id counts ``[vocab]``: fraction of ids used, perplexity, perplexity / vocab."""
    total = counts.sum().clamp_min(1).float()
    p = counts.float() / total
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    vocab = counts.numel()
    return {
        "usage": float((counts > 0).float().mean()),
        "perplexity": float(ent.exp()),
        "perplexity_frac": float(ent.exp() / vocab),
        "tokens_seen": float(total),
    }
