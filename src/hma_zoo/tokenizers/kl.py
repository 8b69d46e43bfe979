"""Continuous tokenizer: a KL-regularised convolutional autoencoder (as in latent diffusion, Rombach et al. 2022).

``KLTokenizer`` encodes 64x64 frames to latents ``[B, T, 8, 8, c]`` (the posterior mean, times ``spec.scale``);
:meth:`KLTokenizer.fit_scale` sets the scale to ``1 / std`` of the latents over a data sample so the world model's
diffusion head sees roughly unit-variance tokens.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from einops import rearrange

from hma_zoo.tokenizers.base import Tokenizer, TokenizerSpec
from hma_zoo.tokenizers.losses import TokenizerOutput
from hma_zoo.tokenizers.nets import Decoder, Encoder, downsample_factor

log = logging.getLogger(__name__)


class KLTokenizer(Tokenizer):
    """Frames -> latents ``[B, T, h, w, c]`` and back.

    Args:
        image_size: ``(H, W)`` of the frames.
        latent_channels: channels ``c`` per latent position.
        channels, num_res_blocks, patch_size: encoder/decoder shape (see :class:`hma_zoo.tokenizers.nets.Encoder`).
        scale: latent scale factor (``1.0`` until :meth:`fit_scale` is called).
        kl_weight: weight of the KL divergence to N(0, I) (mean over elements) in the training loss.
        logvar_clamp: posterior log-variance is clamped to ``[-logvar_clamp, logvar_clamp / 1.5]``.
        name: registry name this tokenizer was built from (provenance only).
    """

    hub_kind = "tokenizer"

    def __init__(
        self,
        image_size: tuple[int, int] = (64, 64),
        latent_channels: int = 4,
        channels: tuple[int, ...] = (64, 128),
        num_res_blocks: int = 1,
        patch_size: int = 4,
        scale: float = 1.0,
        kl_weight: float = 1e-6,
        logvar_clamp: float = 30.0,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if latent_channels < 1:
            raise ValueError(f"latent_channels must be >= 1, got {latent_channels}")
        self.name = name
        self.kl_weight = kl_weight
        self.logvar_clamp = logvar_clamp
        self._arch: dict[str, Any] = {
            "image_size": [int(s) for s in image_size],
            "latent_channels": int(latent_channels),
            "channels": [int(c) for c in channels],
            "num_res_blocks": int(num_res_blocks),
            "patch_size": int(patch_size),
            "kl_weight": float(kl_weight),
            "logvar_clamp": float(logvar_clamp),
            "name": name,
        }
        self.spec = TokenizerSpec(
            kind="kl",
            image_size=tuple(image_size),
            downsample=downsample_factor(patch_size, tuple(channels)),
            latent_channels=latent_channels,
            scale=float(scale),
        )
        self.encoder = Encoder(tuple(channels), num_res_blocks, 2 * latent_channels, patch_size)
        self.decoder = Decoder(tuple(channels), num_res_blocks, latent_channels, patch_size)

    def arch_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments, including the current ``scale``."""
        return {**self._arch, "scale": float(self.spec.scale)}

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[N, 3, H, W]`` -> posterior mean and log-variance, each ``[N, c, h, w]`` (unscaled)."""
        mean, logvar = self.encoder(images).chunk(2, dim=1)
        return mean, logvar.clamp(-self.logvar_clamp, self.logvar_clamp / 1.5)

    def forward(self, images: torch.Tensor, sample: bool = True) -> TokenizerOutput:
        """Training pass: -> reconstruction, weighted KL loss, unscaled latents ``[N, h, w, c]``."""
        mean, logvar = self.posterior(images)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return TokenizerOutput(self.decoder(z), self.kl_weight * kl, rearrange(z, "n c h w -> n h w c"))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> scaled posterior means ``[N, h, w, c]``."""
        mean, _ = self.posterior(images)
        return rearrange(mean, "n c h w -> n h w c") * self.spec.scale

    def decode_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[N, h, w, c]`` -> images ``[N, 3, H, W]``."""
        if not tokens.is_floating_point():
            raise TypeError(f"{type(self).__name__} decodes float latents [N, h, w, c], got {tokens.dtype}")
        if tuple(tokens.shape[1:]) != (*self.spec.grid, self.spec.latent_channels):
            raise ValueError(
                f"latents have shape {tuple(tokens.shape[1:])} per image, expected "
                f"{(*self.spec.grid, self.spec.latent_channels)} (h, w, c)"
            )
        z = rearrange(tokens.float(), "n h w c -> n c h w") / self.spec.scale
        return self.decoder(z)

    @torch.no_grad()
    def fit_scale(self, frames: torch.Tensor, batch_size: int = 256) -> float:
        """Set ``spec.scale = 1 / std`` of the unscaled latents of ``frames`` and return it.

        Args:
            frames: uint8 ``[B, T, H, W, 3]`` or ``[N, H, W, 3]``, a representative data sample.
            batch_size: images encoded at a time.
        """
        if frames.ndim == 4:
            frames = frames.unsqueeze(1)
        self._check_frames(frames)
        was_training = self.training
        self.eval()
        images = frames.flatten(0, 1)
        device = next(self.parameters()).device
        means = []
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
            means.append(self.posterior(x)[0].flatten())
        std = float(torch.cat(means).std())
        self.train(was_training)
        if not std > 0:
            raise ValueError("latents have zero variance on this sample; is the encoder trained and the data varied?")
        self.spec = dataclasses.replace(self.spec, scale=1.0 / std)
        log.info("fit_scale: latent std %.4f over %d images -> scale %.4f", std, images.shape[0], self.spec.scale)
        return self.spec.scale
