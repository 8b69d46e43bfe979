"""``hma-zoo new-robot``: bring your own robot to a pretrained world model, in one command (docs/new_robot.md).

::

    hma-zoo data import-files --src my_episodes/ --out data/myarm --embodiment myarm --control-hz 10
    hma-zoo new-robot --data data/myarm --model hma-vq-t64.simmix --out outputs/new_robot/myarm

From an imported episode dataset (``hma-zoo data import-files`` / ``import-lerobot`` / ``build``) it

1. fine-tunes the model's tokenizer on the new frames, starting from the bundled one, and reports its
   reconstruction PSNR on the new robot's val frames before and after;
2. writes token shards of the dataset with the fine-tuned tokenizer;
3. adds the robot's embodiment(s) to the pretrained world model (fresh action stem and head, trunk and token
   embeddings kept: :meth:`hma_zoo.model.HMA.with_embodiments`) and fine-tunes it for ``--wm-steps``;
4. trains the same variant from scratch on the same data for the same steps (``--no-scratch`` skips it);
5. evaluates both on the val split (teacher-forced PSNR and delta-PSNR against random actions; loss-only
   perplexity) and writes ``report.json`` / ``report.md``.

Every stage stops on a step count, so the figures do not depend on the machine's load. The fine-tuned model lands
in ``<out>/finetuned`` with its tokenizer bundled (``hma_zoo.load_simulator("<out>/finetuned")``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hma-zoo new-robot", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="episode dataset of the new robot (imported or built)")
    p.add_argument("--model", default="hma-vq-t64.simmix",
                   help="pretrained world model: shipped name, saved folder or hub id (its tokenizer bundled)")
    p.add_argument("--tokenizer", default=None, help="tokenizer to start from (default: the model's bundled one)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tokenizer-steps", type=int, default=500, help="tokenizer fine-tuning steps (0: keep it)")
    p.add_argument("--wm-steps", type=int, default=300, help="world-model steps, the same for both arms")
    p.add_argument("--batch-size", type=int, default=8, help="world-model windows per step (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="world-model learning rate, both arms (default 1e-3)")
    p.add_argument("--max-episodes", type=int, default=None, help="train episodes kept per embodiment")
    p.add_argument("--change-weight", type=float, default=2.0,
                   help="extra loss weight of tokens that change between frames (both arms; as the shipped models)")
    p.add_argument("--full-frame-ratio", type=float, default=0.3,
                   help="share of frames hidden whole in training (both arms; as the shipped models)")
    p.add_argument("--eval-windows", type=int, default=16, help="validation windows each arm is evaluated on")
    p.add_argument("--no-scratch", action="store_true", help="skip the from-scratch comparison")
    p.add_argument("--seed", type=int, default=0, help="seed of both arms' training (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    return p


def finetune_tokenizer(tokenizer_source: str, data: str, out: Path, steps: int, seed: int) -> dict[str, Any]:
    """Fine-tune the tokenizer at ``tokenizer_source`` on ``data`` into ``out``; PSNR on the val frames before and
    after (``{"before": {...}, "after": {...}, "path": str}``)."""
    from hma_zoo.pretrained import resolve_shipped
    from hma_zoo.tokenizers import load_tokenizer
    from hma_zoo.tokenizers.train import evaluate_tokenizer, load_frames, train_tokenizer

    source = resolve_shipped(tokenizer_source)
    base = load_tokenizer(source)
    val = load_frames(data, "val", max_frames=256)
    before = evaluate_tokenizer(base, val)
    if steps <= 0:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(source, out)
        return {"before": before, "after": before, "path": str(out), "steps": 0}
    tok = train_tokenizer(base.name or "tokenizer", data, steps=steps, init_from=source, out_dir=out,
                          lr=2e-4, warmup_steps=min(50, steps // 5), seed=seed, progress=True, val_frames=256)
    return {"before": before, "after": tok.val_metrics, "path": str(out), "steps": steps}


def train_arm(data_tokens: Path, tokenizer_dir: Path, out: Path, steps: int, *, from_pretrained: str | None,
              variant: str, batch_size: int, lr: float, max_episodes: int | None, seed: int,
              change_weight: float = 2.0, full_frame_ratio: float = 0.3) -> Path:
    """Train one arm (fine-tune from ``from_pretrained``, or ``variant`` from scratch) for ``steps``; returns the
    saved model folder (tokenizer bundled)."""
    import lightning as L

    from hma_zoo.data import HMADataModule
    from hma_zoo.lit.world_model import HMALitModule

    L.seed_everything(seed, verbose=False)
    dm = HMADataModule(str(data_tokens), window=8, batch_size=batch_size, num_workers=0, seed=seed,
                       max_episodes=max_episodes)
    lit = HMALitModule(variant=variant, from_pretrained=from_pretrained, tokenizer=str(tokenizer_dir),
                       embodiments=dm.embodiments, max_chunk_dim=dm.max_chunk_dim, window=dm.window, lr=lr,
                       warmup_steps=max(1, min(50, steps // 10)), schedule="cosine", total_steps=steps,
                       val_metric_samples=0, change_weight=change_weight,
                       masking={"full_frame_ratio": full_frame_ratio})
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(out),
                        gradient_clip_val=1.0, log_every_n_steps=10)
    trainer.fit(lit, dm)
    return lit.save_pretrained(out / "model", meta={"arm": "finetuned" if from_pretrained else "scratch",
                                                    "steps": steps, "seed": seed})


def evaluate_arm(model_dir: Path, data: str, windows: int, seed: int) -> dict[str, Any]:
    """Teacher-forced PSNR / delta-PSNR (no rollout, no policy rows) and the loss-only figures of a saved model."""
    from hma_zoo.eval.rollout import evaluate, evaluate_loss
    from hma_zoo.pretrained import bundled_tokenizer
    from hma_zoo.registry import load_pretrained
    from hma_zoo.tokenizers import load_tokenizer

    model = load_pretrained(str(model_dir)).eval()
    tok = load_tokenizer(str(bundled_tokenizer(model_dir)))
    res = evaluate(model, tok, data, max_windows=windows, rollout=False, policy=False, seed=seed, random_draws=2,
                   probe=None)
    out: dict[str, Any] = {}
    for row in res["rows"]:
        if row["mode"] == "teacher_forced" and row["method"] in ("model", "copy_last_frame_tokenized") \
                and row.get("horizon", "all") == "all":
            key = f"{row['method']}/{row['embodiment']}"
            out[key] = {k: row.get(k) for k in ("psnr", "ssim", "delta_psnr", "token_acc", "perplexity")}
    if model.kind == "vq":
        loss = evaluate_loss(model, tok, data, max_windows=windows, seed=seed, progress=False)
        for row in loss["rows"]:
            out[f"loss/{row['embodiment']}"] = {k: row.get(k) for k in ("video_loss", "perplexity", "ce_changed")}
    return out


def _markdown(report: dict[str, Any]) -> str:
    tok = report["tokenizer"]
    lines = [f"# New robot: {', '.join(report['embodiments'])}", "",
             f"Pretrained model `{report['model']}`; data `{report['data']}`; {report['wm_steps']} world-model "
             f"steps per arm, seed {report['seed']}.", "",
             f"Tokenizer PSNR on the val frames: {tok['before']['all']['psnr']:.2f} dB before, "
             f"{tok['after']['all']['psnr']:.2f} dB after {tok['steps']} fine-tuning steps.", "",
             "| arm | embodiment | PSNR TF (dB) | copy_tok PSNR (dB) | delta-PSNR (dB) | perplexity |",
             "|---|---|---|---|---|---|"]
    for arm, res in report["arms"].items():
        for key, row in res.items():
            if not key.startswith("model/"):
                continue
            emb = key.split("/", 1)[1]
            copy = res.get(f"copy_last_frame_tokenized/{emb}", {}).get("psnr")
            ppl = res.get(f"loss/{emb}", {}).get("perplexity")

            def f(v: Any) -> str:
                return "-" if v is None else f"{v:.2f}"
            lines.append(f"| {arm} | {emb} | {f(row.get('psnr'))} | {f(copy)} | {f(row.get('delta_psnr'))} | "
                         f"{f(ppl)} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole path; returns the report (also written to ``<out>/report.json`` and ``report.md``)."""
    import torch

    from hma_zoo.data import tokenize_dataset
    from hma_zoo.data.shards import load_manifest
    from hma_zoo.pretrained import bundled_tokenizer, resolve_shipped
    from hma_zoo.registry import load_pretrained

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(args.data)
    if manifest["kind"] != "episodes":
        raise ValueError(f"{args.data} holds {manifest['kind']}; new-robot starts from an episode (frame) dataset, "
                         "e.g. from `hma-zoo data import-files` or `import-lerobot`")
    model_source = resolve_shipped(args.model)
    tok_source = args.tokenizer or bundled_tokenizer(model_source)
    if tok_source is None:
        raise FileNotFoundError(f"{args.model} bundles no tokenizer; pass --tokenizer DIR (the one it was trained "
                                "with)")
    pretrained = load_pretrained(model_source)
    variant = pretrained.pretrained_meta.get("variant") or f"hma-{pretrained.kind}-t64"
    times: dict[str, float] = {}

    t = time.monotonic()
    log.info("1/5 tokenizer: fine-tuning %s on %s for %d steps", tok_source, args.data, args.tokenizer_steps)
    tok_report = finetune_tokenizer(str(tok_source), args.data, out / "tokenizer", args.tokenizer_steps, args.seed)
    times["tokenizer"] = time.monotonic() - t

    t = time.monotonic()
    log.info("2/5 token shards -> %s", out / "tokens")
    tokenize_dataset(args.data, str(out / "tokenizer"), out / "tokens", overwrite=True, progress=False)
    times["tokens"] = time.monotonic() - t

    arms: dict[str, Any] = {}
    plan = [("finetuned", model_source)] + ([] if args.no_scratch else [("scratch", None)])
    for i, (arm, source) in enumerate(plan):
        t = time.monotonic()
        log.info("%d/5 world model (%s): %d steps", 3 + i, arm, args.wm_steps)
        saved = train_arm(out / "tokens", out / "tokenizer", out / arm, args.wm_steps, from_pretrained=source,
                          variant=variant, batch_size=args.batch_size, lr=args.lr, max_episodes=args.max_episodes,
                          seed=args.seed, change_weight=args.change_weight, full_frame_ratio=args.full_frame_ratio)
        times[arm] = time.monotonic() - t
        arms[arm] = evaluate_arm(saved, args.data, args.eval_windows, args.seed)
    report = {"model": args.model, "data": args.data, "embodiments": sorted(manifest["embodiments"]),
              "tokenizer": tok_report, "wm_steps": args.wm_steps, "seed": args.seed, "arms": arms,
              "seconds": times}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    (out / "report.md").write_text(_markdown(report))
    return report


def main(argv: list[str]) -> int:
    """Entry point of ``hma-zoo new-robot``."""
    args = build_parser().parse_args(argv)
    if not Path(args.data).exists():
        print(f"hma-zoo new-robot: data {args.data!r} does not exist; import it first "
              "(`hma-zoo data import-files` / `import-lerobot`)")
        return 2
    report = run(args)
    print(_markdown(report))
    print(f"fine-tuned model: {Path(args.out) / 'finetuned' / 'model'} (load_simulator works on it)")
    return 0
