"""Measure trained tokenizers on a dataset's validation split and print Markdown tables (used for docs/tokenizers.md).

    nice .venv/bin/python -m hma_zoo.tokenizers.report outputs/tokenizers/tok-vq-f8-1k outputs/tokenizers/tok-kl-f8-c4 \
        --data data/sim-mix-mini --figure docs/img/tokenizer_recon.png

Per embodiment: reconstruction PSNR (dB, data range 1, mean over frames), SSIM, and for discrete tokenizers the
codebook usage (fraction of ids used) and perplexity over all validation tokens. Optionally writes a PNG of
originals and reconstructions (one row per tokenizer, first frame of each embodiment).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from hma_zoo.tokenizers import load_tokenizer
from hma_zoo.tokenizers.train import evaluate_tokenizer, load_frames

log = logging.getLogger(__name__)


def markdown_table(name: str, results: dict[str, dict[str, float]]) -> str:
    """One Markdown table of :func:`hma_zoo.tokenizers.train.evaluate_tokenizer` results."""
    vq = "usage" in results["all"]
    head = "| embodiment | frames | PSNR (dB) | SSIM |" + (" usage | perplexity |" if vq else "")
    rule = "|---|---|---|---|" + ("---|---|" if vq else "")
    rows = [f"**{name}**", "", head, rule]
    for emb, m in results.items():
        row = f"| {emb} | {int(m['frames'])} | {m['psnr']:.2f} | {m['ssim']:.4f} |"
        if vq:
            row += f" {m['usage']:.3f} | {m['perplexity']:.0f} |"
        rows.append(row)
    return "\n".join(rows)


def save_figure(tokenizers: dict[str, torch.nn.Module], frames: dict[str, torch.Tensor], path: Path) -> None:
    """PNG grid: row 0 originals, then one row per tokenizer; one column per embodiment (its middle frame)."""
    from PIL import Image

    originals = torch.stack([f[f.shape[0] // 2] for f in frames.values()])  # [E, H, W, 3]
    rows = [originals]
    for tok in tokenizers.values():
        rows.append(tok.decode(tok.encode(originals.unsqueeze(0)))[0])
    grid = torch.cat([torch.cat(list(r), dim=1) for r in rows], dim=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.numpy()).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tokenizers", nargs="+", help="saved tokenizer folders (or registry names)")
    parser.add_argument("--data", action="append", required=True, help="dataset folder(s); their 'val' split is used")
    parser.add_argument("--max-frames", type=int, default=None, help="cap per embodiment")
    parser.add_argument("--figure", type=Path, default=None, help="write a reconstruction PNG here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    frames: dict[str, torch.Tensor] = {}
    for d in args.data:
        prefix = f"{Path(d).name}/" if len(args.data) > 1 else ""
        frames.update({prefix + k: v for k, v in load_frames(d, "val", max_frames=args.max_frames).items()})
    toks = {t: load_tokenizer(t).eval() for t in args.tokenizers}
    for name, tok in toks.items():
        print(markdown_table(Path(name).name, evaluate_tokenizer(tok, frames)))
        print()
    if args.figure is not None:
        save_figure(toks, frames, args.figure)
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
