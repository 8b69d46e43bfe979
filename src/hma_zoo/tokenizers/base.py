"""The tokenizer interface shared by every video tokenizer of the zoo (trained here or external).

A tokenizer turns uint8 frames ``[B, T, H, W, 3]`` into per-frame tokens and back:

* discrete (``kind="vq"``): ids ``int64 [B, T, h, w]`` in ``[0, vocab_size)``;
* continuous (``kind="kl"``): latents ``float32 [B, T, h, w, c]``, already multiplied by ``scale`` so that they
  have roughly unit variance.

Its :class:`TokenizerSpec` tells the world model what to expect; :meth:`TokenizerSpec.token_spec` converts it to
the :class:`hma_zoo.configs.TokenSpec` a world model is built with, and
:func:`check_compatible` fails with a clear message when a tokenizer and a world model do not fit.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from hma_zoo.configs import TokenSpec
from hma_zoo.hub import ZooHubMixin


@dataclass(frozen=True)
class TokenizerSpec:
    """Contract of a tokenizer.

    Args:
        kind: ``"vq"`` (discrete ids) or ``"kl"`` (continuous latents).
        image_size: ``(H, W)`` of the frames it takes.
        downsample: spatial downsampling factor; the grid is ``(H // downsample, W // downsample)``.
        vocab_size: number of ids (``vq``).
        factor_sizes: factorisation of the vocabulary matching the world model's factorised embedding
            (``vq``); the product must equal ``vocab_size``.
        latent_channels: channels per latent position (``kl``).
        scale: factor the latents are multiplied by after encoding (``kl``; computed from data).
    """

    kind: Literal["vq", "kl"]
    image_size: tuple[int, int] = (64, 64)
    downsample: int = 8
    vocab_size: int = 1024
    factor_sizes: tuple[int, ...] = (32, 32)
    latent_channels: int = 4
    scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        object.__setattr__(self, "factor_sizes", tuple(int(s) for s in self.factor_sizes))
        if self.kind not in ("vq", "kl"):
            raise ValueError(f"TokenizerSpec.kind must be 'vq' or 'kl', got {self.kind!r}")
        if self.image_size[0] % self.downsample or self.image_size[1] % self.downsample:
            raise ValueError(f"image_size {self.image_size} is not divisible by downsample {self.downsample}")
        if self.kind == "vq" and math.prod(self.factor_sizes) != self.vocab_size:
            raise ValueError(
                f"factor_sizes {self.factor_sizes} multiply to {math.prod(self.factor_sizes)}, not {self.vocab_size}"
            )

    @property
    def grid(self) -> tuple[int, int]:
        return (self.image_size[0] // self.downsample, self.image_size[1] // self.downsample)

    def token_spec(self, patch_size: int = 1) -> TokenSpec:
        """The world-model :class:`TokenSpec` that consumes this tokenizer's output (``patch_size``: ``p x p``
        tokens per trunk token)."""
        if self.kind == "vq":
            return TokenSpec(kind="vq", grid=self.grid, vocab_size=self.vocab_size, factor_sizes=self.factor_sizes,
                             patch_size=patch_size)
        return TokenSpec(kind="mar", grid=self.grid, latent_channels=self.latent_channels, patch_size=patch_size,
                         vocab_size=1, factor_sizes=(1,))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_compatible(tokenizer_spec: TokenizerSpec, token_spec: TokenSpec) -> None:
    """Raise ``ValueError`` naming every mismatch between a tokenizer and a world model's tokens."""
    problems = []
    want_kind = "vq" if tokenizer_spec.kind == "vq" else "mar"
    if token_spec.kind != want_kind:
        problems.append(f"token family: tokenizer gives {tokenizer_spec.kind!r}, model expects {token_spec.kind!r}")
    if tuple(token_spec.grid) != tokenizer_spec.grid:
        problems.append(f"grid: tokenizer gives {tokenizer_spec.grid}, model expects {tuple(token_spec.grid)}")
    if want_kind == "vq" and token_spec.kind == "vq":
        if token_spec.vocab_size != tokenizer_spec.vocab_size:
            problems.append(f"vocab: tokenizer {tokenizer_spec.vocab_size}, model {token_spec.vocab_size}")
        elif tuple(token_spec.factor_sizes) != tokenizer_spec.factor_sizes:
            problems.append(
                f"factorisation: tokenizer {tokenizer_spec.factor_sizes}, model {tuple(token_spec.factor_sizes)}"
            )
    if want_kind == "mar" and token_spec.kind == "mar" and token_spec.latent_channels != tokenizer_spec.latent_channels:
        problems.append(
            f"latent channels: tokenizer {tokenizer_spec.latent_channels}, model {token_spec.latent_channels}"
        )
    if problems:
        raise ValueError(
            "tokenizer and world model do not fit: " + "; ".join(problems)
            + ". Build the model with tokens=tokenizer.spec.token_spec() or pick a matching tokenizer."
        )


class Tokenizer(nn.Module, ZooHubMixin, ABC):
    """Base class: ``encode`` uint8 frames to tokens, ``decode`` tokens to uint8 frames.

    Subclasses set ``self.spec`` and implement :meth:`encode_images` / :meth:`decode_images` on float images
    in ``[-1, 1]`` of shape ``[N, 3, H, W]``; the frame-level plumbing (uint8, time axis) lives here.
    ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` come from huggingface_hub's mixin
    (:class:`hma_zoo.hub.ZooHubMixin`), in the zoo's format.
    """

    spec: TokenizerSpec
    hub_kind = "tokenizer"

    @abstractmethod
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> ids ``[N, h, w]`` or latents ``[N, h, w, c]`` (scaled)."""

    @abstractmethod
    def decode_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode_images`: -> ``[N, 3, H, W]`` in [-1, 1]."""

    def _check_frames(self, frames: torch.Tensor) -> None:
        if frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [B, T, H, W, 3], got shape {tuple(frames.shape)}")
        if tuple(frames.shape[2:4]) != self.spec.image_size:
            raise ValueError(
                f"frames are {tuple(frames.shape[2:4])} but this tokenizer takes {self.spec.image_size}; "
                "resize the data or pick a tokenizer of that size"
            )

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, T, H, W, 3]`` -> ids ``[B, T, h, w]`` or latents ``[B, T, h, w, c]``."""
        self._check_frames(frames)
        b, t = frames.shape[:2]
        param = next(self.parameters(), None)
        device = param.device if param is not None else frames.device
        x = frames.to(device).flatten(0, 1).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        tokens = self.encode_images(x)
        return tokens.reshape(b, t, *tokens.shape[1:])

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Ids ``[B, T, h, w]`` or latents ``[B, T, h, w, c]`` -> uint8 frames ``[B, T, H, W, 3]``."""
        b, t = tokens.shape[:2]
        x = self.decode_images(tokens.flatten(0, 1))
        x = x.clamp(-1, 1).add(1.0).mul(127.5).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1).reshape(b, t, *x.shape[2:], 3)
