"""Synthetic data helpers of the tokenizer tests."""

from __future__ import annotations

import torch


def smooth_images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """``n`` smooth synthetic images ``[n, 3, size, size]`` in [-1, 1] (learnable by a tiny autoencoder)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        a, b, c = (torch.rand(3, generator=g) * 4 - 2).tolist()
        out.append(torch.stack([torch.sin(a * xx + b), torch.cos(b * yy - c), torch.tanh(c * xx * yy + a)]))
    return torch.stack(out).clamp(-1, 1)


def to_frames(images: torch.Tensor) -> torch.Tensor:
    """Images ``[N, 3, H, W]`` in [-1, 1] -> uint8 frames ``[1, N, H, W, 3]``."""
    return images.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).unsqueeze(0)
