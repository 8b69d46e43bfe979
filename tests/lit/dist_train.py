"""Helper script of test_distributed.py: train HMALitModule on 2 CPU processes, write what rank 0 saw as JSON.

    python tests/lit/dist_train.py {ddp|fsdp2} OUT_DIR

Run as a script (not inside pytest) because Lightning's subprocess launcher re-runs the command line per rank.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import ModelParallelStrategy

from hma_zoo.lit.callbacks import SavePretrainedCallback
from hma_zoo.lit.synthetic import SyntheticDataModule
from hma_zoo.lit.world_model import HMALitModule


class Probe(L.Callback):
    """Record per-rank facts at the end of training: parameter checksums, DTensor use, ids of the samples seen."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen += list(batch["episode_id"])

    def on_train_end(self, trainer, pl_module) -> None:
        params = list(pl_module.model.parameters())
        sharded = any(hasattr(p, "full_tensor") for p in params)
        full = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in params]
        checksum = torch.stack([p.detach().double().sum() for p in full]).sum()
        sums = [torch.zeros_like(checksum) for _ in range(trainer.world_size)]
        dist.all_gather(sums, checksum)
        seen = [None] * trainer.world_size
        dist.all_gather_object(seen, self.seen)
        if trainer.is_global_zero:
            out = Path(sys.argv[2])
            (out / "result.json").write_text(json.dumps({
                "world_size": trainer.world_size, "global_step": trainer.global_step, "sharded": sharded,
                "checksums": [float(s) for s in sums], "seen": seen,
                "loss": float(trainer.callback_metrics["train/loss"]),
            }))


def main() -> None:
    kind, out = sys.argv[1], Path(sys.argv[2])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    L.seed_everything(0)
    data = SyntheticDataModule(window=3, batch_size=4, train_size=32, val_size=8)
    model = HMALitModule("hma-vq-test", embodiments=data.embodiments, max_chunk_dim=data.max_chunk_dim,
                         window=data.window, tokenizer="tok-vq-test", warmup_steps=2, lr=1e-3,
                         val_metric_samples=2)
    strategy = (ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1) if kind == "fsdp2"
                else "ddp_find_unused_parameters_true")
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_steps=4, limit_val_batches=1,
                        val_check_interval=2, check_val_every_n_epoch=None, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                        default_root_dir=str(out),
                        callbacks=[Probe(), SavePretrainedCallback(str(out / "pretrained"))],
                        enable_checkpointing=False)
    trainer.fit(model, data)


if __name__ == "__main__":
    main()
