"""LightningModule that trains a zoo video tokenizer on ``batch["frames"]`` from :class:`hma_zoo.data.HMADataModule`.

The tokenizer is built by registry name (``tok-vq-f8-1k``, ``tok-kl-f8-c4``, ...) plus constructor overrides, or
continued from a saved one (``init_from``); the module holds only losses, optimisation and logging (recon
PSNR/SSIM per embodiment, codebook usage, sample images to TensorBoard). Optimisation is manual so the optional
adversarial loss can alternate generator and discriminator steps. At the end of fit a KL tokenizer's latent scale
is computed from training frames, and the tokenizer is written with :func:`hma_zoo.hub.save_pretrained` if
``export_dir`` is set.

It is the project's one tokenizer trainer: ``hma-zoo fit --config recipes/tokenizer/...`` runs it on episode shards,
and :func:`hma_zoo.tokenizers.train.train_tokenizer` (the quickstart, ``new-robot``) runs it on frames in memory.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from hma_zoo import hub
from hma_zoo.schedules import warmup_schedule
from hma_zoo.tokenizers import KLTokenizer, Tokenizer, create_tokenizer
from hma_zoo.tokenizers.losses import TokenizerLoss, codebook_usage, ssim
from hma_zoo.tokenizers.train import image_psnr, motion_masks

log = logging.getLogger(__name__)


class TokenizerLitModule(pl.LightningModule):
    """Train a tokenizer on uint8 frames ``[B, T, H, W, 3]``.

    With the adversarial loss on, Lightning counts both optimizers' steps in ``global_step`` (and so in
    ``trainer.max_steps``); ``adv_start_step``, the learning-rate schedule and image logging count generator steps.

    Args:
        tokenizer: registry name of the tokenizer.
        tokenizer_overrides: constructor overrides (e.g. ``{"vocab_size": 16384}``, ``{"image_size": [96, 96]}``).
        lr, weight_decay, warmup_steps: AdamW with linear warm-up and cosine decay to 10% over the run.
        l1_weight, l2_weight, grad_weight, adv_weight, adv_start_step, disc_width: see
            :class:`hma_zoo.tokenizers.losses.TokenizerLoss` (adversarial loss off by default).
        frames_per_sample: frames drawn at random from each window per training step (windows are correlated
            in time; ``None`` uses all ``T``).
        grad_clip: gradient-norm clip of the tokenizer.
        log_images_every_n_steps: training steps between sample-image logs (first validation batch also logged).
        num_log_images: images in each logged grid.
        scale_sample_frames: frames kept from training batches for the KL scale fit.
        export_dir: if set, ``save_pretrained`` the trained tokenizer there at the end of fit.
        motion_weight: extra weight of the pixels that move (:func:`hma_zoo.tokenizers.train.motion_masks`) in the
            L1 / L2 terms: a moving pixel counts ``1 + motion_weight`` times. The mask is ``batch["motion"]`` (bool
            ``[B, T, H, W]``) when the batch has one, else it is computed from each window's frames (in time order).
        init_from: continue from a saved tokenizer (folder, tag or hub id); its architecture replaces ``tokenizer``
            and ``tokenizer_overrides``.
        time_limit_s: stop after this many seconds of training; the cosine then decays by whichever of steps and
            time runs out first.

    ``train_metrics`` holds running means (0.95 exponential) of the logged loss parts and PSNR, the generator steps
    and the training seconds (what :func:`~hma_zoo.tokenizers.train.train_tokenizer` stores as ``meta["train"]``).
    """

    def __init__(
        self,
        tokenizer: str = "tok-vq-f8-1k",
        tokenizer_overrides: dict[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        l1_weight: float = 1.0,
        l2_weight: float = 1.0,
        grad_weight: float = 0.0,
        adv_weight: float = 0.0,
        adv_start_step: int = 2000,
        disc_width: int = 32,
        frames_per_sample: int | None = 4,
        grad_clip: float = 1.0,
        log_images_every_n_steps: int = 500,
        num_log_images: int = 8,
        scale_sample_frames: int = 2048,
        export_dir: str | None = None,
        motion_weight: float = 0.0,
        init_from: str | None = None,
        time_limit_s: float | None = None,
    ) -> None:
        super().__init__()
        # The CLI links data facts (embodiments, window, ...) into every model; a tokenizer takes none of them,
        # and keeping them in hparams would clash with the data module's own hparams of the same names.
        self.save_hyperparameters(ignore=["embodiments", "max_chunk_dim", "window", "token_info"])
        self.automatic_optimization = False
        if motion_weight < 0:
            raise ValueError(f"motion_weight must be >= 0, got {motion_weight}")
        if init_from is not None:
            from hma_zoo.tokenizers import load_tokenizer

            self.tokenizer: Tokenizer = load_tokenizer(init_from)
        else:
            self.tokenizer = create_tokenizer(tokenizer, **(tokenizer_overrides or {}))
        self.criterion = TokenizerLoss(l1_weight, l2_weight, grad_weight, adv_weight, adv_start_step, disc_width)
        self._scale_sample: list[torch.Tensor] = []
        self._val_counts: torch.Tensor | None = None
        self._val_logged_images = False
        self.train_metrics: dict[str, float] = {}
        self._start: float | None = None

    # ------------------------------------------------------------------ data plumbing
    def _images(self, batch: dict[str, Any], train: bool) -> tuple[torch.Tensor, list[str]]:
        """``batch["frames"]`` uint8 ``[B, T, H, W, 3]`` -> images ``[N, 3, H, W]`` in [-1, 1] and their embodiments."""
        images, embodiments, _ = self._images_and_weights(batch, train)
        return images, embodiments

    def _images_and_weights(
        self, batch: dict[str, Any], train: bool
    ) -> tuple[torch.Tensor, list[str], torch.Tensor | None]:
        """:meth:`_images` plus the per-pixel loss weight ``[N, 1, H, W]`` (``None`` without ``motion_weight``)."""
        if "frames" not in batch:
            raise KeyError(
                "TokenizerLitModule trains on batch['frames'] (uint8 [B, T, H, W, 3]); this batch has "
                f"{sorted(batch)}. Point the datamodule at episode (frame) shards, not token shards"
            )
        frames = batch["frames"]
        if frames.ndim == 4:
            frames = frames.unsqueeze(1)
        self.tokenizer._check_frames(frames)
        b, t = frames.shape[:2]
        embodiments = list(batch.get("embodiment", ["?"] * b))
        moving = None
        if train and self.hparams.motion_weight > 0:
            moving = batch.get("motion")
            if moving is None:  # each window's frames are in time order
                moving = torch.stack([motion_masks(f.cpu()) for f in frames]).to(frames.device)
            moving = moving.reshape(b, t, *frames.shape[2:4])
        k = self.hparams.frames_per_sample
        if train and k is not None and k < t:
            idx = torch.rand(b, t, device=frames.device).argsort(1)[:, :k]
            frames = torch.gather(frames, 1, idx[:, :, None, None, None].expand(-1, -1, *frames.shape[2:]))
            if moving is not None:
                moving = torch.gather(moving, 1, idx[:, :, None, None].expand(-1, -1, *moving.shape[2:]))
            t = k
        images = frames.flatten(0, 1).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        weight = None if moving is None else 1.0 + self.hparams.motion_weight * moving.flatten(0, 1)[:, None].float()
        return images, [e for e in embodiments for _ in range(t)], weight

    # ------------------------------------------------------------------ training
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        opt = torch.optim.AdamW(self.tokenizer.parameters(), lr=hp.lr, betas=(0.9, 0.99), weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 10_000

        def factor(step: int) -> float:
            # with a time limit, decay by whichever budget runs out first: steps or time
            floor = 0.0
            if hp.time_limit_s and self._start is not None:
                floor = (time.monotonic() - self._start) / hp.time_limit_s
            return warmup_schedule(step, hp.warmup_steps, "cosine", total, 0.1, progress_floor=floor)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        opts: list[torch.optim.Optimizer] = [opt]
        if self.criterion.discriminator is not None:
            opts.append(torch.optim.AdamW(self.criterion.discriminator.parameters(), lr=hp.lr, betas=(0.5, 0.9)))
        return opts, [{"scheduler": sched, "interval": "step"}]

    def on_train_start(self) -> None:
        self._start = time.monotonic()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images, _, weight = self._images_and_weights(batch, train=True)
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        sched = self.lr_schedulers()
        # generator steps (Lightning's global_step counts the discriminator's optimizer steps too)
        step = int(sched.last_epoch) if sched is not None else self.global_step  # type: ignore[union-attr]
        out = self.tokenizer(images)
        loss, parts = self.criterion.generator_loss(images, out, step, pixel_weight=weight)
        opts[0].zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.hparams.grad_clip:
            self.clip_gradients(opts[0], gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opts[0].step()
        if sched is not None:
            sched.step()  # type: ignore[union-attr]
        if len(opts) > 1 and self.criterion.adversarial_active(step):
            d_loss = self.criterion.discriminator_loss(images, out.recon)
            opts[1].zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            opts[1].step()
            parts["d"] = d_loss.detach()
        parts["psnr"] = image_psnr(out.recon, images).mean()
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, prog_bar=False)
        self.log("train/loss", loss.detach(), prog_bar=True)
        if self.tokenizer.spec.kind == "vq":
            ids = out.tokens.flatten()
            self.log("train/batch_usage", ids.unique().numel() / self.tokenizer.spec.vocab_size)
        if isinstance(self.tokenizer, KLTokenizer):
            self._keep_scale_sample(batch["frames"])
        if self.hparams.log_images_every_n_steps and step % self.hparams.log_images_every_n_steps == 0:
            self._log_images("train/samples", images, out.recon)
        self._track(parts, step)
        return loss.detach()

    def _track(self, parts: dict[str, torch.Tensor], step: int) -> None:
        """Running means of the loss parts in ``train_metrics``; stop the fit when ``time_limit_s`` has passed."""
        running = self.train_metrics
        for k, v in parts.items():
            running[k] = 0.95 * running.get(k, float(v)) + 0.05 * float(v)
        seconds = time.monotonic() - (self._start if self._start is not None else time.monotonic())
        running.update(steps=step + 1, seconds=seconds)
        if step % 200 == 0:
            log.info("step %d: %s", step, {k: round(v, 5) for k, v in running.items()})
        if self.hparams.time_limit_s is not None and seconds > self.hparams.time_limit_s:
            log.info("time limit %.0f s reached after %d steps", self.hparams.time_limit_s, step + 1)
            self.trainer.should_stop = True

    def _keep_scale_sample(self, frames: torch.Tensor) -> None:
        kept = sum(f.shape[0] for f in self._scale_sample)
        if kept < self.hparams.scale_sample_frames:
            flat = frames.reshape(-1, *frames.shape[-3:])
            self._scale_sample.append(flat[: self.hparams.scale_sample_frames - kept].detach().cpu())

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val_counts = None
        self._val_logged_images = False

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        images, embodiments = self._images(batch, train=False)
        tokens = self.tokenizer.encode_images(images)
        recon = self.tokenizer.decode_images(tokens)
        p, s = image_psnr(recon, images), ssim(recon, images)
        n = images.shape[0]
        self.log("val/psnr", p.mean(), batch_size=n, prog_bar=True, sync_dist=True)
        self.log("val/ssim", s.mean(), batch_size=n, sync_dist=True)
        for emb in sorted(set(embodiments)):
            m = torch.tensor([e == emb for e in embodiments], device=p.device)
            self.log(f"val/psnr/{emb}", p[m].mean(), batch_size=int(m.sum()), sync_dist=True)
        if self.tokenizer.spec.kind == "vq":
            counts = torch.bincount(tokens.flatten(), minlength=self.tokenizer.spec.vocab_size)
            self._val_counts = counts if self._val_counts is None else self._val_counts + counts
        if not self._val_logged_images:
            self._log_images("val/samples", images, recon)
            self._val_logged_images = True

    def on_validation_epoch_end(self) -> None:
        if self._val_counts is None:
            return
        counts = self.all_gather(self._val_counts)
        counts = counts.sum(0) if counts.ndim > 1 else counts
        stats = codebook_usage(counts)
        self.log("val/codebook_usage", stats["usage"], rank_zero_only=True)
        self.log("val/codebook_perplexity", stats["perplexity"], rank_zero_only=True)

    def _log_images(self, tag: str, images: torch.Tensor, recon: torch.Tensor) -> None:
        logger = self.logger
        experiment = getattr(logger, "experiment", None) if logger is not None else None
        if experiment is None or not hasattr(experiment, "add_images"):
            return
        k = min(self.hparams.num_log_images, images.shape[0])
        pair = torch.cat([images[:k], recon[:k].detach()]).float().clamp(-1, 1).add(1).div(2).cpu()
        experiment.add_images(tag, pair, global_step=self.global_step)

    # ------------------------------------------------------------------ checkpoint and export
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokenizer_spec"] = self.tokenizer.spec.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        spec = checkpoint.get("tokenizer_spec")
        if spec and isinstance(self.tokenizer, KLTokenizer):
            import dataclasses

            self.tokenizer.spec = dataclasses.replace(self.tokenizer.spec, scale=float(spec["scale"]))

    def _fit_scale_once(self) -> None:
        """KL tokenizers: set the latent scale from kept training frames (once, before anything is exported)."""
        if isinstance(self.tokenizer, KLTokenizer) and self._scale_sample:
            self.tokenizer.fit_scale(torch.cat(self._scale_sample).to(self.device))
            self._scale_sample = []

    def save_pretrained(self, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write the tokenizer with :func:`hma_zoo.hub.save_pretrained` (used by ``SavePretrainedCallback`` too)."""
        self._fit_scale_once()
        meta = {"variant": self.hparams.tokenizer, "global_step": self.global_step, **(meta or {})}
        return hub.save_pretrained(self.tokenizer, directory, meta=meta)

    def on_train_end(self) -> None:
        self._fit_scale_once()

    def on_fit_end(self) -> None:
        self._fit_scale_once()
        if self.hparams.export_dir and self.trainer.is_global_zero:
            metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if v.numel() == 1}
            from hma_zoo.lit.callbacks import trained_on

            self.save_pretrained(self.hparams.export_dir, meta={"final_metrics": metrics, **trained_on(self.trainer)})
            log.info("saved tokenizer to %s", self.hparams.export_dir)
