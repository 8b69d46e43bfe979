"""Lookup-free quantisers whose ids follow the world model's factorised vocabulary.

Both quantisers map a vector of ``D`` scalars to one digit per dimension and read the digits as a mixed-radix
number with the **first dimension least significant**: ``id = d_0 + L_0 * (d_1 + L_1 * (d_2 + ...))``.
The dimensions are grouped, in order, into the vocabulary factors of :class:`hma_zoo.configs.TokenSpec`
(``factor_sizes``; ``prod(levels of group k) == factor_sizes[k]``), so factor ``k`` of an id
(``(id // prod(factor_sizes[:k])) % factor_sizes[k]``) depends only on the dimensions of group ``k``: the world
model's factorised embedding sees exactly the quantiser's channel groups.

* :class:`FSQ`: finite scalar quantisation (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made
  Simple"): bound each dimension with a shifted ``tanh`` to ``L`` levels and round (straight-through). No
  auxiliary loss. The quantisation itself is ``vector_quantize_pytorch.FSQ``; this class adds the ids.
* :class:`LFQ`: lookup-free quantisation (Yu et al. 2023, MAGVIT-v2): each dimension is a sign bit, with an
  entropy penalty (per-sample entropy down, batch entropy up) computed per factor group, so that even a 2^18
  vocabulary only needs softmaxes over at most ``max(factor_sizes)`` codes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def default_factor_sizes(vocab_size: int) -> tuple[int, int]:
    """Two power-of-two factors for a power-of-two vocabulary, larger first: 2^10 -> (32, 32), 2^11 -> (64, 32)."""
    k = round(math.log2(vocab_size)) if vocab_size > 0 else -1
    if k < 2 or 2**k != vocab_size:
        raise ValueError(
            f"vocab_size {vocab_size} is not a power of two >= 4; pass factor_sizes and levels explicitly "
            "(their products must equal the vocabulary)"
        )
    return (2 ** ((k + 1) // 2), 2 ** (k // 2))


def default_levels(factor_sizes: tuple[int, ...], lfq: bool = False) -> tuple[int, ...]:
    """Quantiser levels per dimension for power-of-two factors, grouped factor by factor.

    FSQ avoids 2-level dimensions (their bounded range has a vanishing gradient): each factor ``2^k`` becomes
    as many 8s as fit, with a remainder of 4 (or two 4s instead of ``8, 2``): 32 -> (8, 4), 512 -> (8, 8, 8),
    128 -> (8, 4, 4). LFQ uses one 2-level dimension per bit.
    """
    levels: list[int] = []
    for f in factor_sizes:
        k = round(math.log2(f)) if f > 0 else -1
        if k < 1 or 2**k != f:
            raise ValueError(f"factor size {f} is not a power of two; pass levels explicitly")
        if lfq:
            levels += [2] * k
            continue
        group = [8] * (k // 3)
        rem = k % 3
        if rem == 2:
            group.append(4)
        elif rem == 1:
            group = group[:-1] + [4, 4] if group else [2]
        levels += group
    return tuple(levels)


def group_levels(levels: tuple[int, ...], factor_sizes: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Split ``levels`` into consecutive groups whose products are ``factor_sizes``; raise if impossible."""
    groups: list[tuple[int, ...]] = []
    i = 0
    for f in factor_sizes:
        prod, start = 1, i
        while i < len(levels) and prod < f:
            prod *= levels[i]
            i += 1
        if prod != f:
            raise ValueError(
                f"levels {tuple(levels)} cannot be grouped into factors {tuple(factor_sizes)}: consecutive levels "
                f"from dimension {start} multiply to {prod}, not {f}. Choose levels whose consecutive products are "
                "the factor sizes (first factor first), e.g. default_levels(factor_sizes)"
            )
        groups.append(tuple(levels[start:i]))
    if i != len(levels):
        raise ValueError(f"levels {tuple(levels)} have {len(levels) - i} dimensions left after factors {factor_sizes}")
    return tuple(groups)


class QuantizerOutput(NamedTuple):
    """``codes``: quantised values ``[..., D]`` (straight-through gradients); ``ids``: int64 ``[...]``;
    ``loss``: scalar auxiliary loss (0 for FSQ)."""

    codes: torch.Tensor
    ids: torch.Tensor
    loss: torch.Tensor


class _MixedRadix(nn.Module):
    """Shared digit <-> id arithmetic (first dimension least significant)."""

    def __init__(self, levels: tuple[int, ...], factor_sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.levels = tuple(int(v) for v in levels)
        self.factor_sizes = tuple(int(f) for f in factor_sizes)
        self.groups = group_levels(self.levels, self.factor_sizes)
        self.vocab_size = math.prod(self.levels)
        basis = [1]
        for v in self.levels[:-1]:
            basis.append(basis[-1] * v)
        self.register_buffer("_levels", torch.tensor(self.levels, dtype=torch.long), persistent=False)
        self.register_buffer("_basis", torch.tensor(basis, dtype=torch.long), persistent=False)

    @property
    def dim(self) -> int:
        return len(self.levels)

    def digits_to_ids(self, digits: torch.Tensor) -> torch.Tensor:
        """Digits ``[..., D]`` (``0 <= d_i < L_i``) -> ids ``[...]``."""
        return (digits.long() * self._basis).sum(-1)

    def ids_to_digits(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[...]`` -> digits ``[..., D]``; raises on ids outside ``[0, vocab_size)``."""
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {self.vocab_size}), got range [{int(ids.min())}, {int(ids.max())}]; "
                "were they produced by a tokenizer with a different vocabulary (or do they contain the mask id)?"
            )
        return (ids.long().unsqueeze(-1) // self._basis) % self._levels

    def factor_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[...]`` -> per-factor ids ``[..., n_factors]`` (the world model's factorised embedding input)."""
        out, div = [], 1
        for f in self.factor_sizes:
            out.append((ids // div) % f)
            div *= f
        return torch.stack(out, -1)


class FSQ(_MixedRadix):
    """Finite scalar quantisation: ``z [..., D] -> codes [..., D]`` in ``[-1, 1]`` and ids ``[...]``.

    A thin wrapper of ``vector_quantize_pytorch.FSQ`` (the bounding ``tanh``, the half-step offset that gives an
    even ``L`` exactly ``L`` reachable values, straight-through rounding, full precision under autocast), with the
    zoo's interface around it: exact integer ids on the factorised vocabulary (first dimension least significant,
    as vector-quantize-pytorch orders them too), :meth:`ids_to_codes` that refuses ids outside the vocabulary, and
    :class:`QuantizerOutput`. The wrapped module holds no weights, so the state dict is that of the hand-written
    quantiser it replaced and its ids are the same (tests/tokenizers/test_quantizers.py).

    Args:
        levels: values per dimension, each at least 3 (a 2-level dimension cannot be bounded with a useful gradient:
            use ``LFQ`` for one bit per dimension).
        factor_sizes: the vocabulary factors the levels group into (see :func:`group_levels`).
    """

    def __init__(self, levels: tuple[int, ...], factor_sizes: tuple[int, ...]) -> None:
        super().__init__(levels, factor_sizes)
        if min(self.levels) < 3:
            raise ValueError(f"FSQ levels must be at least 3, got {self.levels}: a 2-level dimension has a vanishing "
                             "gradient through the bounding tanh; use quantizer='lfq' for one bit per dimension, or "
                             "levels of 3 or more")
        from vector_quantize_pytorch import FSQ as _FSQ

        # dim == len(levels): no projections, so no parameters; ids are computed here (exact int64, any vocabulary)
        self.fsq = _FSQ(list(self.levels), dim=self.dim, return_indices=False)
        self.register_buffer("_half_width", torch.div(self._levels, 2, rounding_mode="floor"), persistent=False)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """``z [..., D]`` -> codes ``[..., D]`` (straight-through gradients), ids int64 ``[...]``, zero loss."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"FSQ takes [..., {self.dim}] (one value per level), got {tuple(z.shape)}")
        codes, _ = self.fsq(z.reshape(1, -1, self.dim))  # [batch, sequence, D]: channel-last for the library
        codes = codes.reshape(z.shape)
        digits = (codes.detach() * self._half_width).round().long() + self._half_width
        return QuantizerOutput(codes, self.digits_to_ids(digits), z.new_zeros(()))

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[...]`` -> codes ``[..., D]`` (the decoder's input)."""
        digits = self.ids_to_digits(ids)
        return (digits - self._half_width).float() / self._half_width


class LFQ(_MixedRadix):
    """Lookup-free quantisation: each dimension is a bit, code ``+-1``; entropy loss per factor group.

    Args:
        factor_sizes: power-of-two factors; the dimension count is ``log2(vocab_size)``.
        entropy_weight: weight of ``mean per-sample entropy - diversity_weight * batch entropy``.
        diversity_weight: weight of the batch (codebook-usage) entropy term.
        commit_weight: weight of ``mse(z, sign(z))``.
        temperature: softmax temperature over a group's codes (logits ``= 2 z.c / temperature``).
    """

    def __init__(
        self,
        factor_sizes: tuple[int, ...],
        entropy_weight: float = 0.1,
        diversity_weight: float = 1.0,
        commit_weight: float = 0.25,
        temperature: float = 0.1,
    ) -> None:
        super().__init__(default_levels(factor_sizes, lfq=True), factor_sizes)
        self.entropy_weight = entropy_weight
        self.diversity_weight = diversity_weight
        self.commit_weight = commit_weight
        self.temperature = temperature
        for g, group in enumerate(self.groups):
            bits = len(group)
            table = (torch.arange(2**bits).unsqueeze(-1) >> torch.arange(bits)) & 1
            self.register_buffer(f"_codebook{g}", table.float() * 2 - 1, persistent=False)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        hard = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
        codes = z + (hard - z).detach()
        ids = self.digits_to_ids((hard > 0).long())
        loss = z.new_zeros(())
        if self.training and (self.entropy_weight > 0 or self.commit_weight > 0):
            flat = z.reshape(-1, self.dim).float()
            start = 0
            for g, group in enumerate(self.groups):
                zg = flat[:, start : start + len(group)]
                start += len(group)
                logits = 2 * zg @ getattr(self, f"_codebook{g}").t() / self.temperature
                logp = F.log_softmax(logits, -1)
                p = logp.exp()
                sample_ent = -(p * logp).sum(-1).mean()
                avg = p.mean(0)
                batch_ent = -(avg * avg.clamp_min(1e-10).log()).sum()
                loss = loss + self.entropy_weight * (sample_ent - self.diversity_weight * batch_ent)
            loss = loss + self.commit_weight * F.mse_loss(z, hard)
        return QuantizerOutput(codes, ids, loss)

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[...]`` -> codes ``[..., D]`` in ``{-1, +1}``."""
        return self.ids_to_digits(ids).float() * 2 - 1
