"""Training callbacks: throughput and model FLOP utilisation, ground-truth-vs-prediction videos, hub export.

* :class:`ThroughputCallback` logs ``perf/tokens_per_s`` (trunk image tokens, all ranks), ``perf/step_time_s``
  and ``perf/mfu``: achieved FLOP/s divided by the peak of a dense matmul measured once at the start of the run
  on the same device and dtype (so MFU means "fraction of what this machine really does", not a datasheet).
* :class:`VideoLoggingCallback` rolls out a few training samples from their first frame every N steps and logs
  ground truth (top row) against prediction (bottom row) as an animated GIF image summary to TensorBoard (and as
  ``.gif`` files under the log directory).
* :class:`SavePretrainedCallback` writes the trained model in the hub format when training ends.
"""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


def measure_matmul_peak(device: torch.device | str, dtype: torch.dtype, size: int | None = None,
                        repeats: int = 5) -> float:
    """FLOP/s of a dense ``size x size`` matmul on ``device`` in ``dtype`` (median of ``repeats`` timed runs).

    ``size`` defaults to 8192 on an accelerator and 1024 on a CPU.
    """
    device = torch.device(device)
    size = size or (1024 if device.type == "cpu" else 8192)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        a @ b
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - start)
    times.sort()
    return 2.0 * size**3 / times[len(times) // 2]


class ThroughputCallback(Callback):
    """Log tokens/s, step time and MFU every ``log_every_n_steps`` optimiser steps.

    Args:
        log_every_n_steps: logging period.
        peak_flops: FLOP/s per device to compare with; measured with :func:`measure_matmul_peak` if ``None``.
        matmul_size: size of the measuring matmul (default by device type).
    """

    def __init__(self, log_every_n_steps: int = 10, peak_flops: float | None = None,
                 matmul_size: int | None = None) -> None:
        self.log_every_n_steps = max(1, log_every_n_steps)
        self.peak_flops = peak_flops
        self.matmul_size = matmul_size
        self._t0: float | None = None
        self._tokens = 0
        self._steps = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.peak_flops is None:
            dtype = torch.bfloat16 if "bf16" in str(trainer.precision) else torch.float32
            self.peak_flops = measure_matmul_peak(pl_module.device, dtype, self.matmul_size)
            log.info("measured dense matmul peak: %.2f TFLOP/s (%s, %s)", self.peak_flops / 1e12,
                     pl_module.device, dtype)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._tokens += int(getattr(pl_module, "last_batch_tokens", 0))
        self._steps += 1
        if self._steps < self.log_every_n_steps or self._t0 is None:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        elapsed = time.perf_counter() - self._t0
        tokens_per_s = self._tokens / elapsed  # this rank
        metrics = {
            "perf/tokens_per_s": tokens_per_s * trainer.world_size,
            "perf/step_time_s": elapsed / self._steps,
            "perf/peak_matmul_tflops": (self.peak_flops or 0.0) / 1e12,
        }
        fpt = getattr(pl_module, "flops_per_token", None)
        if fpt and self.peak_flops:
            metrics["perf/mfu"] = fpt * tokens_per_s / self.peak_flops
        pl_module.log_dict(metrics, rank_zero_only=True)
        self.last_metrics = metrics
        self._t0, self._tokens, self._steps = time.perf_counter(), 0, 0


def frames_to_gif(frames: torch.Tensor, fps: int = 4) -> bytes:
    """uint8 frames ``[T, H, W, 3]`` -> bytes of an animated GIF (looping)."""
    from PIL import Image

    images = [Image.fromarray(f.cpu().numpy()) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def side_by_side(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """``[N,T,H,W,3]`` ground truth and prediction -> ``[T, 2H, N*W, 3]``: samples left to right, GT above."""
    top = torch.cat(list(gt), dim=2)
    bottom = torch.cat(list(pred), dim=2)
    return torch.cat((top, bottom), dim=1)


def _add_gif_summary(logger: Any, tag: str, gif: bytes, height: int, width: int, step: int) -> bool:
    """Write an animated GIF as a TensorBoard image summary; False if the logger is not TensorBoard."""
    writer = getattr(logger, "experiment", None)
    file_writer = getattr(writer, "_get_file_writer", None)
    if file_writer is None:
        return False
    from tensorboard.compat.proto.summary_pb2 import Summary

    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
    file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    return True


class VideoLoggingCallback(Callback):
    """Every ``every_n_steps`` training steps, roll out ``num_samples`` samples of the current batch from their
    first frame (greedy) and log ground truth against prediction.

    Needs a module with a tokenizer to decode (``HMALitModule(tokenizer=...)``); otherwise it does nothing.
    Runs on every rank (a sharded model needs all ranks for a forward) and logs on rank 0 only.

    Args:
        every_n_steps: period in optimiser steps.
        num_samples: samples per video.
        prompt_frames: ground-truth frames given before the rollout.
        save_dir: also write ``step_XXXXXX.gif`` here (default: ``<log_dir>/videos``; ``""`` disables).
    """

    def __init__(self, every_n_steps: int = 500, num_samples: int = 2, prompt_frames: int = 1,
                 save_dir: str | None = None) -> None:
        self.every_n_steps = max(1, every_n_steps)
        self.num_samples = num_samples
        self.prompt_frames = prompt_frames
        self.save_dir = save_dir
        self.written: list[Path] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or getattr(pl_module, "tokenizer", None) is None:
            return
        gt, pred = self.make_video(pl_module, batch)
        root = Path(trainer.log_dir or trainer.default_root_dir)  # every rank: log_dir is a broadcast
        if trainer.is_global_zero:
            self.log_video(trainer, gt, pred, step, root)

    @torch.no_grad()
    def make_video(self, pl_module: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Ground-truth and predicted uint8 frames ``[N, T, H, W, 3]`` for the first samples of ``batch``."""
        n = self.num_samples
        tokens, actions, names, _ = pl_module.prepare_batch(batch)
        tokens, actions, names = tokens[:n], actions[:n], names[:n]
        tok = pl_module.tokenizer
        pred = tok.decode(pl_module.rollout(tokens, actions, names, prompt_frames=self.prompt_frames))
        frames = batch.get("frames")
        gt = frames[:n] if frames is not None else tok.decode(tokens)
        return gt.cpu(), pred.cpu()

    def log_video(self, trainer: L.Trainer, gt: torch.Tensor, pred: torch.Tensor, step: int,
                  log_root: Path | None = None) -> None:
        grid = side_by_side(gt, pred)
        gif = frames_to_gif(grid)
        for logger in trainer.loggers:
            _add_gif_summary(logger, "video/gt_top_pred_bottom", gif, grid.shape[1], grid.shape[2], step)
        if self.save_dir == "":
            return
        root = Path(self.save_dir) if self.save_dir else (log_root or Path(trainer.default_root_dir)) / "videos"
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"step_{step:06d}.gif"
        path.write_bytes(gif)
        self.written.append(path)


def trained_on(trainer: L.Trainer) -> dict[str, str]:
    """``{"data": NAME}`` for the model metadata: the dataset folder name(s) of the trainer's datamodule (joined
    with ``+``), or ``{}`` when it does not say (a card then reads "not recorded")."""
    hparams = getattr(getattr(trainer, "datamodule", None), "hparams", None) or {}
    roots = hparams.get("data")
    if not roots:
        return {}
    roots = [roots] if isinstance(roots, str | os.PathLike) else list(roots)
    return {"data": "+".join(Path(str(r).rstrip("/")).name for r in roots)}


class SavePretrainedCallback(Callback):
    """At the end of ``fit``, write the model (EMA weights if kept) with ``save_pretrained`` to ``dirpath``
    (default ``<log_dir>/pretrained``), ready for ``hma_zoo.load_pretrained`` and ``from_pretrained``."""

    def __init__(self, dirpath: str | None = None) -> None:
        self.dirpath = dirpath
        self.saved_to: Path | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not hasattr(pl_module, "export_model"):
            return
        model = pl_module.export_model()  # every rank: a sharded model is gathered collectively
        root = Path(trainer.log_dir or trainer.default_root_dir)  # every rank: log_dir is a broadcast
        if not trainer.is_global_zero:
            return
        target = Path(self.dirpath) if self.dirpath else root / "pretrained"
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        self.saved_to = pl_module.save_pretrained(target, meta={"final_metrics": metrics, **trained_on(trainer)},
                                                  model=model)
        log.info("saved the trained world model to %s", self.saved_to)
