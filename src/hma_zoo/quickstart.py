"""``hma-zoo quickstart``: the README's main job end to end on a CPU, about 12 minutes on an idle 2-core machine.

1. data: build ``data/sim-mix-mini`` (4 simulated robots) if it is missing (:func:`hma_zoo.data.build_mixture`);
2. tokenizer: copy the shipped ``tok-vq-f4-4k.simmix`` (``--train-tokenizer`` trains one with Lightning:
   :func:`hma_zoo.tokenizers.train.train_tokenizer` fits ``TokenizerLitModule``), or reuse
   ``outputs/quickstart/tokenizer``;
3. token shards: tokenise the dataset once (``data/sim-mix-mini-tok``), so training never runs the tokenizer;
4. world model: ``hma-zoo fit --config recipes/quickstart.yaml`` (hma-vq-t64, a fixed number of steps: the result
   never depends on how loaded the machine is, only the time it takes does);
5. state probe: ``hma-zoo probe fit`` on the dataset's train split (``<data>/probe``), unless one is there;
6. evaluation: teacher-forced and autoregressive metrics on the validation split (:func:`hma_zoo.eval.evaluate`)
   against fair baselines, with the probe's state error and rollouts to 4x the window, rollout GIFs and a horizon
   plot, and one :class:`hma_zoo.Simulator` rollout driven by recorded actions.

Everything lands under ``outputs/quickstart/``; the metrics table is printed at the end. Each stage reuses what a
previous run left (``--retrain`` starts the tokenizer and world model over).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from hma_zoo.resources import resource_dir

log = logging.getLogger(__name__)

# The recipe and the tokenizer come with the package (a clone's recipes/ and pretrained/, or a wheel's package data:
# hma_zoo.resources), so the quickstart runs from any folder.
RECIPE = resource_dir("recipes") / "quickstart.yaml"
# The f4 discrete tokenizer we trained on sim-mix-mini (docs/tokenizers.md): 16 x 16 ids per frame, grouped 2 x 2
# per trunk token, so the small objects the actions move survive. Shipped so the quickstart's minutes go to the
# world model. `--train-tokenizer` trains one from scratch instead (a few CPU minutes give a much blurrier one).
SHIPPED_TOKENIZER = resource_dir("pretrained") / "tok-vq-f4-4k.simmix"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hma-zoo quickstart", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/sim-mix-mini", help="episode dataset (built if missing)")
    p.add_argument("--mixture", default="sim-mix-mini", help="named mixture to build when --data is missing")
    p.add_argument("--out", default="outputs/quickstart", help="output folder")
    p.add_argument("--recipe", default=str(RECIPE), help="world-model recipe")
    p.add_argument("--tokenizer-weights", default=str(SHIPPED_TOKENIZER),
                   help="a trained tokenizer folder to use (default: the one shipped in pretrained/)")
    p.add_argument("--train-tokenizer", action="store_true", help="train --tokenizer from scratch instead")
    p.add_argument("--tokenizer", default="tok-vq-f4-4k", help="tokenizer variant to train with --train-tokenizer")
    p.add_argument("--tokenizer-steps", type=int, default=1500, help="training steps with --train-tokenizer")
    p.add_argument("--wm-steps", type=int, default=None, help="override the recipe's max_steps (700)")
    p.add_argument("--eval-windows", type=int, default=16, help="validation windows evaluated (default 16)")
    p.add_argument("--probe-steps", type=int, default=600, help="training steps of the state probe")
    p.add_argument("--workers", type=int, default=2, help="simulator workers when building data")
    p.add_argument("--retrain", action="store_true", help="train tokenizer and world model again")
    p.add_argument("--pretrained", nargs="?", const="hma-vq-t64.simmix", default=None, metavar="NAME",
                   help="skip training: evaluate the shipped world model NAME (default hma-vq-t64.simmix) with its "
                        "bundled tokenizer instead")
    return p


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def ensure_data(data: Path, mixture: str, workers: int) -> None:
    """Build the mixture into ``data`` unless it already holds a manifest."""
    if (data / "manifest.json").is_file():
        log.info("data: reusing %s", data)
        return
    from hma_zoo.data import build_mixture

    log.info("data: building %s into %s (simulators, %d workers)", mixture, data, workers)
    build_mixture(mixture, data, workers=workers)


def ensure_tokenizer(name: str, data: Path, out: Path, steps: int, retrain: bool,
                     weights: str | None = None) -> Any:
    """Copy the trained tokenizer ``weights`` into ``out``, or train tokenizer ``name`` on ``data`` into ``out``
    (``weights=None``); reuse ``out`` if it already holds one."""
    from hma_zoo.tokenizers import load_tokenizer, train_tokenizer

    if (out / "config.json").is_file() and not retrain:
        log.info("tokenizer: reusing %s", out)
        return load_tokenizer(str(out))
    if weights is not None:
        if not (Path(weights) / "config.json").is_file():
            raise FileNotFoundError(f"no trained tokenizer at {weights}; pass --tokenizer-weights DIR or "
                                    "--train-tokenizer")
        log.info("tokenizer: using the trained tokenizer %s", weights)
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(weights, out)
        return load_tokenizer(str(out))
    log.info("tokenizer: training %s for %d steps", name, steps)
    return train_tokenizer(name, str(data), steps=steps, out_dir=str(out))


def ensure_tokens(data: Path, tokenizer_dir: Path, out: Path, fresh: bool) -> None:
    """Write token shards of ``data`` with the tokenizer in ``tokenizer_dir`` (again if the tokenizer is new)."""
    if (out / "manifest.json").is_file() and not fresh:
        info = json.loads((out / "manifest.json").read_text()).get("token_info") or {}
        if info.get("tokenizer") == str(tokenizer_dir):
            log.info("token shards: reusing %s", out)
            return
    from hma_zoo.data import tokenize_dataset

    log.info("token shards: tokenising %s into %s", data, out)
    tokenize_dataset(str(data), str(tokenizer_dir), out, overwrite=True)


def train_world_model(recipe: str, tokens: Path, tokenizer_dir: Path, out: Path, steps: int | None,
                      retrain: bool) -> Path:
    """Run the LightningCLI recipe; returns the ``save_pretrained`` folder of the trained model."""
    from hma_zoo.lit.cli import main as cli_main

    model_dir = out / "world_model"
    if (model_dir / "config.json").is_file() and not retrain:
        log.info("world model: reusing %s", model_dir)
        return model_dir
    for stale in (out / "checkpoints", model_dir):
        shutil.rmtree(stale, ignore_errors=True)
    args = ["fit", "--config", recipe,
            "--data.init_args.data", str(tokens),
            "--model.init_args.tokenizer", str(tokenizer_dir),
            "--trainer.default_root_dir", str(out),
            "--trainer.logger.init_args.save_dir", str(out),
            "--checkpoint.dirpath", str(out / "checkpoints"),
            # the recipe's last callback is SavePretrainedCallback
            "--trainer.callbacks.init_args.dirpath", str(model_dir)]
    if steps is not None:
        args += ["--trainer.max_steps", str(steps)]
    log.info("world model: hma-zoo %s", " ".join(args))
    cli_main(args)
    if not (model_dir / "config.json").is_file():  # the recipe's SavePretrainedCallback writes it
        raise RuntimeError(f"training finished but {model_dir} was not written; does the recipe keep "
                           "SavePretrainedCallback with dirpath <out>/world_model?")
    return model_dir


def ensure_probe(data: Path, steps: int) -> Any:
    """The state probe of ``data`` (``<data>/probe``), fitted on its train split if missing."""
    from hma_zoo.eval.probe import fit_probe, load_probe

    if (data / "probe" / "config.json").is_file():
        log.info("state probe: reusing %s", data / "probe")
        return load_probe(data / "probe")
    log.info("state probe: fitting on %s for %d steps", data, steps)
    return fit_probe(str(data), steps=steps)


def simulator_rollout(model: Any, tokenizer: Any, data: Path, out: Path) -> Path:
    """Drive :class:`hma_zoo.Simulator` with the recorded actions of one validation window; save a GIF
    (left: ground truth, right: the world model)."""
    import torch

    from hma_zoo import Simulator
    from hma_zoo.data import HMADataModule
    from hma_zoo.video import side_by_side, write_gif

    window = model.config.trunk.max_frames
    dm = HMADataModule(str(data), window=window, batch_size=1, num_workers=0)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    frames, actions, emb = batch["frames"], batch["actions"], batch["embodiment"][0]
    width = model.config.embodiment(emb).chunk_dim
    sim = Simulator(model, tokenizer, steps=2, temperature=0.0, generator=torch.Generator().manual_seed(0))
    sim.reset(frames[0, :1], None, emb)
    pred = sim.rollout(actions[0, : window - 1, :width])
    video = side_by_side(frames[0, 1:], pred)
    path = out / f"simulator_{emb}.gif"
    write_gif(path, video)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the quickstart; prints the metrics table and where the outputs are."""
    args = build_parser().parse_args(argv)
    start = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    timings: dict[str, float] = {}

    t = time.monotonic()
    ensure_data(data, args.mixture, args.workers)
    timings["data"] = time.monotonic() - t

    if args.pretrained:
        from hma_zoo.pretrained import bundled_tokenizer, resolve_shipped
        from hma_zoo.tokenizers import load_tokenizer

        model_dir = Path(resolve_shipped(args.pretrained))
        tok_dir = bundled_tokenizer(model_dir)
        if not (model_dir / "config.json").is_file() or tok_dir is None:
            raise FileNotFoundError(f"{args.pretrained!r} is not a shipped world model with its tokenizer; "
                                    "shipped: see `ls pretrained/`")
        log.info("world model: the shipped %s (no training)", args.pretrained)
        tokenizer = load_tokenizer(str(tok_dir))
    else:
        t = time.monotonic()
        tok_dir = out / "tokenizer"
        fresh_tok = args.retrain or not (tok_dir / "config.json").is_file()
        tokenizer = ensure_tokenizer(args.tokenizer, data, tok_dir, args.tokenizer_steps, args.retrain,
                                     None if args.train_tokenizer else args.tokenizer_weights)
        timings["tokenizer"] = time.monotonic() - t

        t = time.monotonic()
        tokens = data.parent / f"{data.name}-tok"
        ensure_tokens(data, tok_dir, tokens, fresh_tok)
        timings["token shards"] = time.monotonic() - t

        t = time.monotonic()
        model_dir = train_world_model(args.recipe, tokens, tok_dir, out, args.wm_steps, args.retrain or fresh_tok)
        timings["world model"] = time.monotonic() - t

    t = time.monotonic()
    probe = ensure_probe(data, args.probe_steps)
    timings["state probe"] = time.monotonic() - t

    t = time.monotonic()
    from hma_zoo.cards import write_measured_card
    from hma_zoo.eval import evaluate
    from hma_zoo.registry import load_pretrained

    model = load_pretrained(str(model_dir)).eval()
    result = evaluate(model, tokenizer, str(data), max_windows=args.eval_windows, rollout=True, probe=probe,
                      out_dir=str(out / "eval"))
    gif = simulator_rollout(model, tokenizer, data, out)
    card = model_dir / "README.md" if args.pretrained else write_measured_card(model_dir, model, result, data)
    timings["evaluation"] = time.monotonic() - t
    total = time.monotonic() - start

    print("\n" + result["markdown"] + "\n")
    print("time: " + ", ".join(f"{k} {_minutes(v)}" for k, v in timings.items()) + f"; total {_minutes(total)}")
    print(f"world model: {model_dir}\ntokenizer:   {tok_dir}\nmetrics:     {out / 'eval'}\n"
          f"rollout:     {gif}\ncard:        {card}\nTensorBoard: tensorboard --logdir {out / 'tb'}")
    (out / "timings.json").write_text(json.dumps({**timings, "total": total}, indent=2))
    return 0
