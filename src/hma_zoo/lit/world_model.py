"""``HMALitModule``: trains an HMA world model. Losses, optimiser and logging only; the model lives in
:mod:`hma_zoo.model` (built from a registry variant) and knows nothing of Lightning.

Per step: take a batch (see the batch contract in :mod:`hma_zoo.data`), tokenise ``frames`` on the fly with a
frozen tokenizer when the batch carries no ``tokens``, draw the paper's masks (:mod:`hma_zoo.lit.masking`) and
call :meth:`hma_zoo.model.HMA.compute_loss`. Logged: losses (total, video, action, and video loss per
embodiment), token accuracy, learning rate; in validation also PSNR and delta-PSNR (true vs random actions) of
teacher-forced predictions on a few samples. Throughput / MFU and videos come from :mod:`hma_zoo.lit.callbacks`.

Optimiser: AdamW, betas (0.9, 0.95), weight decay only on the weights of linear / conv layers (norms, biases,
embedding tables, positional and mask embeddings are excluded), linear warm-up then constant or cosine.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from hma_zoo.configs import EmbodimentSpec, HMAConfig
from hma_zoo.lit.masking import MaskingConfig, sample_masks

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


def warmup_schedule(step: int, warmup_steps: int, schedule: str, total_steps: int | None,
                    min_lr_ratio: float) -> float:
    """Learning-rate multiplier at optimiser ``step``: linear warm-up to 1, then ``constant`` or ``cosine`` decay
    to ``min_lr_ratio`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if total_steps is None:
        raise ValueError("the cosine schedule needs total_steps (or a Trainer with max_steps)")
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def psnr_uint8(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of uint8 images ``[B, ...]`` (data range 255), one value per sample ``[B]``."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


class HMALitModule(L.LightningModule):
    """Train an HMA world model from a registry variant.

    Args:
        variant: registry name, e.g. ``"hma-vq-s64"`` (see ``hma-zoo models``).
        overrides: :class:`~hma_zoo.configs.HMAConfig` field overrides; sub-configs may be partial dicts,
            e.g. ``{"trunk": {"depth": 2}, "conditioning": {"mode": "adaln"}}``.
        embodiments: the robots (linked from the data module in recipes; never repeat them by hand).
        max_chunk_dim: width of the batch's action rows (linked from the data); batches narrower than the model's
            widest chunk are zero-padded.
        window: frames per training window (linked from the data); raises ``trunk.max_frames`` if larger.
        tokenizer: frozen tokenizer (registry name, saved folder or hub id) used to tokenise ``frames`` on the fly
            and to decode predictions for PSNR / videos; it also sets the model's token grid and vocabulary.
        token_info: the ``token_info`` of a pre-tokenised dataset (linked from the data): sets the token grid and
            vocabulary when no tokenizer is given, and loads the tokenizer for decoding if it names a saved one.
        masking: the paper's masking knobs (:class:`~hma_zoo.lit.masking.MaskingConfig`).
        lr, betas, eps, weight_decay: AdamW (paper: betas (0.9, 0.95)).
        warmup_steps, schedule, total_steps, min_lr_ratio: linear warm-up, then ``constant`` or ``cosine`` to
            ``min_lr_ratio * lr`` at ``total_steps`` (default: the Trainer's estimated stepping batches).
        ema_decay: keep an exponential moving average of the weights (used for validation and export).
        freeze_trunk: train only stems, heads and embeddings (fine-tuning a new embodiment).
        from_pretrained: start from a saved world model (``save_pretrained`` folder / hub id) or a Lightning
            ``.ckpt`` of this module; embodiments of the data that it lacks are added with new stems and heads.
        val_metric_samples: samples of the first validation batch used for PSNR / delta-PSNR (0 disables).
        sample_steps: MaskGIT / MAR steps per frame when predicting for metrics and videos.
        compile: ``torch.compile`` each trunk block (rarely worth it on a CPU).
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
        masking: MaskingConfig | None = None,
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
    ) -> None:
        super().__init__()
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}")
        embodiments = tuple(e if isinstance(e, EmbodimentSpec) else EmbodimentSpec(**e) for e in (embodiments or ()))
        # JSON-friendly hyper-parameters: the checkpoint then loads with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["embodiments", "masking"])
        self.hparams["embodiments"] = [dict(vars(e)) for e in embodiments]
        self.masking = masking or MaskingConfig()
        self.hparams["masking"] = dict(vars(self.masking))
        self.variant = variant
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.warmup_steps, self.schedule, self.total_steps, self.min_lr_ratio = (
            warmup_steps, schedule, total_steps, min_lr_ratio)
        self.ema_decay = ema_decay
        self.val_metric_samples = val_metric_samples
        self.sample_steps = sample_steps
        self.compile_blocks = compile
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
                raise ValueError(f"window {window} exceeds the pretrained model's max_frames "
                                 f"{model.config.trunk.max_frames}; use a shorter window")
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
                overrides["tokens"] = spec.token_spec(patch_size=base.tokens.patch_size)
        if window is not None:
            trunk = dict(overrides.get("trunk") or {})
            base = model_config(variant, embodiments=overrides["embodiments"])
            if window > trunk.get("max_frames", base.trunk.max_frames):
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
        cfg = self.model.config.tokens
        masks = sample_masks(b, t, cfg.grid, cfg.kind, self.masking, device="cpu" if generator else device,
                             generator=generator)
        return masks._replace(
            token_mask=masks.token_mask.to(device),
            corrupt=None if masks.corrupt is None else masks.corrupt.to(device),
            action_mask=masks.action_mask.to(device),
        )

    def _loss(self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None):
        tokens, actions, names, valid = self.prepare_batch(batch)
        b, t = tokens.shape[:2]
        m = self._masks(b, t, tokens.device, generator)
        out = model.compute_loss(tokens, actions, names, m.token_mask, action_mask=m.action_mask,
                                 action_valid=valid, corrupt=m.corrupt)
        return out, names, tokens

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.flops_per_token is None:
            out, names, tokens = self._measure_flops(batch)
        else:
            out, names, tokens = self._loss(self.model, batch)
        b = tokens.shape[0]
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

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self._update_ema()

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema_p = [p for p in self.ema.parameters()]
        cur_p = [p.detach() for p in self.model.parameters()]
        torch._foreach_lerp_(ema_p, cur_p, 1.0 - self.ema_decay)
        for eb, b in zip(self.ema.buffers(), self.model.buffers()):
            eb.copy_(b)

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
            metrics = self.prediction_metrics(batch, self.val_metric_samples)
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
    def teacher_forced(self, tokens: torch.Tensor, actions: torch.Tensor, names: list[str]) -> torch.Tensor:
        """Frame ``t >= 1`` predicted greedily from the ground-truth frames ``< t`` -> ``[B,T,...]``."""
        model = self.eval_model()
        was_training = model.training
        model.eval()
        try:
            return model.generate_teacher_forced(tokens, actions, names, steps=self.sample_steps, temperature=0.0)
        finally:
            model.train(was_training)

    def random_actions(self, actions: torch.Tensor, names: list[str], generator: torch.Generator | None = None
                       ) -> torch.Tensor:
        """Raw actions drawn from each embodiment's statistics: N(0, 1) normalised, shape of ``actions``."""
        model = self.eval_model()
        idx = model.embodiment_index(names, actions.shape[0])
        noise = torch.randn(actions.shape, generator=generator).to(actions)
        raw = model.unnormalize_actions(noise, idx)
        width = torch.tensor([model.config.embodiments[i].chunk_dim for i in idx.tolist()], device=actions.device)
        keep = torch.arange(actions.shape[-1], device=actions.device).view(1, 1, -1) < width.view(-1, 1, 1)
        return raw * keep

    @torch.no_grad()
    def prediction_metrics(self, batch: dict[str, Any], n: int) -> dict[str, torch.Tensor]:
        """PSNR of teacher-forced predictions (frames ``1..T-1``, decoded) and delta-PSNR: PSNR with the true
        actions minus PSNR with random actions (controllability, as in Genie / the paper), on ``n`` samples."""
        tok = self.tokenizer
        if tok is None:
            return {}
        tokens, actions, names, _ = self.prepare_batch(batch)
        tokens, actions, names = tokens[:n], actions[:n], names[:n]
        frames = batch.get("frames")
        gt = frames[:n] if frames is not None else tok.decode(tokens)
        gen = torch.Generator().manual_seed(0)
        pred = tok.decode(self.teacher_forced(tokens, actions, names))
        pred_rand = tok.decode(self.teacher_forced(tokens, self.random_actions(actions, names, gen), names))
        gt_f, p_f, r_f = (x[:, 1:].flatten(0, 1).to(gt.device) for x in (gt, pred, pred_rand))
        psnr = psnr_uint8(p_f, gt_f).mean()
        psnr_rand = psnr_uint8(r_f, gt_f).mean()
        return {"psnr": psnr, "delta_psnr": psnr - psnr_rand}

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
        """Write the evaluation weights (EMA if kept) in the hub format (``config.json`` + ``model.safetensors``).

        ``model``: an already exported copy (see :meth:`export_model`), to save without gathering again."""
        from hma_zoo import hub

        info = {"variant": self.variant, "tokenizer": self._tokenizer_name,
                "global_step": int(self.global_step) if self._trainer is not None else 0, **(meta or {})}
        return hub.save_pretrained(model if model is not None else self.export_model(), directory, meta=info)


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
