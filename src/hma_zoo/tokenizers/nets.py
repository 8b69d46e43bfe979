"""Convolutional building blocks of the zoo's own tokenizers: encoder, decoder and a patch discriminator.

Small on purpose (CPU-trainable): a space-to-depth stem (``PixelUnshuffle(patch_size)``, which removes the costly
full-resolution convolutions), then residual blocks at ``len(channels)`` resolutions with a stride-2 convolution
between them, so the downsampling factor is ``patch_size * 2 ** (len(channels) - 1)``. The decoder mirrors it and
ends in ``PixelShuffle(patch_size)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    groups = 8 if channels % 8 == 0 else 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock(nn.Module):
    """Pre-norm residual block: ``[N, C_in, H, W] -> [N, C_out, H, W]``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


def downsample_factor(patch_size: int, channels: tuple[int, ...]) -> int:
    """Spatial downsampling of an :class:`Encoder` built with these arguments."""
    return patch_size * 2 ** (len(channels) - 1)


class Encoder(nn.Module):
    """Images ``[N, 3, H, W]`` in [-1, 1] -> features ``[N, out_channels, H / f, W / f]``.

    Args:
        channels: width at each resolution, finest first, e.g. ``(64, 128, 128)``.
        num_res_blocks: residual blocks per resolution.
        out_channels: channels of the output map (quantiser dims, or ``2 * latent`` for a KL encoder).
        patch_size: space-to-depth factor of the stem; ``f = patch_size * 2 ** (len(channels) - 1)``.
    """

    def __init__(self, channels: tuple[int, ...], num_res_blocks: int, out_channels: int, patch_size: int = 2) -> None:
        super().__init__()
        self.stem = nn.PixelUnshuffle(patch_size)
        self.conv_in = nn.Conv2d(3 * patch_size**2, channels[0], 3, padding=1)
        blocks: list[nn.Module] = []
        c = channels[0]
        for i, width in enumerate(channels):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(c, width))
                c = width
            if i < len(channels) - 1:
                blocks.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        blocks.append(ResBlock(c, c))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(self.stem(x))))))


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 convolution: ``[N, C, H, W] -> [N, C, 2H, 2W]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """Latents ``[N, in_channels, h, w]`` -> images ``[N, 3, h * f, w * f]`` (unbounded; ~[-1, 1] after training).

    Mirrors :class:`Encoder` (same ``channels`` and ``patch_size``, coarsest resolution first on the way up).
    """

    def __init__(self, channels: tuple[int, ...], num_res_blocks: int, in_channels: int, patch_size: int = 2) -> None:
        super().__init__()
        c = channels[-1]
        self.conv_in = nn.Conv2d(in_channels, c, 3, padding=1)
        blocks: list[nn.Module] = [ResBlock(c, c)]
        for i, width in reversed(list(enumerate(channels))):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(c, width))
                c = width
            if i > 0:
                blocks.append(Upsample(c))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, 3 * patch_size**2, 3, padding=1)
        self.unstem = nn.PixelShuffle(patch_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.unstem(self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(z))))))


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017): ``[N, 3, H, W] -> logits [N, 1, H / 8, W / 8]``.

    Used only when the adversarial loss is switched on (``adv_weight > 0``).
    """

    def __init__(self, width: int = 32, num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(num_layers - 1):
            layers += [nn.Conv2d(c, c * 2, 4, stride=2, padding=1), _norm(c * 2), nn.LeakyReLU(0.2)]
            c *= 2
        layers.append(nn.Conv2d(c, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
