"""Stems: what turns video tokens and per-embodiment actions into trunk tokens.

* :class:`FactorizedEmbedding` (``vq``): an id is split into its mixed-radix factors (first factor least
  significant, e.g. 2^18 ids as 512 x 512) and embedded as the sum of one table per factor.
* :class:`PatchEmbed` (``mar``): continuous latents are patchified ``p x p`` and projected linearly.
* :class:`ActionStems`: one small MLP per embodiment over its normalised action chunk; a mixed batch is routed
  sample by sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hma_zoo.configs import EmbodimentSpec


def factorize_ids(ids: torch.Tensor, factor_sizes: Sequence[int]) -> torch.Tensor:
    """Ids ``[...]`` -> factor digits ``[..., F]`` (first factor least significant)."""
    digits = []
    rest = ids
    for size in factor_sizes:
        digits.append(rest % size)
        rest = torch.div(rest, size, rounding_mode="floor")
    return torch.stack(digits, dim=-1)


def unfactorize_ids(digits: torch.Tensor, factor_sizes: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`factorize_ids`: digits ``[..., F]`` -> ids ``[...]``."""
    ids = torch.zeros_like(digits[..., 0])
    mult = 1
    for i, size in enumerate(factor_sizes):
        ids = ids + digits[..., i] * mult
        mult *= size
    return ids


class FactorizedEmbedding(nn.Module):
    """Embed ids ``[...]`` -> ``[..., D]`` as the sum of per-factor embeddings.

    With ``group = G > 1`` the input is ``[..., G]`` (the ``p x p`` ids of one trunk token, row-major): each id is
    embedded, the ``G`` embeddings are concatenated and projected to ``D``, so the trunk token knows which id sits
    where in its patch.
    """

    def __init__(self, factor_sizes: Sequence[int], dim: int, group: int = 1) -> None:
        super().__init__()
        self.factor_sizes = tuple(factor_sizes)
        self.group = int(group)
        self.tables = nn.ModuleList(nn.Embedding(size, dim) for size in self.factor_sizes)
        for table in self.tables:
            nn.init.normal_(table.weight, std=0.02)
        self.merge = nn.Linear(self.group * dim, dim, bias=False) if self.group > 1 else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.merge is not None and ids.shape[-1] != self.group:
            raise ValueError(f"grouped ids must end in a dimension of {self.group}, got {tuple(ids.shape)}")
        digits = factorize_ids(ids, self.factor_sizes)
        out = self.tables[0](digits[..., 0])
        for i in range(1, len(self.tables)):
            out = out + self.tables[i](digits[..., i])
        if self.merge is not None:
            out = self.merge(out.flatten(-2))
        return out


class PatchEmbed(nn.Module):
    """Latents ``[B, T, h, w, c]`` -> tokens ``[B, T, (h/p)(w/p), D]`` (no bias, as in the paper)."""

    def __init__(self, channels: int, patch: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(channels * patch * patch, dim, bias=False)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, h, w, c]`` -> ``[B, T, S, c*p*p]``."""
        p = self.patch
        return rearrange(x, "b t (h p1) (w p2) c -> b t (h w) (p1 p2 c)", p1=p, p2=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.patchify(x))


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int], patch: int) -> torch.Tensor:
    """``[B, T, S, c*p*p]`` -> latents ``[B, T, h, w, c]`` for a latent ``grid`` ``(h, w)``."""
    h, w = grid[0] // patch, grid[1] // patch
    return rearrange(tokens, "b t (h w) (p1 p2 c) -> b t (h p1) (w p2) c", h=h, w=w, p1=patch, p2=patch)


class ActionNorm(nn.Module):
    """One embodiment's action statistics (buffers, saved with the weights) and (un)normalisation of chunks.

    ``std`` is clamped at 1e-6 so a constant action dimension normalises to 0 instead of dividing by zero.
    Chunks may be zero-padded past ``chunk_dim``: the padding is returned as zeros.
    """

    def __init__(self, spec: EmbodimentSpec) -> None:
        super().__init__()
        self.chunk = spec.chunk_dim
        mean = torch.tensor(spec.action_mean or (0.0,) * spec.action_dim, dtype=torch.float32)
        std = torch.tensor(spec.action_std or (1.0,) * spec.action_dim, dtype=torch.float32)
        self.register_buffer("mean", mean.repeat(spec.stride))
        self.register_buffer("std", std.clamp_min(1e-6).repeat(spec.stride))

    def normalize(self, chunk: torch.Tensor) -> torch.Tensor:
        """Raw ``[..., A_max]`` (first ``chunk_dim`` used) -> normalised ``[..., A_max]``, zero padding kept."""
        x = (chunk[..., : self.chunk] - self.mean.to(chunk.dtype)) / self.std.to(chunk.dtype)
        return F.pad(x, (0, chunk.shape[-1] - self.chunk))

    def unnormalize(self, chunk: torch.Tensor) -> torch.Tensor:
        """Normalised ``[..., A_max]`` -> raw ``[..., A_max]``, zero padding kept."""
        x = chunk[..., : self.chunk] * self.std.to(chunk.dtype) + self.mean.to(chunk.dtype)
        return F.pad(x, (0, chunk.shape[-1] - self.chunk))


class ActionStem(nn.Module):
    """One embodiment's stem over its normalised chunk: ``Linear(chunk, H) -> LayerNorm -> SiLU -> Linear(H, D)``."""

    def __init__(self, spec: EmbodimentSpec, dim: int, hidden: int) -> None:
        super().__init__()
        self.chunk = spec.chunk_dim
        self.net = nn.Sequential(nn.Linear(self.chunk, hidden), nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, chunk: torch.Tensor) -> torch.Tensor:
        """Normalised ``[..., A_max]`` (first ``chunk_dim`` used) -> embedding ``[..., D]``."""
        return self.net(chunk[..., : self.chunk])


def route(
    modules: nn.ModuleList,
    emb_idx: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    out_shape: Sequence[int],
    call: str | None = None,
) -> torch.Tensor:
    """Apply ``modules[e]`` to the rows of ``inputs`` whose ``emb_idx == e``, for every embodiment in the batch.

    Args:
        modules: one module per embodiment, in config order.
        emb_idx: ``[B]`` embodiment index of each sample.
        inputs: tensors ``[B, ...]``; each module receives its rows of every one (it slices its own widths).
        out_shape: shape of one sample's output (without the batch axis).
        call: name of the method to call instead of ``forward``.

    Returns:
        ``[B, *out_shape]`` outputs, each row produced by its own embodiment's module.
    """
    out = inputs[0].new_zeros(inputs[0].shape[0], *out_shape)
    for e in torch.unique(emb_idx).tolist():
        rows = (emb_idx == e).nonzero(as_tuple=True)[0]
        fn = getattr(modules[e], call) if call else modules[e]
        result = fn(*(x.index_select(0, rows) for x in inputs))
        out = out.index_copy(0, rows, result.to(out.dtype))
    return out
