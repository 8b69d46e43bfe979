"""A short FSDP2 training run of the GPU recipe's path on synthetic data (no dataset, no network needed).

    python benchmarks/fsdp_smoke.py --variant hma-vq-b --steps 200 --device cuda --precision bf16-mixed
    python benchmarks/fsdp_smoke.py --variant hma-vq-test --tokenizer tok-vq-test --steps 3 --device cpu \\
        --precision 32-true --image-size 32           # the CPU smoke mode of benchmarks/gpu_suite.sh

What ``recipes/pretrain/hma-vq-b_simmix_gpu.yaml`` runs, on one device: Lightning's ``ModelParallelStrategy``
(FSDP2: ``fully_shard`` per trunk block, then the whole model; see ``HMALitModule.configure_model``), the same
optimiser, warm-up and clipping, bf16 autocast, optionally ``torch.compile`` per block. The data are the
moving-square videos of :class:`hma_zoo.lit.synthetic.SyntheticDataModule`, tokenised on the fly by a randomly
initialised tokenizer (``tok-vq-f8-1k``: 64x64 frames, 8x8 tokens, as the recipe's sim-mix data). Prints steps,
wall time, steps/s, the first and last training loss, whether the parameters were sharded (DTensor) and the peak memory.
Exits non-zero if the loss is not finite or the run stopped early.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import lightning as L
import torch


class _Record(L.Callback):
    """Keep the training loss of every step, the step times and whether the parameters are DTensors."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.sharded = False
        self.start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.sharded = any(hasattr(p, "full_tensor") for p in pl_module.parameters())
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: object,
                           batch_idx: int) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            self.losses.append(float(loss))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="hma-vq-b")
    p.add_argument("--tokenizer", default="tok-vq-f8-1k", help="tokenizer name (random weights)")
    p.add_argument("--image-size", type=int, default=64, help="frame size (the tokenizer's; tok-vq-f8-1k: 64)")
    p.add_argument("--window", type=int, default=None, help="frames per window (default: the variant's max_frames)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--precision", default="bf16-mixed")
    p.add_argument("--compile", action="store_true", help="torch.compile each trunk block")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lightning.pytorch.strategies import ModelParallelStrategy

    from hma_zoo.lit.synthetic import SyntheticDataModule, default_embodiments
    from hma_zoo.lit.world_model import HMALitModule
    from hma_zoo.registry import model_config

    L.seed_everything(0)
    window = args.window or model_config(args.variant, embodiments=default_embodiments()).trunk.max_frames
    data = SyntheticDataModule(window=window, image_size=(args.image_size, args.image_size), batch_size=args.batch,
                               train_size=args.batch * args.steps, val_size=args.batch,
                               square=max(4, args.image_size // 8))
    model = HMALitModule(args.variant, embodiments=data.embodiments, max_chunk_dim=data.max_chunk_dim,
                         window=data.window, tokenizer=args.tokenizer, warmup_steps=min(50, args.steps),
                         lr=1e-4, val_metric_samples=0, compile=args.compile)
    record = _Record()
    strategy = ModelParallelStrategy(data_parallel_size=1, tensor_parallel_size=1)
    trainer = L.Trainer(accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, strategy=strategy,
                        precision=args.precision, max_steps=args.steps, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        gradient_clip_val=1.0, callbacks=[record], num_sanity_val_steps=0)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(model, data)
    wall = time.perf_counter() - record.start
    steps = trainer.global_step
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else float("nan")
    first, last = (record.losses[0], record.losses[-1]) if record.losses else (float("nan"), float("nan"))
    print(f"fsdp2 smoke: {args.variant} on {args.device}, {args.precision}, batch {args.batch} x {window} frames of "
          f"{args.image_size}px, {steps}/{args.steps} steps in {wall:.1f} s ({steps / max(wall, 1e-9):.2f} steps/s), "
          f"loss {first:.3f} -> {last:.3f}, sharded (DTensor) {record.sharded}, peak memory {peak:.2f} GiB")
    ok = steps == args.steps and record.losses and all(math.isfinite(x) for x in record.losses) and record.sharded
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
