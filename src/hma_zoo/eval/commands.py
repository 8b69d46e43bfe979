"""``hma-zoo evaluate``: metrics of a world model against baselines, as JSON + Markdown, with rollout GIFs.

::

    hma-zoo evaluate --ckpt outputs/quickstart/world_model --tokenizer outputs/quickstart/tokenizer \
        --data data/sim-mix-mini --max-windows 32 --rollout --out outputs/quickstart/eval
    hma-zoo evaluate --ckpt ... --tokenizer ... --data ... --loss-only      # no sampling: loss, perplexity

With ``--rollout`` the rollouts run over ``--horizon-multiple`` (4) x the window; the state error needs a probe
(``hma-zoo probe fit --data DIR`` writes ``DIR/probe``, found there by default).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def load_world_model(ckpt: str) -> torch.nn.Module:
    """A world model from a pretrained tag, ``save_pretrained`` folder, hub id / ``local-dir:`` / ``hf-hub:`` name,
    or a Lightning ``.ckpt`` of :class:`hma_zoo.lit.world_model.HMALitModule`: the one loader of
    :func:`hma_zoo.lit.world_model.load_world_model`, which reads a ``.ckpt`` weights-only (nothing is unpickled)."""
    from hma_zoo.lit.world_model import load_world_model as load

    return load(ckpt)


_REMOVED_FLAGS = {
    "--fid-weights": "FID",
    "--fvd-weights": "FVD (I3D)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hma-zoo evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", "--model", dest="ckpt", required=True,
                   help="world model: shipped name (hma-vq-t64.simmix), save_pretrained folder, hub id, or .ckpt")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer folder / hub id / shipped name (default: the one bundled with --model)")
    p.add_argument("--data", required=True, help="dataset folder or URL prefix (episode or token shards)")
    p.add_argument("--split", default="val", choices=("val", "train"), help="split of --data (default val)")
    p.add_argument("--max-windows", type=int, default=32, help="windows evaluated (default 32)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    p.add_argument("--window", type=int, default=None, help="frames per window (default: model max_frames)")
    p.add_argument("--prompt-frames", type=int, default=1, help="ground-truth frames a rollout starts from")
    p.add_argument("--rollout", action="store_true", help="also evaluate autoregressive rollouts")
    p.add_argument("--horizon-multiple", type=int, default=4,
                   help="rollouts run over this many windows (per-step rows and horizons.png); default 4")
    p.add_argument("--probe", default=None, help="state probe folder (default: DATA/probe if it exists)")
    p.add_argument("--no-policy", action="store_true", help="skip the policy-mode rows")
    p.add_argument("--loss-only", action="store_true",
                   help="no sampling: masked loss, perplexity and its split over changing / static tokens")
    p.add_argument("--steps", type=int, default=2, help="MaskGIT/MAR steps per frame")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0 = greedy)")
    p.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddpm",
                   help="mar only: the diffusion head's sampler (ddim: deterministic, few steps)")
    p.add_argument("--diffusion-steps", type=int, default=None,
                   help="mar only: diffusion steps per token (default: the model's sample_steps)")
    p.add_argument("--random-draws", type=int, default=3, help="random-action draws for delta-PSNR")
    p.add_argument("--seed", type=int, default=0, help="seed of the window choice, sampling and random actions")
    p.add_argument("--out", default=None, help="folder for metrics.json, metrics.md, GIFs (default: print only)")
    p.add_argument("--num-gifs", type=int, default=4, help="rollout GIFs written to --out (default 4)")
    p.add_argument("--lpips-weights", default=None, help="torchvision AlexNet weights file (LPIPS; else skipped)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--write-card", metavar="TAG", default=None,
                   help="store the measured rows in the saved model folder's metadata (tag TAG) and render its card "
                        "(README.md and model_cards/<variant>.<TAG>.md)")
    return p


def main(argv: list[str]) -> int:
    """Run the evaluation and print the Markdown table; returns a process exit code."""
    parser = build_parser()
    for flag, metric in _REMOVED_FLAGS.items():
        if any(a == flag or a.startswith(flag + "=") for a in argv):
            parser.error(f"{flag} is not supported: evaluate does not compute {metric}; it reports own_fvd, a "
                         "Frechet distance over the tokenizer's encoder features (hma_zoo.eval.features builds "
                         "the standard networks from weight files in Python: load_fid, load_fvd)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from hma_zoo.eval.rollout import evaluate, evaluate_loss
    from hma_zoo.tokenizers import load_tokenizer

    for path in (args.data,):
        if "://" not in path and not Path(path).exists():
            print(f"hma-zoo evaluate: data {path!r} does not exist; build it with `hma-zoo data build`")
            return 2
    if args.probe is not None and not Path(args.probe).is_dir():
        print(f"hma-zoo evaluate: probe {args.probe!r} does not exist; fit one with "
              f"`hma-zoo probe fit --data {args.data}`")
        return 2
    from hma_zoo.pretrained import model_tokenizer, resolve_pretrained

    tok_source = args.tokenizer
    if tok_source is None and not args.ckpt.endswith(".ckpt"):  # the tokenizer bundled with a saved model
        tok_source = model_tokenizer(args.ckpt, resolve_pretrained(args.ckpt, kind="hma"))
    if tok_source is None:
        print(f"hma-zoo evaluate: {args.ckpt!r} bundles no tokenizer; pass the one it was trained with "
              "(--tokenizer DIR)")
        return 2
    model = load_world_model(args.ckpt)
    tokenizer = load_tokenizer(str(tok_source))
    if args.loss_only:
        result = evaluate_loss(model, tokenizer, args.data, split=args.split, max_windows=args.max_windows,
                               batch_size=args.batch_size, window=args.window, seed=args.seed)
        print(result["markdown"])
        for note in result["notes"]:
            print(f"- {note}")
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "metrics_loss.json").write_text(json.dumps(result, indent=1))
        return 0
    result = evaluate(model, tokenizer, args.data, split=args.split, max_windows=args.max_windows,
                      batch_size=args.batch_size, window=args.window, prompt_frames=args.prompt_frames,
                      rollout=args.rollout, horizon_multiple=args.horizon_multiple, steps=args.steps,
                      temperature=args.temperature, random_draws=args.random_draws, seed=args.seed,
                      probe=args.probe, policy=not args.no_policy, out_dir=args.out, num_gifs=args.num_gifs,
                      lpips_weights=args.lpips_weights, diffusion_steps=args.diffusion_steps, sampler=args.sampler)
    result["settings"].update(ckpt=args.ckpt, tokenizer=str(tok_source), data=args.data,
                              threads=torch.get_num_threads(), cpu_count=os.cpu_count())
    if args.out:
        (Path(args.out) / "metrics.json").write_text(json.dumps(result, indent=1))
    if args.write_card:
        from hma_zoo.cards import write_measured_card
        from hma_zoo.pretrained import resolve_shipped

        folder = Path(resolve_shipped(args.ckpt))
        if not (folder / "config.json").is_file():
            print(f"hma-zoo evaluate: --write-card needs a saved model folder, not {args.ckpt!r}")
            return 2
        card = write_measured_card(folder, model, result, Path(args.data), tag=args.write_card,
                                evaluation={k: v for k, v in result["settings"].items() if k != "ckpt"})
        print(f"card: {card}")
    print(result["markdown"])
    for note in result["notes"]:
        print(f"- {note}")
    return 0
