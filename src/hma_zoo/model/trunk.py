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
from hma_zoo.model.attention import CrossAttention, SelfAttention, rope_table


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


class LayerKV:
    """Preallocated temporal keys/values of one layer: buffers ``[N, H, cap, E]`` whose slots ``[start, start + held)``
    hold the committed frames, oldest first.

    A pass writes its new frames' keys/values right after the held ones (:meth:`stage`, one copy of the new frames,
    no concatenation of the past) and attends to the view of held + new; :meth:`commit` keeps the first ``n`` of
    them by moving an index. The buffer is twice the largest span it has served, so dropping the oldest frame
    moves an index too, and the held frames are copied to the front only once every ``~cap / 2`` frames.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.start = 0
        self.held = 0

    def _reserve(self, like: torch.Tensor, new: int) -> None:
        n, h, _, e = like.shape
        need = self.held + new
        k = self.k
        if k is None or k.shape[0] != n or k.dtype != like.dtype or k.device != like.device or need > k.shape[2] // 2:
            cap = 2 * max(need, self.keep + 2)
            buf_k = like.new_empty(n, h, cap, e)
            buf_v = like.new_empty(n, h, cap, e)
            if k is not None and self.held:
                buf_k[:, :, : self.held].copy_(k[:, :, self.start : self.start + self.held])
                buf_v[:, :, : self.held].copy_(self.v[:, :, self.start : self.start + self.held])  # type: ignore[index]
            self.k, self.v, self.start = buf_k, buf_v, 0
        elif self.start + need > k.shape[2]:  # compact: start > cap / 2 >= held, so source and target never overlap
            held = slice(self.start, self.start + self.held)
            k[:, :, : self.held].copy_(k[:, :, held])
            self.v[:, :, : self.held].copy_(self.v[:, :, held])  # type: ignore[index]
            self.start = 0

    def stage(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Write the new frames' ``k``, ``v`` ``[N, H, L, E]`` after the held ones; returns views of held + new keys
        and values ``[N, H, held + L, E]`` and the number held before them. Nothing is committed yet."""
        length = k.shape[2]
        self._reserve(k, length)
        lo = self.start + self.held
        self.k[:, :, lo : lo + length].copy_(k)  # type: ignore[index]
        self.v[:, :, lo : lo + length].copy_(v)  # type: ignore[index]
        span = slice(self.start, lo + length)
        return self.k[:, :, span], self.v[:, :, span], self.held  # type: ignore[index]

    def commit(self, n: int) -> None:
        """Keep the first ``n`` staged frames (their keys already sit in the buffer), then only the last ``keep``."""
        self.held += n
        if self.held > self.keep:
            self.start += self.held - self.keep
            self.held = self.keep

    def held_kv(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.k is None:
            return None
        span = slice(self.start, self.start + self.held)
        return self.k[:, :, span], self.v[:, :, span]  # type: ignore[index]


@dataclass
class KVCache:
    """Per-layer temporal keys/values of committed past frames (:class:`LayerKV`), ``P <= window - 1`` frames each.

    ``next_pos`` is the absolute time position of the next frame. Memory is bounded: committing a frame drops
    the oldest once ``window - 1`` frames are held. The buffers are preallocated and reused: a step copies only the
    new frame's keys and values (see :class:`LayerKV`).
    """

    window: int
    layers: list[LayerKV] = field(default_factory=list)
    next_pos: int = 0

    @property
    def num_frames(self) -> int:
        return self.layers[0].held if self.layers else 0

    def layer(self, i: int) -> LayerKV:
        """The keys/values of layer ``i`` (created empty on first use)."""
        while len(self.layers) <= i:
            self.layers.append(LayerKV(max(self.window - 1, 0)))
        return self.layers[i]

    def get(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Held keys and values of ``layer``, ``[N, H, P, E]`` each (views), or ``None`` before the first commit."""
        return self.layers[layer].held_kv() if layer < len(self.layers) else None

    def put(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Append keys/values of newly committed frames and keep only the last ``window - 1`` frames."""
        lkv = self.layer(layer)
        lkv.stage(k, v)
        lkv.commit(k.shape[2])

    def repeat(self, times: int) -> KVCache:
        """A cache for a batch repeated ``times`` along dim 0 (for classifier-free guidance)."""
        rep = KVCache(self.window, next_pos=self.next_pos)
        for i in range(len(self.layers)):
            held = self.get(i)
            if held is not None:
                rep.put(i, held[0].repeat(times, 1, 1, 1), held[1].repeat(times, 1, 1, 1))
        return rep

    def nbytes(self) -> int:
        """Bytes of the held keys and values (the preallocated buffers are about twice this)."""
        total = 0
        for i in range(len(self.layers)):
            held = self.get(i)
            if held is not None:
                total += sum(t.numel() * t.element_size() for t in held)
        return total


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
        past_kv: tuple[torch.Tensor, torch.Tensor] | LayerKV | None = None,
        window: int | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` ``[B, T, S', D]``; ``a`` ``[B, T, D]`` frame action embeddings; ``ctx`` ``[B, T, M, D]`` action
        tokens for cross-attention; ``positions`` ``[T]`` absolute time positions; ``past_kv`` cached temporal
        keys/values of earlier frames (a tuple, or a :class:`LayerKV` that this call stages its keys into);
        ``window`` the temporal attention span in frames; ``rope`` the rotary tables of ``positions`` if already
        computed. Returns the new ``x`` and this block's temporal keys/values."""
        x, h = self.before_time(x, a, ctx)
        h, kv = self.temporal(h, causal=True, positions=positions, past_kv=past_kv, window=window, rope=rope)
        return self.after_time(x, h), kv

    def before_time(self, x: torch.Tensor, a: torch.Tensor | None, ctx: torch.Tensor | None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The branches before temporal attention (fixed shapes, no cache: what
        :func:`hma_zoo.sampling.compile_for_inference` compiles): ``x`` ``[B, T, S', D]`` -> the updated ``x`` and
        the normed temporal-attention input ``[B * S', T, D]``."""
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
        return x, rearrange(self.norm_t(x), "b t s d -> (b s) t d")

    def after_time(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The temporal residual and the MLP: ``x`` ``[B, T, S', D]``, attention output ``h`` ``[B * S', T, D]``."""
        x = x + self.drop(rearrange(h, "(b s) t d -> b t s d", b=x.shape[0]))
        return x + self.mlp(self.norm_m(x))


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
        cfg = self.config
        rope = rope_table(start, t, cfg.d_model // cfg.num_heads, cfg.rope_base, x.device) if cfg.rope_base else None
        if window is None:
            window = cache.window if cache is not None else self.config.max_frames
        elif cache is not None and window != cache.window:
            raise ValueError(f"window {window} differs from the cache's window {cache.window}")
        n_commit = t if commit is True else int(commit)
        for i, block in enumerate(self.blocks):
            # with a cache, each layer stages this pass's keys in its preallocated buffer (committed below)
            past = cache.layer(i) if cache is not None else None
            x, _ = block(x, a, ctx, positions, past, window, rope)
        if n_commit and cache is not None:
            for i in range(len(self.blocks)):
                cache.layer(i).commit(n_commit)
            cache.next_pos += n_commit
        return self.norm(x)
