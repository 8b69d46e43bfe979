"""Training throughput and model FLOP utilisation (MFU) of HMA variants, against a dense matmul measured in the
same run on the same device and dtype.

    python benchmarks/train_throughput.py                                    # CPU variants, fp32 and bf16
    python benchmarks/train_throughput.py --variants hma-vq-b --device cuda --precision bf16 --batch 16

One training step = the paper's masking, ``compute_loss`` forward, backward and an AdamW step (the same path as
:class:`hma_zoo.lit.HMALitModule`). FLOPs are counted with ``torch.utils.flop_counter`` on the forward (x3 for
forward + backward); tokens are trunk image tokens (``B * T * tokens_per_frame``). Prints medians over
``--steps`` timed steps after ``--warmup`` untimed ones.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from hma_zoo.configs import EmbodimentSpec
from hma_zoo.lit.callbacks import measure_matmul_peak
from hma_zoo.lit.masking import sample_masks
from hma_zoo.lit.world_model import weight_decay_groups
from hma_zoo.registry import create_model


def _batch(model: torch.nn.Module, b: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = model.config
    t = cfg.trunk.max_frames
    h, w = cfg.tokens.grid
    if cfg.tokens.kind == "vq":
        tokens = torch.randint(0, cfg.tokens.vocab_size, (b, t, h, w), device=device)
    else:
        tokens = torch.randn(b, t, h, w, cfg.tokens.latent_channels, device=device)
    actions = torch.randn(b, t, cfg.max_chunk_dim, device=device)
    return tokens, actions


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(variant: str, batch: int, precision: str, device: torch.device, steps: int, warmup: int,
          peak: float, compile_blocks: bool = False) -> dict[str, float]:
    """Median step time, tokens/s, FLOPs per step and MFU of ``variant`` (one 7-D embodiment)."""
    torch.manual_seed(0)
    emb = [EmbodimentSpec("robot", action_dim=7, stride=1)]
    model = create_model(variant, embodiments=emb).to(device).train()
    if compile_blocks:
        for block in model.trunk.blocks:
            block.compile()
    groups, _ = weight_decay_groups(model, 0.05)
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), fused=device.type == "cuda")
    tokens, actions = _batch(model, batch, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cfg = model.config
    b, t = tokens.shape[:2]
    names = ["robot"] * b
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    def step(count: FlopCounterMode | None = None) -> None:
        m = sample_masks(b, t, cfg.tokens.grid, cfg.tokens.kind, device=device)
        with torch.autocast(device.type, dtype=dtype, enabled=precision == "bf16"):
            if count is not None:
                with count:
                    out = model.compute_loss(tokens, actions, names, m.token_mask, m.action_mask, None, m.corrupt)
            else:
                out = model.compute_loss(tokens, actions, names, m.token_mask, m.action_mask, None, m.corrupt)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    counter = FlopCounterMode(display=False)
    step(counter)
    flops = 3.0 * counter.get_total_flops()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    dt = statistics.median(times)
    peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    n_tok = b * t * cfg.tokens.tokens_per_frame
    params = sum(p.numel() for p in model.parameters())
    return {"params_m": params / 1e6, "step_s": dt, "tokens_per_s": n_tok / dt, "gflop_per_step": flops / 1e9,
            "achieved_tflops": flops / dt / 1e12, "mfu": flops / dt / peak, "peak_mem_gib": peak_mem}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=["hma-vq-t64", "hma-mar-t64", "hma-vq-s64", "hma-mar-s64"])
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--compile", action="store_true", help="torch.compile each trunk block")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    print(f"device {device}, batch {args.batch}, {args.steps} timed steps (median), threads {torch.get_num_threads()}")
    header = (f"{'variant':<12} {'prec':<5} {'params':>8} {'step (s)':>9} {'tokens/s':>10} {'GFLOP/step':>11} "
              f"{'TFLOP/s':>8} {'peak TFLOP/s':>12} {'MFU':>6} {'peak mem':>9}")
    print(header)
    print("-" * len(header))
    for precision in args.precision:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        peak = measure_matmul_peak(device, dtype)
        for variant in args.variants:
            r = bench(variant, args.batch, precision, device, args.steps, args.warmup, peak, args.compile)
            print(f"{variant:<12} {precision:<5} {r['params_m']:>7.2f}M {r['step_s']:>9.3f} {r['tokens_per_s']:>10.0f} "
                  f"{r['gflop_per_step']:>11.2f} {r['achieved_tflops']:>8.4f} {peak / 1e12:>12.4f} "
                  f"{100 * r['mfu']:>5.1f}% {r['peak_mem_gib']:>8.2f}G")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
