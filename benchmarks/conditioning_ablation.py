"""Which action-conditioning mode makes a world model follow its actions? An ablation at one fixed compute budget.

Every (mode, seed) trains the quickstart recipe (hma-vq-t64 on sim-mix-mini token shards) for the same number of
steps, each run in its own process with one thread, then is evaluated teacher-forced on the val split: ΔPSNR
(true vs random actions, shared sampler noise), the state probe's error with true / random actions and their
ratio, token accuracy against token copy, and the val loss. Runs already finished (a ``world_model`` folder under
``--out``) are reused, so the script can be stopped and run again.

    python benchmarks/conditioning_ablation.py --steps 300 --seeds 0 1 2 \\
        --tokens data/sim-mix-mini-tok --data data/sim-mix-mini --tokenizer outputs/quickstart/tokenizer

Prints a Markdown table (mean ± sd over seeds) and writes ``<out>/ablation.json``. The figures depend only on the
step count and seeds, never on the machine's load (only the wall times printed beside them do).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("none", "add", "cross_attention", "adaln", "concat", "concat+adaln")
ROOT = Path(__file__).resolve().parents[1]


def train(mode: str, seed: int, steps: int, tokens: str, tokenizer: str, out: Path) -> tuple[Path, float]:
    """Train one run in a subprocess (one thread); returns its saved model folder and the wall time."""
    run = out / f"{mode.replace('+', '_')}_s{seed}"
    model_dir = run / "world_model"
    if (model_dir / "config.json").is_file():
        return model_dir, float("nan")
    overrides = json.dumps({"conditioning": {"mode": mode}})
    cmd = [sys.executable, "-m", "hma_zoo.cli", "fit", "--config", str(ROOT / "recipes" / "quickstart.yaml"),
           "--seed_everything", str(seed), "--trainer.max_steps", str(steps),
           "--trainer.val_check_interval", str(steps), "--trainer.limit_val_batches", "1",
           "--model.init_args.val_metric_samples", "0", "--model.init_args.overrides", overrides,
           "--model.init_args.tokenizer", tokenizer, "--data.init_args.data", tokens,
           "--data.init_args.num_workers", "0",
           "--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir", str(run),
           "--checkpoint.dirpath", str(run / "checkpoints"),
           "--trainer.callbacks.init_args.dirpath", str(model_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.monotonic()
    with open(run.with_suffix(".log"), "w") as logf:
        subprocess.run(cmd, check=True, env=env, stdout=logf, stderr=subprocess.STDOUT)
    return model_dir, time.monotonic() - start


def score(model_dir: Path, data: str, tokenizer: str, windows: int) -> dict[str, float]:
    """Teacher-forced evaluation of one run: the figures of the table."""
    import torch

    from hma_zoo.eval.rollout import evaluate
    from hma_zoo.registry import load_pretrained
    from hma_zoo.tokenizers import load_tokenizer

    torch.set_num_threads(1)
    model = load_pretrained(str(model_dir))
    result = evaluate(model, load_tokenizer(tokenizer), data, max_windows=windows, rollout=False, random_draws=2,
                      policy=False, progress=False)
    rows = {(r["method"], r["embodiment"]): r for r in result["rows"] if r["mode"] == "teacher_forced"}
    m, rnd = rows[("model", "all")], rows.get(("model_random_actions", "all"), {})
    out = {"psnr": m["psnr"], "delta_psnr": m.get("delta_psnr", 0.0), "token_acc": m.get("token_acc", float("nan")),
           "token_copy_acc": rows[("copy_last_frame_tokenized", "all")].get("token_acc", float("nan"))}
    if "state_error_norm" in m and "state_error_norm" in rnd:
        out["state_err_true"] = m["state_error_norm"]
        out["state_err_random"] = rnd["state_error_norm"]
        out["state_ratio"] = m["state_error_norm"] / rnd["state_error_norm"]
    for (method, emb), r in rows.items():
        if method == "model" and emb != "all" and "delta_psnr" in r:
            out[f"delta_psnr/{emb}"] = r["delta_psnr"]
    final = json.loads((model_dir / "config.json").read_text()).get("meta", {}).get("final_metrics", {})
    if "val/loss" in final:
        out["val_loss"] = final["val/loss"]
    return out


def _fmt(values: list[float]) -> str:
    vals = [v for v in values if v == v]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=300, help="training steps per run (the fixed budget)")
    p.add_argument("--tokens", default="data/sim-mix-mini-tok", help="token shards to train on")
    p.add_argument("--data", default="data/sim-mix-mini", help="episode shards to evaluate on (with DATA/probe)")
    p.add_argument("--tokenizer", default="outputs/quickstart/tokenizer")
    p.add_argument("--windows", type=int, default=32, help="val windows per evaluation")
    p.add_argument("--out", default="runs/ablation_conditioning")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {}
    for mode in args.modes:
        for seed in args.seeds:
            model_dir, wall = train(mode, seed, args.steps, args.tokens, args.tokenizer, out)
            figures = score(model_dir, args.data, args.tokenizer, args.windows)
            figures["train_wall_s"] = wall
            results.setdefault(mode, []).append(figures)
            print(f"{mode} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
    cols = ["delta_psnr", "state_err_true", "state_err_random", "state_ratio", "token_acc", "psnr", "val_loss"]
    lines = [f"Conditioning ablation: {args.steps} steps, seeds {args.seeds}, {args.windows} val windows; "
             f"{platform.machine()} CPU, one thread per run", "",
             "| mode | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for mode, runs in results.items():
        lines.append(f"| {mode} | " + " | ".join(_fmt([r.get(c, float('nan')) for r in runs]) for c in cols) + " |")
    table = "\n".join(lines)
    print("\n" + table)
    (out / "ablation.json").write_text(json.dumps({"settings": vars(args), "runs": results, "table": table},
                                                  indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
