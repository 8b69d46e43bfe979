"""``HMALitModule``: trains an HMA world model. Losses, optimiser and logging only; the model lives in
:mod:`hma_zoo.model` (built from a registry variant) and knows nothing of Lightning.

Per step: take a batch (see the batch contract in :mod:`hma_zoo.data`), tokenise ``frames`` on the fly with a
frozen tokenizer when the batch carries no ``tokens``, draw the paper's masks (:mod:`hma_zoo.lit.masking`) and
call :meth:`hma_zoo.model.HMA.compute_loss`. Logged: losses (total, video, action, and video loss per
embodiment), token accuracy, learning rate; in validation also PSNR and delta-PSNR (true vs random actions) of
teacher-forced predictions on a few samples, beside the copy-last-frame PSNR as a baseline. They are named
``psnr`` / ``delta_psnr`` / ``copy_psnr`` when the batch carries the real frames, and ``psnr_vs_recon`` /
``delta_psnr_vs_recon`` / ``copy_psnr_vs_recon`` when the ground truth is the tokenizer's reconstruction of the
tokens (token shards), which ignores the tokenizer's own error and reads far higher. Throughput / MFU and videos
come from :mod:`hma_zoo.lit.callbacks`.

Optimiser: AdamW, betas (0.9, 0.95), weight decay only on the weights of linear / conv layers (norms, biases,
embedding tables, positional and mask embeddings are excluded), linear warm-up then constant or cosine
(:func:`hma_zoo.schedules.warmup_schedule`). An optional EMA of the weights is updated once per optimiser step.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from hma_zoo.configs import EmbodimentSpec, HMAConfig, TokenSpec
from hma_zoo.eval.metrics import psnr
from hma_zoo.lit.masking import MaskingConfig, sample_trunk_masks
from hma_zoo.schedules import warmup_schedule

__all__ = ["HMALitModule", "load_world_model", "warmup_schedule", "weight_decay_groups"]

log = logging.getLogger(__name__)

_DECAY_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weight_decay_groups(model: nn.Module, weight_decay: float) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Split trainable parameters into a decayed and a non-decayed AdamW group.

    Only the ``weight`` of ``nn.Linear`` / ``nn.ConvNd`` modules is decayed. Everything else (norm weights and
    biases, every bias, ``nn.Embedding`` tables, free parameters such as positional embeddings and mask tokens)
    is not. Shared parameters are counted once.

    Returns:
        ``(param_groups, names)``: groups ready for ``torch.optim.AdamW`` and ``{"decay": [...], "no_decay": [...]}``
        with the parameter names (for inspection and tests).
    """
    seen: set[int] = set()
    groups: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": []}
    names: dict[str, list[str]] = {"decay": [], "no_decay": []}
    for mod_name, module in model.named_modules():
        for p_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            key = "decay" if isinstance(module, _DECAY_MODULES) and p_name == "weight" else "no_decay"
            groups[key].append(param)
            names[key].append(f"{mod_name}.{p_name}" if mod_name else p_name)
    param_groups = [
        {"params": groups["decay"], "weight_decay": weight_decay},
        {"params": groups["no_decay"], "weight_decay": 0.0},
    ]
    return [g for g in param_groups if g["params"]], names


def trunk_patch_size(grid: Sequence[int], variant_tokens: TokenSpec) -> int:
    """The ``p x p`` grouping that brings a tokenizer's ``grid`` to the variant's trunk grid.

    A variant pins the number of trunk tokens per frame (``hma-*-t64``: 8 x 8); a finer tokenizer (f4: 16 x 16 at
    64x64) is grouped ``2 x 2`` so the trunk's cost stays that of the variant. A grid that does not divide evenly
    (or is coarser) keeps the variant's own ``patch_size`` when it divides the grid, else 1.
    """
    h, w = (int(g) for g in grid)
    th, tw = variant_tokens.trunk_grid
    if h >= th and w >= tw and h % th == 0 and w % tw == 0 and h // th == w // tw:
        return h // th
    p = variant_tokens.patch_size
    return p if h % p == 0 and w % p == 0 else 1


class HMALitModule(L.LightningModule):
    """Train an HMA world model from a registry variant.

    Args:
        variant: registry name, e.g. ``"hma-vq-s64"`` (see ``hma-zoo models``).
        overrides: :class:`~hma_zoo.configs.HMAConfig` field overrides; sub-configs may be partial dicts,
            e.g. ``{"trunk": {"depth": 2}, "conditioning": {"mode": "adaln"}}``.
        embodiments: the robots (linked from the data module in recipes; never repeat them by hand).
        max_chunk_dim: width of the batch's action rows (linked from the data); batches narrower than the model's
            widest chunk are zero-padded.
        window: frames per training window (linked from the data). It raises ``trunk.max_frames`` (the temporal
            attention span) to match when larger, unless ``overrides`` sets ``trunk.max_frames`` explicitly: then
            the model trains on windows longer than its span, which is exactly the sliding-window computation a
            long rollout performs with the KV cache (frame 0 unknown action, old frames' keys with their history).
        tokenizer: frozen tokenizer (registry name, saved folder or hub id) used to tokenise ``frames`` on the fly
            and to decode predictions for PSNR / videos; it also sets the model's token grid and vocabulary.
        token_info: the ``token_info`` of a pre-tokenised dataset (linked from the data): sets the token grid and
            vocabulary when no tokenizer is given, and loads the tokenizer for decoding if it names a saved one.
        masking: the paper's masking knobs (:class:`~hma_zoo.lit.masking.MaskingConfig`).
        lr, betas, eps, weight_decay: AdamW (paper: betas (0.9, 0.95)).
        warmup_steps, schedule, total_steps, min_lr_ratio: linear warm-up, then ``constant`` or ``cosine`` to
            ``min_lr_ratio * lr`` at ``total_steps`` (default: the Trainer's estimated stepping batches).
        ema_decay: keep an exponential moving average of the weights (used for validation and export), updated
            once per optimiser step (not per micro-batch under gradient accumulation) with the warm-up
            ``decay_n = min(ema_decay, (1 + n) / (10 + n))``, ``n`` the updates so far (checkpointed).
        freeze_trunk: train only stems, heads and embeddings (fine-tuning a new embodiment).
        from_pretrained: start from a saved world model (``save_pretrained`` folder / hub id) or a Lightning
            ``.ckpt`` of this module; embodiments of the data that it lacks are added with new stems and heads.
        val_metric_samples: samples of the first validation batch used for PSNR / delta-PSNR (0 disables).
        sample_steps: MaskGIT / MAR steps per frame when predicting for metrics and videos.
        compile: ``torch.compile`` each trunk block (rarely worth it on a CPU).
        change_weight: extra weight, in the training loss, of the hidden tokens that differ from the previous
            frame's (:meth:`~hma_zoo.model.HMA.changed_tokens`): they count ``1 + change_weight`` times. On
            sim-mix 20% of tokens change and carry 70% of the loss; a copying model is nearly free on the rest.
        change_threshold: ``mar`` only: RMS latent change above which a patch counts as changed.
        max_nonfinite_skips: a batch whose loss is NaN or inf is skipped (no optimiser step) at most this many
            times in a run; past that (default: at once) training stops with a ``FloatingPointError`` naming the
            step and the batch's embodiments and episodes. A diverged model is never exported.
    """

    def __init__(
        self,
        variant: str = "hma-vq-test",
        overrides: dict[str, Any] | None = None,
        embodiments: Sequence[EmbodimentSpec] | None = None,
        max_chunk_dim: int | None = None,
        window: int | None = None,
        tokenizer: str | None = None,
        token_info: dict[str, Any] | None = None,
        masking: MaskingConfig | dict[str, Any] | None = None,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.05,
        warmup_steps: int = 500,
        schedule: Literal["constant", "cosine"] = "constant",
        total_steps: int | None = None,
        min_lr_ratio: float = 0.1,
        ema_decay: float | None = None,
        freeze_trunk: bool = False,
        from_pretrained: str | None = None,
        val_metric_samples: int = 4,
        sample_steps: int = 2,
        compile: bool = False,
        change_weight: float = 0.0,
        change_threshold: float = 0.25,
        max_nonfinite_skips: int = 0,
    ) -> None:
        super().__init__()
        if change_weight < 0:
            raise ValueError(f"change_weight must be >= 0, got {change_weight}")
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}")
        embodiments = tuple(e if isinstance(e, EmbodimentSpec) else EmbodimentSpec(**e) for e in (embodiments or ()))
        # JSON-friendly hyper-parameters: the checkpoint then loads with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["embodiments", "masking"])
        self.hparams["embodiments"] = [dict(vars(e)) for e in embodiments]
        # a dict when restored from the hyper-parameters of a checkpoint (load_from_checkpoint)
        self.masking = MaskingConfig(**masking) if isinstance(masking, dict) else (masking or MaskingConfig())
        self.hparams["masking"] = dict(vars(self.masking))
        self.variant = variant
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.warmup_steps, self.schedule, self.total_steps, self.min_lr_ratio = (
            warmup_steps, schedule, total_steps, min_lr_ratio)
        self.ema_decay = ema_decay
        self.val_metric_samples = val_metric_samples
        self.sample_steps = sample_steps
        self.compile_blocks = compile
        self.change_weight, self.change_threshold = float(change_weight), float(change_threshold)
        self.max_nonfinite_skips, self.nonfinite_skips = int(max_nonfinite_skips), 0
        if tokenizer is None and token_info and token_info.get("tokenizer") and Path(token_info["tokenizer"]).is_dir():
            tokenizer = str(token_info["tokenizer"])
        self._tokenizer_name = tokenizer
        tok = self._load_tokenizer(tokenizer) if tokenizer else None

        object.__setattr__(self, "_tokenizer", tok)  # not a submodule: never trained, sharded or checkpointed
        self.model = self._build_model(variant, dict(overrides or {}), embodiments, window, from_pretrained, tok,
                                       token_info)
        if max_chunk_dim is not None and max_chunk_dim > self.model.config.max_chunk_dim:
            raise ValueError(
                f"the data's action rows are {max_chunk_dim} wide but the model's widest embodiment chunk is "
                f"{self.model.config.max_chunk_dim}; the data and model embodiments disagree")
        if freeze_trunk:
            for p in self.model.trunk_parameters():
                p.requires_grad_(False)
        self.ema: nn.Module | None = None
        if ema_decay is not None:
            self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
            # EMA updates so far (drives the warm-up); a buffer, so it is checkpointed and resumes
            self.register_buffer("ema_num_updates", torch.zeros((), dtype=torch.long))
        names = self.model.config.embodiment_names
        self.register_buffer("_val_loss_sum", torch.zeros(len(names)), persistent=False)
        self.register_buffer("_val_loss_cnt", torch.zeros(len(names)), persistent=False)
        self.flops_per_token: float | None = None  # measured on the first training step (callbacks use it)
        self.last_batch_tokens = 0

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _load_tokenizer(name_or_path: str) -> nn.Module:
        from hma_zoo.tokenizers import load_tokenizer

        tok = load_tokenizer(name_or_path)
        tok.eval().requires_grad_(False)
        return tok

    def _build_model(self, variant: str, overrides: dict[str, Any], embodiments: tuple[EmbodimentSpec, ...],
                     window: int | None, from_pretrained: str | None, tok: nn.Module | None,
                     token_info: dict[str, Any] | None = None) -> nn.Module:
        from hma_zoo.model.hma import HMA
        from hma_zoo.registry import model_config

        if from_pretrained:
            model = load_world_model(from_pretrained)
            known = set(model.config.embodiment_names)
            new = [e for e in embodiments if e.name not in known]
            if new:
                log.info("adding embodiments %s to the pretrained model (new stems and heads, trunk kept)",
                         [e.name for e in new])
                model = model.with_embodiments(new)
            if window is not None and window > model.config.trunk.max_frames:
                log.info("training windows of %d frames with the pretrained model's temporal attention span of %d "
                         "frames (sliding window)", window, model.config.trunk.max_frames)
            if tok is not None:
                from hma_zoo.tokenizers import check_compatible

                check_compatible(tok.spec, model.config.tokens)
            return model
        if embodiments:
            overrides["embodiments"] = embodiments
        elif "embodiments" not in overrides:
            raise ValueError(
                "HMALitModule needs embodiments: link them from the data (recipes do this with link_arguments) "
                "or pass model.init_args.embodiments=[{name, action_dim, stride, ...}]")
        if overrides.get("tokens") is None:
            overrides.pop("tokens", None)
            spec = tok.spec if tok is not None else None
            if spec is None and token_info and token_info.get("spec"):
                from hma_zoo.tokenizers import TokenizerSpec

                spec = TokenizerSpec(**token_info["spec"])
            if spec is not None:
                base = model_config(variant, embodiments=overrides["embodiments"])
                overrides["tokens"] = spec.token_spec(patch_size=trunk_patch_size(spec.grid, base.tokens))
        if window is not None:
            trunk = dict(overrides.get("trunk") or {})
            if "max_frames" in trunk:
                if window > trunk["max_frames"]:
                    log.info("training windows of %d frames with a temporal attention span of trunk.max_frames=%d "
                             "(sliding window, as in long rollouts with the KV cache)", window, trunk["max_frames"])
            else:
                base = model_config(variant, embodiments=overrides["embodiments"])
                if window > base.trunk.max_frames:
                    log.info("raising trunk.max_frames from %d to the data window %d (set trunk.max_frames in "
                             "overrides to train with a shorter span)", base.trunk.max_frames, window)
                    trunk["max_frames"] = window
                    overrides["trunk"] = trunk
        config = model_config(variant, **overrides)
        if tok is not None:
            from hma_zoo.tokenizers import check_compatible

            check_compatible(tok.spec, config.tokens)
        return HMA(config)

    @property
    def config(self) -> HMAConfig:
        """The world model's :class:`HMAConfig`."""
        return self.model.config

    @property
    def tokenizer(self) -> nn.Module | None:
        """The frozen tokenizer (moved to this module's device on first use), or ``None``."""
        tok = self._tokenizer
        if tok is not None:
            param = next(tok.parameters(), None)
            if param is not None and param.device != self.device:
                tok.to(self.device)
        return tok

    def configure_model(self) -> None:
        """Shard with FSDP2 under ``ModelParallelStrategy`` (each trunk block, then the whole model)."""
        if self.compile_blocks:
            for block in self.model.trunk.blocks:
                block.compile()
        mesh = getattr(self, "device_mesh", None)
        if mesh is None or getattr(self, "_sharded", False):
            return
        if self.ema is not None:
            raise ValueError("ema_decay is not supported with ModelParallelStrategy (FSDP2); unset it")
        from torch.distributed.fsdp import fully_shard

        dp_mesh = mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
        for block in self.model.trunk.blocks:
            fully_shard(block, mesh=dp_mesh)
        fully_shard(self.model, mesh=dp_mesh)
        # entry points other than forward() must gather the root's parameters too
        from torch.distributed.fsdp import register_fsdp_forward_method

        for method in ("compute_loss", "generate", "generate_teacher_forced", "predict_action"):
            register_fsdp_forward_method(self.model, method)
        self._sharded = True

    # ------------------------------------------------------------------ batches
    def prepare_batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
        """Batch dict -> ``(tokens [B,T,...], actions [B,T,A_model], embodiment names, action_valid [B,T])``.

        ``frames`` are tokenised with the frozen tokenizer when the batch has no ``tokens``.
        """
        tokens = batch.get("tokens")
        if tokens is None:
            frames = batch.get("frames")
            if frames is None:
                raise KeyError("a batch needs 'tokens' or 'frames'; got keys " + str(sorted(batch)))
            tok = self.tokenizer
            if tok is None:
                raise ValueError("the batch holds frames but no tokens: set model.init_args.tokenizer (a name or a "
                                 "trained tokenizer folder) or train on pre-tokenised token shards")
            tokens = tok.encode(frames)
        actions = batch["actions"].float()
        a_model = self.model.config.max_chunk_dim
        if actions.shape[-1] < a_model:
            actions = nn.functional.pad(actions, (0, a_model - actions.shape[-1]))
        elif actions.shape[-1] > a_model:
            if actions[..., a_model:].abs().max() > 0:
                raise ValueError(f"action rows are {actions.shape[-1]} wide but the model's widest chunk is {a_model}")
            actions = actions[..., :a_model]
        valid = batch.get("action_valid")
        if valid is None:
            valid = torch.ones(actions.shape[:2], dtype=torch.bool, device=actions.device)
        emb = batch["embodiment"]
        names = [emb] * tokens.shape[0] if isinstance(emb, str) else list(emb)
        return tokens, actions, names, valid.bool()

    def _masks(self, b: int, t: int, device: torch.device, generator: torch.Generator | None = None):
        """The paper's masks for a batch on the grid the trunk sees (:func:`~hma_zoo.lit.masking.sample_trunk_masks`):
        ``token_mask`` / ``corrupt`` ``bool [B, T, S]``, ``action_mask`` ``[B, T]``, on ``device`` (drawn on the CPU
        when a generator is given, so seeded draws do not depend on the device)."""
        masks = sample_trunk_masks(self.model.config.tokens, b, t, self.masking,
                                   device="cpu" if generator else device, generator=generator)
        return masks._replace(
            token_mask=masks.token_mask.to(device),
            corrupt=None if masks.corrupt is None else masks.corrupt.to(device),
            action_mask=masks.action_mask.to(device),
        )

    def _loss(self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None):
        tokens, actions, names, valid = self.prepare_batch(batch)
        b, t = tokens.shape[:2]
        m = self._masks(b, t, tokens.device, generator)
        weight = None
        if self.change_weight > 0:
            weight = 1.0 + self.change_weight * model.changed_tokens(tokens, self.change_threshold).float()
        out = model.compute_loss(tokens, actions, names, m.token_mask, action_mask=m.action_mask,
                                 action_valid=valid, corrupt=m.corrupt, token_weight=weight)
        return out, names, tokens

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.flops_per_token is None:
            out, names, tokens = self._measure_flops(batch)
        else:
            out, names, tokens = self._loss(self.model, batch)
        b = tokens.shape[0]
        if not bool(torch.isfinite(out["loss"])):
            where = self._describe_batch(batch)
            if self.nonfinite_skips < self.max_nonfinite_skips:
                self.nonfinite_skips += 1
                log.warning("step %d: non-finite loss %s, batch skipped (%d of at most %d): %s", self.global_step,
                            float(out["loss"].detach()), self.nonfinite_skips, self.max_nonfinite_skips, where)
                self.log("train/nonfinite_skips", float(self.nonfinite_skips), batch_size=b)
                return None
            raise FloatingPointError(
                f"non-finite training loss ({float(out['loss'].detach())}) at step {self.global_step}; batch: {where}. "
                "Lower the learning rate, check the data (`hma-zoo data validate`), or allow a few skips with "
                "model.init_args.max_nonfinite_skips")
        self.last_batch_tokens = b * tokens.shape[1] * self.model.config.tokens.tokens_per_frame
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=b)
        self.log("train/video_loss", out["video_loss"], batch_size=b)
        if "action_loss" in out:
            self.log("train/action_loss", out["action_loss"], batch_size=b)
        if "token_acc" in out:
            self.log("train/token_acc", out["token_acc"], prog_bar=True, batch_size=b)
        per_sample = out["video_loss_per_sample"].detach()
        for name in sorted(set(names)):
            sel = torch.tensor([n == name for n in names], device=per_sample.device)
            self.log(f"train/video_loss/{name}", per_sample[sel].mean(), batch_size=int(sel.sum()))
        opt = self.optimizers(use_pl_optimizer=False) if self._trainer is not None else None
        if opt is not None:
            self.log("train/lr", opt.param_groups[0]["lr"], prog_bar=True, batch_size=b)
        return out["loss"]

    @staticmethod
    def _describe_batch(batch: dict[str, Any]) -> str:
        """The embodiments, episodes and window starts of a batch, for error messages."""
        names = batch.get("embodiment") or []
        episodes = batch.get("episode_id") or ["?"] * len(names)
        starts = batch.get("start")
        starts = [int(s) for s in starts] if starts is not None else ["?"] * len(names)
        parts = [f"{n}/{e}@{s}" for n, e, s in zip(names, episodes, starts)]
        actions = batch.get("actions")
        if isinstance(actions, torch.Tensor) and actions.is_floating_point() and not torch.isfinite(actions).all():
            bad = (~torch.isfinite(actions)).flatten(1).any(1)
            parts.append("non-finite actions in " + ", ".join(p for p, x in zip(parts, bad.tolist()) if x))
        return "; ".join(parts) if parts else "(no episode information)"

    def _measure_flops(self, batch: dict[str, Any]):
        """First step: count the forward's FLOPs (x3 for forward + backward) per trunk token, for MFU."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        try:
            with counter:
                out, names, tokens = self._loss(self.model, batch)
            n_tok = tokens.shape[0] * tokens.shape[1] * self.model.config.tokens.tokens_per_frame
            self.flops_per_token = 3.0 * counter.get_total_flops() / max(1, n_tok)
        except Exception as err:  # counting is best-effort (e.g. exotic tensor subclasses); fall back to 6N
            log.warning("FLOP counting failed (%s); using the 6 * parameters estimate", err)
            out, names, tokens = self._loss(self.model, batch)
            self.flops_per_token = 6.0 * sum(p.numel() for p in self.model.parameters())
        return out, names, tokens

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any,
                       optimizer_closure: Callable[[], Any] | None = None) -> None:
        """The optimiser step, then one EMA update. Lightning calls this once per optimiser step, i.e. once every
        ``accumulate_grad_batches`` micro-batches (``on_train_batch_end`` would fire on every micro-batch)."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self.ema is not None:
            self._update_ema()

    def ema_decay_now(self) -> float:
        """The decay of the next EMA update: ``min(ema_decay, (1 + n) / (10 + n))``, ``n`` the updates so far
        (early updates follow the fast-moving weights instead of the random initialisation)."""
        if self.ema_decay is None:
            raise RuntimeError("this module keeps no EMA (ema_decay is None)")
        n = int(self.ema_num_updates)
        return min(self.ema_decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.ema_decay_now()
        ema_p = [p for p in self.ema.parameters()]
        cur_p = [p.detach() for p in self.model.parameters()]
        torch._foreach_lerp_(ema_p, cur_p, 1.0 - decay)
        for eb, b in zip(self.ema.buffers(), self.model.buffers()):
            eb.copy_(b)
        self.ema_num_updates += 1

    def eval_model(self) -> nn.Module:
        """The weights used for validation, metrics and export: the EMA copy if kept, else the model."""
        return self.ema if self.ema is not None else self.model

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _eval_step(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        model = self.eval_model()
        # fixed masks per batch index: validation losses are comparable across epochs and runs
        gen = torch.Generator().manual_seed(10_000 + batch_idx)
        out, names, tokens = self._loss(model, batch, gen)
        b = tokens.shape[0]
        self.log(f"{stage}/loss", out["loss"], prog_bar=True, batch_size=b, sync_dist=True)
        self.log(f"{stage}/video_loss", out["video_loss"], batch_size=b, sync_dist=True)
        if "action_loss" in out:
            self.log(f"{stage}/action_loss", out["action_loss"], batch_size=b, sync_dist=True)
        if "token_acc" in out:
            self.log(f"{stage}/token_acc", out["token_acc"], batch_size=b, sync_dist=True)
        idx = model.embodiment_index(names, b).to(self._val_loss_sum.device)
        self._val_loss_sum.index_add_(0, idx, out["video_loss_per_sample"].detach().float())
        self._val_loss_cnt.index_add_(0, idx, torch.ones(b, device=idx.device))
        if batch_idx == 0 and self.val_metric_samples > 0 and self.tokenizer is not None:
            metrics = self.prediction_metrics(batch, self.val_metric_samples)  # real frames or "_vs_recon" names
            for k, v in metrics.items():
                self.log(f"{stage}/{k}", v, batch_size=min(b, self.val_metric_samples), sync_dist=True)

    def _log_per_embodiment(self, stage: str) -> None:
        sums, cnts = self._val_loss_sum.clone(), self._val_loss_cnt.clone()
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
            cnts = self.trainer.strategy.reduce(cnts, reduce_op="sum")
        for i, name in enumerate(self.model.config.embodiment_names):
            if cnts[i] > 0:
                # already summed over ranks: identical everywhere, so the sync below is a no-op mean
                self.log(f"{stage}/video_loss/{name}", sums[i] / cnts[i], sync_dist=True)
        self._val_loss_sum.zero_()
        self._val_loss_cnt.zero_()

    def on_validation_epoch_end(self) -> None:
        self._log_per_embodiment("val")

    def on_test_epoch_end(self) -> None:
        self._log_per_embodiment("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Roll out each sample from its first frame under its own actions: ``{"tokens": [B,T,...], ...}``."""
        tokens, actions, names, _ = self.prepare_batch(batch)
        pred = self.rollout(tokens, actions, names)
        result: dict[str, Any] = {"tokens": pred, "embodiment": names}
        if self.tokenizer is not None:
            result["frames"] = self.tokenizer.decode(pred)
        return result

    # ------------------------------------------------------------------ predictions for metrics and videos
    @torch.no_grad()
    def rollout(self, tokens: torch.Tensor, actions: torch.Tensor, names: list[str], prompt_frames: int = 1,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Autoregressive rollout: keep ``prompt_frames`` ground-truth frames, generate the rest -> ``[B,T,...]``."""
        model = self.eval_model()
        was_training = model.training
        model.eval()
        try:
            return model.generate(tokens[:, :prompt_frames], actions, names, tokens.shape[1] - prompt_frames,
                                  steps=self.sample_steps, temperature=0.0, generator=generator)
        finally:
            model.train(was_training)

    @torch.no_grad()
    def teacher_forced(self, tokens: torch.Tensor, actions: torch.Tensor, names: list[str],
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Frame ``t >= 1`` predicted greedily from the ground-truth frames ``< t`` -> ``[B,T,...]``.

        ``generator`` drives the sampler's remaining randomness (MaskGIT's random unmasking order, MAR's token
        order); pass identically seeded generators to compare two runs that should differ in their inputs only.
        """
        model = self.eval_model()
        was_training = model.training
        model.eval()
        try:
            return model.generate_teacher_forced(tokens, actions, names, steps=self.sample_steps, temperature=0.0,
                                                 generator=generator)
        finally:
            model.train(was_training)

    def sampler_generator(self, seed: int = 0) -> torch.Generator:
        """A generator on this module's device seeded with ``seed`` (for :meth:`teacher_forced` / :meth:`rollout`)."""
        return torch.Generator(device=self.device).manual_seed(seed)

    def random_actions(self, actions: torch.Tensor, names: list[str], generator: torch.Generator | None = None
                       ) -> torch.Tensor:
        """Raw actions shaped like ``actions`` ``[B, T, A]``, drawn from each embodiment's ``N(mean, std^2)`` by
        :func:`hma_zoo.eval.metrics.sample_random_actions` (the draw ``hma-zoo evaluate`` uses too)."""
        from hma_zoo.eval.metrics import sample_random_actions

        _, t, a = actions.shape
        return sample_random_actions(self.eval_model().config.embodiments, names, t, a, generator,
                                     actions.device).to(actions.dtype)

    @torch.no_grad()
    def prediction_metrics(self, batch: dict[str, Any], n: int, seed: int = 0) -> dict[str, torch.Tensor]:
        """Teacher-forced PSNR on ``n`` samples (frames ``1..T-1``, decoded, mean over frames), its delta-PSNR
        (PSNR with the true actions minus PSNR with random actions: controllability, as in Genie / the paper) and
        the copy-last-frame PSNR against the same ground truth (a baseline: a model that ignores everything).

        The true- and random-action runs share the sampler's noise and unmasking order (identically seeded
        generators), so the delta measures the actions only: an action-free model scores exactly 0.

        Returns:
            ``{"psnr", "delta_psnr", "copy_psnr"}`` when the batch carries the real ``frames``; otherwise the
            ground truth is the tokenizer's reconstruction of the tokens and the keys are ``psnr_vs_recon``,
            ``delta_psnr_vs_recon`` and ``copy_psnr_vs_recon`` (they ignore the tokenizer's error and read high).
        """
        tok = self.tokenizer
        if tok is None:
            return {}
        tokens, actions, names, _ = self.prepare_batch(batch)
        tokens, actions, names = tokens[:n], actions[:n], names[:n]
        frames = batch.get("frames")
        real = frames is not None
        gt = frames[:n] if real else tok.decode(tokens)
        rand_actions = self.random_actions(actions, names, torch.Generator().manual_seed(seed))
        pred = tok.decode(self.teacher_forced(tokens, actions, names, self.sampler_generator(seed)))
        pred_rand = tok.decode(self.teacher_forced(tokens, rand_actions, names, self.sampler_generator(seed)))
        gt, pred, pred_rand = (x.to(gt.device) for x in (gt, pred, pred_rand))
        value = psnr(pred[:, 1:], gt[:, 1:]).mean()
        value_rand = psnr(pred_rand[:, 1:], gt[:, 1:]).mean()
        copy_value = psnr(gt[:, :-1], gt[:, 1:]).mean()
        suffix = "" if real else "_vs_recon"
        return {f"psnr{suffix}": value, f"delta_psnr{suffix}": value - value_rand, f"copy_psnr{suffix}": copy_value}

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self) -> dict[str, Any]:
        groups, names = weight_decay_groups(self.model, self.weight_decay)
        if not groups:
            raise ValueError("no trainable parameters (is everything frozen?)")
        log.info("AdamW: %d decayed and %d non-decayed parameter tensors", len(names["decay"]), len(names["no_decay"]))
        opt = torch.optim.AdamW(groups, lr=self.lr, betas=self.betas, eps=self.eps)
        total = self.total_steps
        if total is None and self.schedule == "cosine" and self._trainer is not None:
            est = self.trainer.estimated_stepping_batches
            total = int(est) if math.isfinite(est) else None
        warmup, schedule, min_ratio = self.warmup_steps, self.schedule, self.min_lr_ratio

        def factor(step: int) -> float:
            return warmup_schedule(step, warmup, schedule, total, min_ratio)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # ------------------------------------------------------------------ checkpoints and export
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hma_config"] = self.model.config.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints written before the EMA warm-up existed carry no update count: resume as fully warmed."""
        state = checkpoint.get("state_dict", {})
        if self.ema is not None and "ema_num_updates" not in state:
            state["ema_num_updates"] = torch.tensor(int(checkpoint.get("global_step", 0)), dtype=torch.long)

    def export_model(self) -> nn.Module:
        """A plain, unsharded CPU copy of the evaluation weights (EMA if kept).

        Under FSDP2 every rank must call this (the shards are gathered collectively)."""
        from hma_zoo.model.hma import HMA

        source = self.eval_model()
        state = {}
        for key, value in source.state_dict().items():
            if hasattr(value, "full_tensor"):  # a DTensor shard (FSDP2)
                value = value.full_tensor()
            state[key] = value.detach().cpu()
        model = HMA(source.config)
        model.load_state_dict(state)
        return model

    def save_pretrained(self, directory: str | Path, meta: dict[str, Any] | None = None,
                        model: nn.Module | None = None) -> Path:
        """Write the evaluation weights (EMA if kept) in the hub format (``config.json`` + ``model.safetensors``),
        with the tokenizer bundled in ``tokenizer/`` when it was given as a saved folder, so that
        :func:`hma_zoo.load_simulator` works from the folder alone.

        ``model``: an already exported copy (see :meth:`export_model`), to save without gathering again."""
        from hma_zoo import hub
        from hma_zoo.pretrained import bundle_tokenizer

        info = {"variant": self.variant, "tokenizer": self._tokenizer_name,
                "global_step": int(self.global_step) if self._trainer is not None else 0}
        if self.hparams.get("from_pretrained"):  # a fine-tune: its card names the base model
            info["base_model"] = str(self.hparams["from_pretrained"])
        info.update(meta or {})
        out = hub.save_pretrained(model if model is not None else self.export_model(), directory, meta=info)
        if self._tokenizer_name and (Path(self._tokenizer_name) / "config.json").is_file():
            bundle_tokenizer(out, self._tokenizer_name)
        return out


def load_world_model(source: str) -> nn.Module:
    """A world model from a ``save_pretrained`` folder / hub id / registered tag, or a Lightning ``.ckpt`` of
    :class:`HMALitModule` (the EMA weights if it kept them). A ``.ckpt`` is read with ``weights_only=True``."""
    from hma_zoo.model.hma import HMA

    path = Path(source)
    if path.suffix == ".ckpt":
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {source} does not exist")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if "hma_config" not in ckpt:
            raise ValueError(f"{source} is not a checkpoint of HMALitModule (no 'hma_config' entry)")
        model = HMA(HMAConfig.from_dict(ckpt["hma_config"]))
        state = ckpt["state_dict"]
        prefix = "ema." if any(k.startswith("ema.") for k in state) else "model."
        model.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        return model
    from hma_zoo.registry import load_pretrained

    return load_pretrained(source)
