"""The named sizes of the zoo. A variant only pins sizes; every other knob comes from the component configs.

Paper sizes (16x16 tokens per frame, T = 12, 32 blocks; Wang et al. 2025, Table 1):
``hma-{vq,mar}-{t,s,b,l,xl}``; ``b`` is the paper's Base (d 256) and ``xl`` its XL (d 1024, which is what matches
the published 679M / 741M counts). CPU variants for 64x64 frames (an 8x8 token grid from an f8 tokenizer):
``hma-{vq,mar}-{t64,s64}``. Tiny ``*-test`` twins exist for unit tests.

Scaling family for sweeps (``hma-zoo sweep``, docs/scaling.md): ``hma-{vq,mar}-w{32,48,64,96,128,192,256}``, the
64x64 CPU layout of ``t64`` (4 blocks, T = 8, 8 action tokens) at width ``w`` with 32-wide heads; only the width
changes (and, for ``mar``, the diffusion head's width 2w), so the parameter count grows about as w^2 (``w128``
is ``t64``'s trunk). ``hma-zoo models 'hma-*-w*'`` prints the counts.
"""

from __future__ import annotations

from typing import Any

from hma_zoo.configs import ConditioningConfig, DiffusionHeadConfig, TokenSpec, TrunkConfig
from hma_zoo.registry import register_model

PAPER_VQ_TOKENS = TokenSpec(kind="vq", grid=(16, 16), vocab_size=2**18, factor_sizes=(512, 512))
# SVD-VAE latents 4 x 32 x 32 patchified 2 x 2 -> 16 x 16 tokens of width 16 (paper, section 1.1 of the reference).
PAPER_MAR_TOKENS = TokenSpec(kind="mar", grid=(32, 32), latent_channels=4, patch_size=2, vocab_size=1,
                             factor_sizes=(1,))
CPU_VQ_TOKENS = TokenSpec(kind="vq", grid=(8, 8), vocab_size=1024, factor_sizes=(32, 32))
CPU_MAR_TOKENS = TokenSpec(kind="mar", grid=(8, 8), latent_channels=4, patch_size=1, vocab_size=1, factor_sizes=(1,))

SWEEP_WIDTHS = (32, 48, 64, 96, 128, 192, 256)

_PAPER_SIZES = {  # name: (d_model, heads)
    "t": (128, 4),
    "s": (192, 6),
    "b": (256, 8),
    "l": (512, 8),
    "xl": (1024, 16),
}


def _paper(kind: str, size: str) -> dict[str, Any]:
    d, heads = _PAPER_SIZES[size]
    vq = kind == "vq"
    return dict(
        tokens=PAPER_VQ_TOKENS if vq else PAPER_MAR_TOKENS,
        # paper configs: vq has no qkv bias and MLP bias; mar the opposite
        trunk=TrunkConfig(d_model=d, depth=32, num_heads=heads, max_frames=12, qkv_bias=not vq, mlp_bias=vq),
        conditioning=ConditioningConfig(mode="concat+adaln", num_action_tokens=64),
        diffusion=DiffusionHeadConfig(width=1024, depth=4, train_steps=1000, sample_steps=100),
        action_loss_weight=0.5 if vq else 1.0,
    )


def _cpu(kind: str, d: int, depth: int, heads: int, frames: int, action_tokens: int, diff_width: int,
         diff_depth: int) -> dict[str, Any]:
    vq = kind == "vq"
    return dict(
        tokens=CPU_VQ_TOKENS if vq else CPU_MAR_TOKENS,
        trunk=TrunkConfig(d_model=d, depth=depth, num_heads=heads, max_frames=frames, qkv_bias=not vq, mlp_bias=vq),
        conditioning=ConditioningConfig(mode="concat+adaln", num_action_tokens=action_tokens),
        diffusion=DiffusionHeadConfig(width=diff_width, depth=diff_depth, train_steps=1000, sample_steps=50),
        action_loss_weight=0.5 if vq else 1.0,
    )


def _test(kind: str) -> dict[str, Any]:
    vq = kind == "vq"
    tokens = (TokenSpec(kind="vq", grid=(4, 4), vocab_size=64, factor_sizes=(8, 8)) if vq
              else TokenSpec(kind="mar", grid=(4, 4), latent_channels=3, patch_size=1, vocab_size=1, factor_sizes=(1,)))
    return dict(
        tokens=tokens,
        trunk=TrunkConfig(d_model=32, depth=2, num_heads=2, max_frames=4, qkv_bias=not vq, mlp_bias=vq),
        conditioning=ConditioningConfig(mode="concat+adaln", num_action_tokens=2),
        diffusion=DiffusionHeadConfig(width=32, depth=1, train_steps=100, sample_steps=10),
    )


for _kind in ("vq", "mar"):
    for _size in _PAPER_SIZES:
        register_model(f"hma-{_kind}-{_size}", lambda k=_kind, s=_size: _paper(k, s),
                       description=f"paper size {_size}: d={_PAPER_SIZES[_size][0]}, 32 blocks, 16x16 tokens, T=12")
    register_model(f"hma-{_kind}-t64", lambda k=_kind: _cpu(k, 128, 4, 4, 8, 8, 256, 2),
                   description="CPU tiny: 64x64 frames (8x8 tokens), d=128, 4 blocks, T=8")
    register_model(f"hma-{_kind}-s64", lambda k=_kind: _cpu(k, 256, 8, 8, 12, 16, 512, 3),
                   description="CPU small: 64x64 frames (8x8 tokens), d=256, 8 blocks, T=12")
    for _w in SWEEP_WIDTHS:
        register_model(f"hma-{_kind}-w{_w}",
                       lambda k=_kind, w=_w: _cpu(k, w, 4, max(1, w // 32), 8, 8, max(64, 2 * w), 2),
                       description=f"scaling family: 64x64 frames (8x8 tokens), d={_w}, 4 blocks, T=8")
    register_model(f"hma-{_kind}-test", lambda k=_kind: _test(k), description="unit-test twin: d=32, 2 blocks, 4x4")
