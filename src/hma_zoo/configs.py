"""Typed, nested, frozen configuration of an HMA world model.

Every knob of the architecture lives here, documented field by field and validated in ``__post_init__``.
A config is never mutated after a model is built from it; use :func:`dataclasses.replace` to derive a new one.
Configs round-trip through plain dicts (``to_dict`` / ``from_dict``) so that ``config.json`` on the hub is
human readable and loading never unpickles.

Reference: Wang et al., "Learning Real-World Action-Video Dynamics with Heterogeneous Masked Autoregression",
arXiv 2502.04296 (HMA).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

TokenKind = Literal["vq", "mar"]
ConditioningMode = Literal["none", "add", "cross_attention", "adaln", "concat", "concat+adaln"]
CONDITIONING_MODES: tuple[str, ...] = ("none", "add", "cross_attention", "adaln", "concat", "concat+adaln")


@dataclass(frozen=True)
class EmbodimentSpec:
    """One robot (embodiment) as the world model sees it.

    Args:
        name: unique name, e.g. ``"dmc_cheetah"``; batches route each sample by this name.
        action_dim: dimension of one control-step action.
        stride: control steps per video frame. The action of one video frame is the chunk of ``stride``
            control-step actions executed in that frame interval, flattened to ``stride * action_dim``.
        action_mean: per-dimension mean of the raw actions (length ``action_dim``), used to normalise.
        action_std: per-dimension standard deviation (length ``action_dim``); tiny values are clamped.
    """

    name: str
    action_dim: int
    stride: int = 1
    action_mean: tuple[float, ...] | None = None
    action_std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"EmbodimentSpec.name must be a non-empty string, got {self.name!r}")
        if self.action_dim < 1:
            raise ValueError(f"embodiment {self.name!r}: action_dim must be >= 1, got {self.action_dim}")
        if self.stride < 1:
            raise ValueError(f"embodiment {self.name!r}: stride must be >= 1, got {self.stride}")
        for key in ("action_mean", "action_std"):
            value = getattr(self, key)
            if value is None:
                continue
            value = tuple(float(v) for v in value)
            object.__setattr__(self, key, value)
            if len(value) != self.action_dim:
                raise ValueError(
                    f"embodiment {self.name!r}: {key} has {len(value)} entries but action_dim is {self.action_dim}"
                )
            if not all(math.isfinite(v) for v in value):
                raise ValueError(f"embodiment {self.name!r}: {key} contains NaN or inf")

    @property
    def chunk_dim(self) -> int:
        """Width of one frame's action chunk: ``stride * action_dim``."""
        return self.stride * self.action_dim


@dataclass(frozen=True)
class TokenSpec:
    """What one video frame looks like to the world model (set by the tokenizer).

    Args:
        kind: ``"vq"`` (discrete ids, cross-entropy head, MaskGIT) or ``"mar"`` (continuous latents,
            per-token diffusion head, MAR sampling).
        grid: ``(h, w)`` of the tokenizer's latent grid per frame.
        vocab_size: number of discrete ids (``vq`` only).
        factor_sizes: factorisation of the vocabulary, e.g. ``(512, 512)`` for 2^18 ids; an id ``i`` is the
            mixed-radix number of its factors (first factor least significant). ``vq`` only.
        latent_channels: channels of a continuous latent (``mar`` only).
        patch_size: the trunk sees ``(h / p) * (w / p)`` tokens per frame: ``mar`` latents are patchified
            ``p x p``; ``vq`` ids are grouped ``p x p`` (one trunk token embeds the ``p^2`` ids of its patch and
            predicts all of them). With an f4 tokenizer (16x16 ids at 64x64) and ``p = 2`` the trunk costs what it
            does on an f8 grid while the tokenizer keeps 4x the detail.
    """

    kind: TokenKind = "vq"
    grid: tuple[int, int] = (16, 16)
    vocab_size: int = 262144
    factor_sizes: tuple[int, ...] = (512, 512)
    latent_channels: int = 4
    patch_size: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        object.__setattr__(self, "factor_sizes", tuple(int(f) for f in self.factor_sizes))
        if self.kind not in ("vq", "mar"):
            raise ValueError(f"TokenSpec.kind must be 'vq' or 'mar', got {self.kind!r}")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"TokenSpec.grid must be (h, w) with positive sides, got {self.grid}")
        if self.patch_size < 1 or self.grid[0] % self.patch_size or self.grid[1] % self.patch_size:
            raise ValueError(f"TokenSpec: grid {self.grid} is not divisible by patch_size {self.patch_size}")
        if self.kind == "vq":
            if math.prod(self.factor_sizes) != self.vocab_size:
                raise ValueError(
                    f"TokenSpec: factor_sizes {self.factor_sizes} multiply to {math.prod(self.factor_sizes)}, "
                    f"not vocab_size {self.vocab_size}; choose factors whose product is the vocabulary"
                )
        else:
            if self.latent_channels < 1:
                raise ValueError(f"TokenSpec.latent_channels must be >= 1, got {self.latent_channels}")

    @property
    def trunk_grid(self) -> tuple[int, int]:
        """The grid of tokens the trunk sees per frame: the patch grid ``grid // patch_size`` (training masks are
        drawn on it)."""
        return (self.grid[0] // self.patch_size, self.grid[1] // self.patch_size)

    @property
    def tokens_per_frame(self) -> int:
        """Trunk tokens per frame (after patchifying / grouping)."""
        return self.trunk_grid[0] * self.trunk_grid[1]

    @property
    def group(self) -> int:
        """Tokenizer tokens per trunk token: ``patch_size ** 2``."""
        return self.patch_size**2

    @property
    def patch_dim(self) -> int:
        """Width of one patchified continuous token (``mar`` only)."""
        return self.latent_channels * self.patch_size**2


@dataclass(frozen=True)
class TrunkConfig:
    """The shared spatial-temporal transformer.

    Args:
        d_model: width.
        depth: number of ST blocks.
        num_heads: attention heads (spatial and temporal).
        mlp_ratio: hidden width of the MLP as a multiple of ``d_model``.
        qkv_bias: bias on the fused qkv projection.
        mlp_bias: bias on the MLP linears.
        qk_norm: LayerNorm on queries and keys; it is added to, never replaces, the pre-norms.
        dropout: dropout on the residual branches (attention probabilities are not dropped).
        max_frames: training window ``T``; rollouts longer than this slide the context (temporal attention
            sees at most ``max_frames`` frames, positions are rotary and therefore relative).
        rope_base: base of the rotary embedding over time.
    """

    d_model: int = 256
    depth: int = 32
    num_heads: int = 8
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    mlp_bias: bool = True
    qk_norm: bool = False
    dropout: float = 0.0
    max_frames: int = 12
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(f"TrunkConfig: d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
        if (self.d_model // self.num_heads) % 2:
            raise ValueError("TrunkConfig: head dim must be even for rotary time embedding")
        if self.depth < 1 or self.max_frames < 1:
            raise ValueError("TrunkConfig: depth and max_frames must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TrunkConfig.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class ConditioningConfig:
    """How actions enter the trunk.

    Args:
        mode: ``none`` (action-free video model), ``add`` (action embedding added to every token of its frame
            in every block), ``cross_attention`` (image tokens attend to the frame's action tokens in every
            block), ``adaln`` (per-block modulation branch: shift/scale from the action embedding), ``concat``
            (``num_action_tokens`` action tokens appended to each frame's spatial sequence), ``concat+adaln``
            (the paper's default).
        num_action_tokens: action tokens per frame for ``concat`` and ``cross_attention`` (paper: 64).
        action_dropout: training probability of replacing a sample's actions by the null action, which
            makes classifier-free guidance on actions possible.
    """

    mode: ConditioningMode = "concat+adaln"
    num_action_tokens: int = 64
    action_dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in CONDITIONING_MODES:
            raise ValueError(f"ConditioningConfig.mode must be one of {CONDITIONING_MODES}, got {self.mode!r}")
        if self.num_action_tokens < 1:
            raise ValueError("ConditioningConfig.num_action_tokens must be >= 1")
        if not 0.0 <= self.action_dropout < 1.0:
            raise ValueError("ConditioningConfig.action_dropout must be in [0, 1)")

    @property
    def uses_concat(self) -> bool:
        return self.mode in ("concat", "concat+adaln")

    @property
    def uses_adaln(self) -> bool:
        return self.mode in ("adaln", "concat+adaln")


@dataclass(frozen=True)
class DiffusionHeadConfig:
    """The per-token MLP diffusion head used by ``mar`` (MAR, Li et al. 2024) and ``mar`` action heads.

    Args:
        width: hidden width of the MLP (paper: 1024).
        depth: number of adaLN residual blocks (paper: 4).
        train_steps: diffusion steps in training (paper: 1000).
        sample_steps: respaced steps when sampling (paper: 100).
        schedule: ``cosine`` (paper) or ``linear`` beta schedule.
        Stated choice: epsilon prediction with the fixed posterior variance (no learned variance, so the
        loss is the plain epsilon MSE); see :mod:`hma_zoo.diffusion.gaussian`.
        batch_mul: each token's condition is reused with this many noise draws per step in training.
    """

    width: int = 1024
    depth: int = 4
    train_steps: int = 1000
    sample_steps: int = 100
    schedule: Literal["cosine", "linear"] = "cosine"
    batch_mul: int = 1

    def __post_init__(self) -> None:
        if self.sample_steps > self.train_steps:
            raise ValueError("DiffusionHeadConfig.sample_steps cannot exceed train_steps")
        if self.schedule not in ("cosine", "linear"):
            raise ValueError(f"DiffusionHeadConfig.schedule must be 'cosine' or 'linear', got {self.schedule!r}")


@dataclass(frozen=True)
class HMAConfig:
    """A whole HMA world model.

    Args:
        tokens: token family and grid (from the tokenizer).
        trunk: the shared spatial-temporal transformer.
        conditioning: how actions enter the trunk.
        embodiments: every embodiment the model serves, fixed at construction
            (use :meth:`hma_zoo.model.HMA.with_embodiments` to add one for fine-tuning).
        diffusion: diffusion head settings (``mar`` video head and ``mar`` action heads).
        label_smoothing: cross-entropy label smoothing of the ``vq`` head (paper: 0.01).
        predict_actions: build per-embodiment action heads (policy / joint mode).
        action_loss_weight: weight of the action loss in the total loss (paper: 0.5 for ``vq``, 1.0 for ``mar``).
        stem_hidden: hidden width of the action stems (default: ``d_model``).
    """

    tokens: TokenSpec = field(default_factory=TokenSpec)
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    embodiments: tuple[EmbodimentSpec, ...] = ()
    diffusion: DiffusionHeadConfig = field(default_factory=DiffusionHeadConfig)
    label_smoothing: float = 0.01
    predict_actions: bool = True
    action_loss_weight: float = 0.5
    stem_hidden: int | None = None

    def __post_init__(self) -> None:
        embodiments = tuple(
            e if isinstance(e, EmbodimentSpec) else EmbodimentSpec(**e) for e in self.embodiments
        )
        object.__setattr__(self, "embodiments", embodiments)
        names = [e.name for e in embodiments]
        if len(set(names)) != len(names):
            raise ValueError(f"HMAConfig: embodiment names must be unique, got {names}")
        if self.conditioning.mode != "none" and not embodiments:
            raise ValueError(
                "HMAConfig: an action-conditioned model needs at least one embodiment; pass "
                "embodiments=[EmbodimentSpec(name, action_dim, stride, ...)] or conditioning mode 'none'"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("HMAConfig.label_smoothing must be in [0, 1)")

    @property
    def embodiment_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.embodiments)

    @property
    def max_chunk_dim(self) -> int:
        """Width of the padded action tensor a batch carries (largest chunk over embodiments)."""
        return max((e.chunk_dim for e in self.embodiments), default=1)

    def embodiment(self, name: str) -> EmbodimentSpec:
        """The spec named ``name``; an unknown name raises ``KeyError`` listing the known ones."""
        for e in self.embodiments:
            if e.name == name:
                return e
        raise KeyError(f"unknown embodiment {name!r}; this model knows {list(self.embodiment_names)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HMAConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise a ``TypeError`` naming them."""
        d = dict(d)
        return cls(
            tokens=TokenSpec(**d.pop("tokens", {})),
            trunk=TrunkConfig(**d.pop("trunk", {})),
            conditioning=ConditioningConfig(**d.pop("conditioning", {})),
            embodiments=tuple(EmbodimentSpec(**e) for e in d.pop("embodiments", ())),
            diffusion=DiffusionHeadConfig(**d.pop("diffusion", {})),
            **d,
        )
