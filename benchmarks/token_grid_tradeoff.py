"""Tokens per frame against training and simulator speed: f8 (8 x 8 ids), f4 (16 x 16 ids) and f4 grouped 2 x 2.

Usage::

    nice .venv/bin/python benchmarks/token_grid_tradeoff.py [--variant hma-vq-t64] [--threads 1] [--repeats 7]

For each token layout, with random weights (speed does not depend on training), one run prints side by side:

* ``train s/step``: one optimiser step of the world model (batch 8 windows x 8 frames, the quickstart's batch);
* ``tok s/step``: one optimiser step of the tokenizer (batch 32 images);
* ``sim FPS``: ``Simulator.step`` at batch 1 (2 MaskGIT steps per frame, tokenizer decode included);

as medians of ``--repeats`` after a warm-up, with ratios to the f8 layout. Tokenizers: ``tok-vq-f8-1k`` (f8) and
``tok-vq-f4-4k`` (f4). The machine and thread count are printed with the table.
"""

from __future__ import annotations

import argparse
import os
import platform

import torch
from _timing import median_seconds

import hma_zoo
from hma_zoo.configs import EmbodimentSpec
from hma_zoo.lit.world_model import trunk_patch_size
from hma_zoo.registry import model_config
from hma_zoo.sim import Simulator
from hma_zoo.tokenizers import create_tokenizer

LAYOUTS = {  # name: (tokenizer, group the f4 grid down to the variant's trunk grid?)
    "f8 8x8": ("tok-vq-f8-1k", False),
    "f4 16x16": ("tok-vq-f4-4k", False),
    "f4 16x16 grouped 2x2": ("tok-vq-f4-4k", True),
}


def measure(variant: str, tokenizer: str, grouped: bool, repeats: int) -> dict[str, float]:
    """Median seconds of a world-model and a tokenizer training step, and simulator frames per second."""
    emb = EmbodimentSpec("robot", action_dim=4, stride=4)
    tok = create_tokenizer(tokenizer)
    p = trunk_patch_size(tok.spec.grid, model_config(variant, embodiments=[emb]).tokens) if grouped else 1
    model = hma_zoo.create_model(variant, embodiments=[emb], tokens=tok.spec.token_spec(patch_size=p))
    spec = model.config.tokens
    b, t = 8, 8
    tokens = torch.randint(0, spec.vocab_size, (b, t, *spec.grid))
    actions = torch.randn(b, t, model.config.max_chunk_dim)
    mask = torch.rand(b, t, *spec.trunk_grid) < 0.5
    mask[:, 0] = False
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def wm_step() -> None:
        loss = model.compute_loss(tokens, actions, ["robot"] * b, mask.flatten(2))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    images = torch.rand(32, 3, 64, 64) * 2 - 1
    tok_opt = torch.optim.AdamW(tok.parameters(), lr=1e-4)

    def tok_step() -> None:
        out = tok(images)
        loss = (out.recon - images).abs().mean() + out.aux_loss
        tok_opt.zero_grad()
        loss.backward()
        tok_opt.step()

    train_s = median_seconds(wm_step, repeats, warmup=2)
    tok_s = median_seconds(tok_step, repeats, warmup=2)
    model.eval()
    tok.eval()
    sim = Simulator(model, tok, steps=2, temperature=1.0, record=False)
    sim.reset(torch.randint(0, 256, (1, 2, 64, 64, 3), dtype=torch.uint8), embodiment="robot")
    step_s = median_seconds(lambda: sim.step(torch.randn(1, 4)), max(repeats, 10), warmup=3)
    return {"tokens": spec.grid[0] * spec.grid[1], "trunk": spec.tokens_per_frame, "train_s": train_s,
            "tok_s": tok_s, "fps": 1.0 / step_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="hma-vq-t64")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{platform.machine()} {platform.processor() or ''} CPU, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads; {args.variant}; medians of {args.repeats}")
    rows = {name: measure(args.variant, tok, grouped, args.repeats) for name, (tok, grouped) in LAYOUTS.items()}
    base = rows["f8 8x8"]
    print(f"{'layout':<22} {'ids/frame':>9} {'trunk tok':>9} {'train s/step':>12} {'x f8':>6} {'tok s/step':>10} "
          f"{'x f8':>6} {'sim FPS':>8} {'x f8':>6}")
    for name, r in rows.items():
        print(f"{name:<22} {r['tokens']:>9} {r['trunk']:>9} {r['train_s']:>12.3f} "
              f"{r['train_s'] / base['train_s']:>6.2f} {r['tok_s']:>10.3f} {r['tok_s'] / base['tok_s']:>6.2f} "
              f"{r['fps']:>8.1f} {r['fps'] / base['fps']:>6.2f}")


if __name__ == "__main__":
    main()
