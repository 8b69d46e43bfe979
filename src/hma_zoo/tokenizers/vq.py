"""Discrete tokenizer: convolutional autoencoder + lookup-free quantiser (FSQ or LFQ), ids on a factorised vocab.

``VQTokenizer`` turns 64x64 frames into an 8x8 grid of ids (f8) in ``[0, vocab_size)``; an id is the mixed-radix
number of its factors, first factor least significant (see :mod:`hma_zoo.tokenizers.quantizers`), matching
:class:`hma_zoo.configs.TokenSpec` and the world model's factorised embedding.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from einops import rearrange

from hma_zoo.tokenizers.base import Tokenizer, TokenizerSpec
from hma_zoo.tokenizers.losses import TokenizerOutput
from hma_zoo.tokenizers.nets import Decoder, Encoder, downsample_factor
from hma_zoo.tokenizers.quantizers import FSQ, LFQ, default_factor_sizes, default_levels


class VQTokenizer(Tokenizer):
    """Frames -> ids ``[B, T, h, w]`` and back.

    Args:
        image_size: ``(H, W)`` of the frames.
        vocab_size: number of ids (a power of two from 2^10 to 2^18 in the registry; any product of levels works).
        factor_sizes: vocabulary factorisation (default: two powers of two, e.g. 2^18 -> (512, 512)).
        levels: FSQ levels per dimension, grouped consecutively into the factors (default:
            :func:`~hma_zoo.tokenizers.quantizers.default_levels`). Ignored by LFQ (one bit per dimension).
        quantizer: ``"fsq"`` (default, no auxiliary loss) or ``"lfq"`` (entropy + commitment loss).
        channels: encoder/decoder widths per resolution (finest first).
        num_res_blocks: residual blocks per resolution.
        patch_size: space-to-depth factor of the stem; downsampling is ``patch_size * 2 ** (len(channels) - 1)``.
        lfq_entropy_weight, lfq_commit_weight: LFQ loss weights.
        name: registry name this tokenizer was built from (provenance only).
    """

    hub_kind = "tokenizer"

    def __init__(
        self,
        image_size: tuple[int, int] = (64, 64),
        vocab_size: int = 1024,
        factor_sizes: tuple[int, ...] | None = None,
        levels: tuple[int, ...] | None = None,
        quantizer: Literal["fsq", "lfq"] = "fsq",
        channels: tuple[int, ...] = (64, 128),
        num_res_blocks: int = 1,
        patch_size: int = 4,
        lfq_entropy_weight: float = 0.1,
        lfq_commit_weight: float = 0.25,
        name: str | None = None,
    ) -> None:
        super().__init__()
        factor_sizes = tuple(factor_sizes) if factor_sizes is not None else default_factor_sizes(vocab_size)
        if math.prod(factor_sizes) != vocab_size:
            raise ValueError(f"factor_sizes {factor_sizes} multiply to {math.prod(factor_sizes)}, not {vocab_size}")
        if quantizer == "fsq":
            levels = tuple(levels) if levels is not None else default_levels(factor_sizes)
            self.quantizer: FSQ | LFQ = FSQ(levels, factor_sizes)
        elif quantizer == "lfq":
            self.quantizer = LFQ(factor_sizes, entropy_weight=lfq_entropy_weight, commit_weight=lfq_commit_weight)
            levels = self.quantizer.levels
        else:
            raise ValueError(f"quantizer must be 'fsq' or 'lfq', got {quantizer!r}")
        self._arch: dict[str, Any] = {
            "image_size": [int(s) for s in image_size],
            "vocab_size": int(vocab_size),
            "factor_sizes": list(factor_sizes),
            "levels": list(levels),
            "quantizer": quantizer,
            "channels": [int(c) for c in channels],
            "num_res_blocks": int(num_res_blocks),
            "patch_size": int(patch_size),
            "lfq_entropy_weight": float(lfq_entropy_weight),
            "lfq_commit_weight": float(lfq_commit_weight),
            "name": name,
        }
        self.name = name
        self.spec = TokenizerSpec(
            kind="vq",
            image_size=tuple(image_size),
            downsample=downsample_factor(patch_size, tuple(channels)),
            vocab_size=vocab_size,
            factor_sizes=factor_sizes,
        )
        dim = self.quantizer.dim
        self.encoder = Encoder(tuple(channels), num_res_blocks, dim, patch_size)
        self.decoder = Decoder(tuple(channels), num_res_blocks, dim, patch_size)

    def arch_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (what the hub stores)."""
        return dict(self._arch)

    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        """Training pass: images ``[N, 3, H, W]`` in [-1, 1] -> reconstruction, quantiser loss, ids ``[N, h, w]``."""
        z = rearrange(self.encoder(images), "n d h w -> n h w d")
        q = self.quantizer(z)
        recon = self.decoder(rearrange(q.codes, "n h w d -> n d h w"))
        return TokenizerOutput(recon, q.loss, q.ids)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> ids int64 ``[N, h, w]``."""
        z = rearrange(self.encoder(images), "n d h w -> n h w d")
        return self.quantizer(z).ids

    def decode_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """Ids ``[N, h, w]`` -> images ``[N, 3, H, W]`` (approximately in [-1, 1])."""
        if tokens.is_floating_point():
            raise TypeError(f"{type(self).__name__} decodes integer ids [N, h, w], got a float tensor")
        if tuple(tokens.shape[-2:]) != self.spec.grid:
            raise ValueError(f"ids have grid {tuple(tokens.shape[-2:])}, this tokenizer's grid is {self.spec.grid}")
        codes = self.quantizer.ids_to_codes(tokens.to(self.quantizer._basis.device))
        return self.decoder(rearrange(codes, "n h w d -> n d h w"))

    def factor_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[...]`` -> per-factor ids ``[..., len(factor_sizes)]`` (first factor least significant)."""
        return self.quantizer.factor_ids(ids)
