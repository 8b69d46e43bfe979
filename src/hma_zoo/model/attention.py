"""Attention layers of the spatial-temporal trunk: spatial (bidirectional), temporal (causal, rotary, KV cache)
and cross-attention to action tokens. All use ``torch.nn.functional.scaled_dot_product_attention``.

Shapes: ``N`` is a flattened batch (frames for spatial attention, token positions for temporal attention),
``L`` a sequence length, ``D`` the model width, ``H`` heads and ``E = D // H`` the head width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from hma_zoo.model.trunk import LayerKV


def rope_angles(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cos/sin tables for rotary embeddings at integer ``positions`` ``[L]`` -> two ``[L, head_dim // 2]``."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


_ROPE_TABLES: dict[tuple[int, float, str], tuple[torch.Tensor, torch.Tensor]] = {}


def rope_table(start: int, length: int, head_dim: int, base: float, device: torch.device) -> tuple[torch.Tensor,
                                                                                                     torch.Tensor]:
    """``rope_angles`` of positions ``start ... start + length - 1`` as views of a table kept per (width, base,
    device) and grown on demand (the same values: the angles are computed elementwise from the position)."""
    key = (head_dim, float(base), str(device))
    table = _ROPE_TABLES.get(key)
    if table is None or table[0].shape[0] < start + length:
        n = max(2 * (start + length), 64)
        table = rope_angles(torch.arange(n, device=device), head_dim, base)
        _ROPE_TABLES[key] = table
    return table[0][start : start + length], table[1][start : start + length]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs ``(x[..., :E/2], x[..., E/2:])`` of ``x`` ``[N, H, L, E]`` by the angles ``[L, E/2]``."""
    x1, x2 = x.chunk(2, dim=-1)
    cos = cos.to(x.dtype)
    sin = sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with fused qkv, optional QK-norm, optional rotary positions and KV cache.

    Args:
        dim: model width ``D``.
        num_heads: heads ``H``.
        qkv_bias: bias of the fused qkv projection.
        qk_norm: LayerNorm over the head width on queries and keys (added to, not replacing, the pre-norm).
        rope_base: if given, queries and keys are rotated by their (time) positions.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, qk_norm: bool = False,
                 rope_base: float | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.rope_base = rope_base

    def forward(
        self,
        x: torch.Tensor,
        *,
        causal: bool = False,
        positions: torch.Tensor | None = None,
        past_kv: tuple[torch.Tensor, torch.Tensor] | LayerKV | None = None,
        window: int | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attend ``x`` ``[N, L, D]`` to itself (and to ``past_kv``, keys/values ``[N, H, P, E]`` of earlier steps,
        or a :class:`~hma_zoo.model.trunk.LayerKV` buffer that holds them and receives this call's keys).

        ``positions`` ``[L]`` are the absolute positions of ``x`` for rotary embedding (``rope``: their cos/sin
        tables ``[L, E/2]`` already computed, e.g. by :func:`rope_table`). With ``past_kv`` the
        queries attend to the cached keys (all in the past) and causally to the new ones; with ``window`` each
        query sees at most ``window`` keys (itself included): a sliding-window causal mask, for any ``L``.

        Returns:
            The output ``[N, L, D]`` and this call's (rotated) keys and values ``[N, H, L, E]`` for caching.
        """
        n, length, dim = x.shape
        qkv = self.qkv(x).view(n, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope_base is not None:
            if rope is not None:
                cos, sin = rope
            else:
                if positions is None:
                    positions = torch.arange(length, device=x.device)
                cos, sin = rope_angles(positions, self.head_dim, self.rope_base)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        new_kv = (k, v)
        if past_kv is None:
            past = 0
        elif isinstance(past_kv, tuple):
            past = past_kv[0].shape[2]
            if past > 0:
                k = torch.cat((past_kv[0], k), dim=2)
                v = torch.cat((past_kv[1], v), dim=2)
        else:  # a preallocated per-layer buffer (hma_zoo.model.trunk.LayerKV): no concatenation of the past
            k, v, past = past_kv.stage(k, v)
        total = past + length
        slides = window is not None and total > window  # some query would see more than `window` keys
        if causal and past > 0 and length <= 4:
            # Few new frames after a cache (the per-frame step): query frame i sees the contiguous keys
            # [max(0, past + i + 1 - window), past + i + 1), so one unmasked call per query frame replaces a masked
            # call (the masked CPU kernel costs ~10x more at these sizes).
            outs = []
            for i in range(length):
                hi = past + i + 1
                lo = max(0, hi - window) if window is not None else 0
                outs.append(F.scaled_dot_product_attention(q[:, :, i : i + 1], k[:, :, lo:hi], v[:, :, lo:hi]))
            out = outs[0] if length == 1 else torch.cat(outs, dim=2)
        elif causal and (slides or (past > 0 and length > 1)):
            # causal, and with a window: a query at index i sees keys j with i - window < j <= i
            q_idx = torch.arange(past, total, device=x.device).unsqueeze(1)
            k_idx = torch.arange(total, device=x.device).unsqueeze(0)
            mask = k_idx <= q_idx
            if window is not None:
                mask = mask & (q_idx - k_idx < window)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal and past == 0 and length > 1)
        out = out.transpose(1, 2).reshape(n, length, dim)
        return self.proj(out), new_kv


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries ``[N, L, D]`` attend to a context ``[N, M, D]``.

    This is a correct multi-head attention (heads are split on the channel axis and attend over the
    context tokens), unlike the original HMA code's ``BasicCrossAttention`` (reference section 7, bug 6).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, L, D]``, ``context`` ``[N, M, D]`` -> ``[N, L, D]``."""
        n, length, dim = x.shape
        m = context.shape[1]
        q = self.q(x).view(n, length, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv(context).view(n, m, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))
