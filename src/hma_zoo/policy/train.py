"""One Lightning training path for the small image networks of this package (BC policies and success judges).

:class:`FrameGoalLit` trains a :class:`~hma_zoo.policy.nets.FrameGoalNet` on minibatches drawn from in-memory
:class:`~hma_zoo.policy.nets.TaskFrames` (:class:`FrameBatches`), with MSE (regression, BC) or binary cross-entropy
(judges) loss, AdamW and a cosine schedule. Training stops on ``max_steps``; :class:`SaveAtSteps` exports the
network at chosen steps (graded-quality BC policies are such snapshots).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from hma_zoo.policy.nets import FrameGoalNet, TaskFrames, frames_to_input, random_shift

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - lightning is a core dependency
    import pytorch_lightning as pl  # type: ignore[no-redef]


class FrameBatches(IterableDataset):
    """An endless stream of minibatches ``{"x", "goal", "y"}`` from in-memory task frames.

    Args:
        data: the frames.
        target: ``"chunk"`` (BC: the normalised action chunk of frames that have one) or ``"label"`` (judges).
        batch_size: samples per batch.
        context: frames per input.
        seed: sampling seed.
        chunk_mean, chunk_std: normalisation of the chunk targets.
        balance: for labels: draw positives and negatives equally often (success frames are rare).
        shift: random-shift augmentation in pixels (0 = off).
    """

    def __init__(self, data: TaskFrames, target: str, batch_size: int, context: int, seed: int = 0,
                 chunk_mean: np.ndarray | None = None, chunk_std: np.ndarray | None = None,
                 balance: bool = False, shift: int = 4) -> None:
        super().__init__()
        self.data, self.target, self.batch_size, self.context = data, target, int(batch_size), int(context)
        self.seed, self.shift, self.balance = int(seed), int(shift), bool(balance)
        self.chunk_mean, self.chunk_std = chunk_mean, chunk_std
        if target == "chunk":
            self.pool = np.flatnonzero(data.has_chunk)
        else:
            self.pool = np.arange(len(data.label))
        if self.pool.size == 0:
            raise ValueError("no training samples (episodes without actions?)")
        self.pos = np.flatnonzero(data.label[self.pool] >= 0.5)
        self.neg = np.flatnonzero(data.label[self.pool] < 0.5)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        d = self.data
        while True:
            if self.balance and self.pos.size and self.neg.size:
                half = self.batch_size // 2
                idx = np.concatenate([self.pool[self.pos[rng.integers(0, self.pos.size, half)]],
                                      self.pool[self.neg[rng.integers(0, self.neg.size, self.batch_size - half)]]])
            else:
                idx = self.pool[rng.integers(0, self.pool.size, self.batch_size)]
            x = frames_to_input(d.inputs(idx, self.context))
            if self.shift:
                x = random_shift(x, self.shift, gen)
            if self.target == "chunk":
                y = torch.from_numpy((d.chunk[idx] - self.chunk_mean) / self.chunk_std).float()
            else:
                y = torch.from_numpy(d.label[idx]).float()
            yield {"x": x, "goal": torch.from_numpy(d.goal[idx]), "y": y}


class FrameGoalLit(pl.LightningModule):
    """Lightning wrapper: ``loss="mse"`` (regression of ``y [N, out]``) or ``"bce"`` (logit vs ``y [N]`` in [0, 1])."""

    def __init__(self, net: FrameGoalNet, loss: str = "mse", lr: float = 1e-3, weight_decay: float = 1e-4,
                 warmup_steps: int = 50, max_steps: int = 1000) -> None:
        super().__init__()
        if loss not in ("mse", "bce"):
            raise ValueError(f"loss must be 'mse' or 'bce', got {loss!r}")
        self.net, self.loss_kind, self.lr, self.weight_decay = net, loss, lr, weight_decay
        self.warmup_steps, self.max_steps = int(warmup_steps), int(max_steps)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self.net(batch["x"], batch["goal"])
        if self.loss_kind == "mse":
            loss = F.mse_loss(out, batch["y"])
        else:
            loss = F.binary_cross_entropy_with_logits(out[:, 0], batch["y"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.global_step}; lower the lr")
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=batch["x"].shape[0])
        return loss

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)

        def factor(step: int) -> float:
            if step < self.warmup_steps:
                return (step + 1) / max(self.warmup_steps, 1)
            p = (step - self.warmup_steps) / max(self.max_steps - self.warmup_steps, 1)
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class SaveAtSteps(pl.Callback):
    """Call ``save(step)`` after the optimizer steps listed in ``steps`` (and at the end of training)."""

    def __init__(self, steps: Sequence[int], save: Callable[[int], Any]) -> None:
        self.steps, self.save, self.done = sorted({int(s) for s in steps}), save, set()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step in self.steps and step not in self.done:
            self.done.add(step)
            self.save(step)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        step = trainer.global_step
        if step not in self.done:
            self.done.add(step)
            self.save(step)


def fit(lit: FrameGoalLit, batches: FrameBatches, max_steps: int, callbacks: Sequence[Any] = (),
        progress: bool = True) -> None:
    """Train ``lit`` for ``max_steps`` optimizer steps on ``batches`` on the CPU (no logger, no checkpoints)."""
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=int(max_steps), logger=False,
                         enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                         callbacks=list(callbacks), gradient_clip_val=1.0)
    loader = DataLoader(batches, batch_size=None, num_workers=0)
    trainer.fit(lit, loader)


__all__ = ["FrameBatches", "FrameGoalLit", "SaveAtSteps", "fit"]
