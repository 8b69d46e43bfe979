"""The shared spatial-temporal (ST) transformer trunk of HMA.

Each block (pre-norm on every branch)::

    x = x + a                                   # conditioning "add": action embedding of the frame
    x = x + SpatialAttn(LN(x))                  # per frame, bidirectional over image (+ action) tokens
    x = x + CrossAttn(LN(x), action_tokens)     # conditioning "cross_attention"
    x = x + AdaLN(x, a)                         # conditioning "adaln": Linear(LN(x) * (1 + scale) + shift)
    x = x + TemporalAttn(LN(x))                 # per token position, causal in time, rotary time positions
    x = x + MLP(LN(x))

The adaLN branch follows the paper's residual modulation layer; it is shared by all embodiments (their
differences enter through the per-embodiment stems), which keeps the parameter count of the paper with one
embodiment and does not grow the trunk with the number of robots.

The trunk is a **sliding-window causal transformer in time**: at every layer, each frame attends to at most
``max_frames`` frames (itself included), for any sequence length. Time positions are rotary (relative) and
absolute from the first frame of the sequence. A KV cache over past frames therefore computes exactly what a
full pass over the whole sequence computes (the keys of an old frame carry its own history, as in the full pass),
and a sequence longer than ``max_frames`` (a long rollout, or a training window longer than the span) is the
same computation in training and inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hma_zoo.configs import ConditioningConfig, TrunkConfig
from hma_zoo.model.attention import CrossAttention, SelfAttention


class Mlp(nn.Module):
    """``Linear(D, r*D) -> GELU -> Linear(r*D, D)``."""

    def __init__(self, dim: int, ratio: float, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x), approximate="tanh")))


class AdaLNBranch(nn.Module):
    """Residual modulation branch: ``Linear(LN(x) * (1 + scale) + shift)``, ``(shift, scale)`` from the action.

    ``x`` ``[B, T, S, D]``, ``a`` ``[B, T, D]`` (one action embedding per frame, broadcast over its tokens).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.cond = nn.Linear(dim, dim)
        self.to_shift_scale = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        shift, scale = self.to_shift_scale(F.silu(self.cond(a))).unsqueeze(2).chunk(2, dim=-1)
        return self.out(self.norm(x) * (1 + scale) + shift)


@dataclass
class KVCache:
    """Per-layer temporal keys/values of committed past frames, ``[B * S', H, P, E]`` each, ``P <= window - 1``.

    ``next_pos`` is the absolute time position of the next frame. Memory is bounded: committing a frame drops
    the oldest once ``window - 1`` frames are held.
    """

    window: int
    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)
    next_pos: int = 0

    @property
    def num_frames(self) -> int:
        return 0 if not self.keys or self.keys[0] is None else int(self.keys[0].shape[2])

    def get(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        if layer >= len(self.keys) or self.keys[layer] is None:
            return None
        return self.keys[layer], self.values[layer]  # type: ignore[return-value]

    def put(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Append keys/values of newly committed frames and keep only the last ``window - 1`` frames."""
        while len(self.keys) <= layer:
            self.keys.append(None)
            self.values.append(None)
        old_k, old_v = self.keys[layer], self.values[layer]
        if old_k is not None:
            k = torch.cat((old_k, k), dim=2)
            v = torch.cat((old_v, v), dim=2)  # type: ignore[arg-type]
        keep = self.window - 1
        self.keys[layer] = k[:, :, -keep:] if keep > 0 else k[:, :, :0]
        self.values[layer] = v[:, :, -keep:] if keep > 0 else v[:, :, :0]

    def repeat(self, times: int) -> KVCache:
        """A cache for a batch repeated ``times`` along dim 0 (for classifier-free guidance)."""
        rep = KVCache(self.window, next_pos=self.next_pos)
        rep.keys = [None if k is None else k.repeat(times, 1, 1, 1) for k in self.keys]
        rep.values = [None if v is None else v.repeat(times, 1, 1, 1) for v in self.values]
        return rep

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


class STBlock(nn.Module):
    """One spatial-temporal block; see the module docstring for the order of the branches."""

    def __init__(self, trunk: TrunkConfig, cond: ConditioningConfig) -> None:
        super().__init__()
        d = trunk.d_model
        self.mode = cond.mode
        self.norm_s = nn.LayerNorm(d)
        self.spatial = SelfAttention(d, trunk.num_heads, trunk.qkv_bias, trunk.qk_norm)
        self.norm_c = nn.LayerNorm(d) if cond.mode == "cross_attention" else None
        self.cross = CrossAttention(d, trunk.num_heads, trunk.qkv_bias) if cond.mode == "cross_attention" else None
        self.adaln = AdaLNBranch(d) if cond.uses_adaln else None
        self.norm_t = nn.LayerNorm(d)
        self.temporal = SelfAttention(d, trunk.num_heads, trunk.qkv_bias, trunk.qk_norm, rope_base=trunk.rope_base)
        self.norm_m = nn.LayerNorm(d)
        self.mlp = Mlp(d, trunk.mlp_ratio, trunk.mlp_bias, trunk.dropout)
        self.drop = nn.Dropout(trunk.dropout)

    def forward(
        self,
        x: torch.Tensor,
        a: torch.Tensor | None,
        ctx: torch.Tensor | None,
        positions: torch.Tensor,
        past_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        window: int | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` ``[B, T, S', D]``; ``a`` ``[B, T, D]`` frame action embeddings; ``ctx`` ``[B, T, M, D]`` action
        tokens for cross-attention; ``positions`` ``[T]`` absolute time positions; ``past_kv`` cached temporal
        keys/values of earlier frames; ``window`` the temporal attention span in frames.
        Returns the new ``x`` and this block's temporal keys/values."""
        b, t, s, d = x.shape
        if self.mode == "add" and a is not None:
            x = x + a.unsqueeze(2)
        h = self.spatial(self.norm_s(x).reshape(b * t, s, d))[0]
        x = x + self.drop(h.view(b, t, s, d))
        if self.cross is not None and ctx is not None:
            h = self.cross(self.norm_c(x).reshape(b * t, s, d), ctx.reshape(b * t, ctx.shape[2], d))
            x = x + self.drop(h.view(b, t, s, d))
        if self.adaln is not None and a is not None:
            x = x + self.drop(self.adaln(x, a))
        h = rearrange(self.norm_t(x), "b t s d -> (b s) t d")
        h, kv = self.temporal(h, causal=True, positions=positions, past_kv=past_kv, window=window)
        x = x + self.drop(rearrange(h, "(b s) t d -> b t s d", b=b))
        x = x + self.mlp(self.norm_m(x))
        return x, kv


class Trunk(nn.Module):
    """A stack of :class:`STBlock` followed by a final LayerNorm."""

    def __init__(self, trunk: TrunkConfig, cond: ConditioningConfig) -> None:
        super().__init__()
        self.config = trunk
        self.blocks = nn.ModuleList(STBlock(trunk, cond) for _ in range(trunk.depth))
        self.norm = nn.LayerNorm(trunk.d_model)

    def forward(
        self,
        x: torch.Tensor,
        a: torch.Tensor | None = None,
        ctx: torch.Tensor | None = None,
        cache: KVCache | None = None,
        commit: bool | int = False,
        window: int | None = None,
    ) -> torch.Tensor:
        """Run the blocks on frames ``x`` ``[B, T, S', D]`` -> ``[B, T, S', D]`` (final-normed).

        Every frame attends to at most ``window`` frames, itself included (default: ``cache.window`` with a
        cache, else ``max_frames``), for any ``T``: a sliding-window causal mask in time.

        With a ``cache`` the frames are the ones right after the cached ones (positions continue from
        ``cache.next_pos``); ``commit=True`` appends all frames' keys/values to the cache afterwards, ``commit=n``
        only the first ``n`` frames' (so a finished frame can be committed in the same pass that starts the next
        one). Without a cache the frames start at position 0 and ``T`` may exceed the window (the mask slides).
        """
        t = x.shape[1]
        start = cache.next_pos if cache is not None else 0
        positions = torch.arange(start, start + t, device=x.device)
        if window is None:
            window = cache.window if cache is not None else self.config.max_frames
        elif cache is not None and window != cache.window:
            raise ValueError(f"window {window} differs from the cache's window {cache.window}")
        n_commit = t if commit is True else int(commit)
        new_kv = []
        for i, block in enumerate(self.blocks):
            past = cache.get(i) if cache is not None else None
            x, kv = block(x, a, ctx, positions, past, window)
            if n_commit:
                new_kv.append(kv)
        if n_commit and cache is not None:
            for i, (k, v) in enumerate(new_kv):
                cache.put(i, k[:, :, :n_commit], v[:, :, :n_commit])
            cache.next_pos += n_commit
        return self.norm(x)
