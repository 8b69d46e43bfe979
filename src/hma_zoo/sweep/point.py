"""One sweep point: an ordinary ``hma-zoo fit`` run with overrides, then its evaluation, then ``result.json``.

The evaluation is the validation loss (and sampled PSNR with ``eval.sample_metrics``), plus, with ``eval.rollout``,
the project's evaluator on frame episodes: teacher-forced (and rollout) PSNR / delta-PSNR and the state probe's
``state_error_norm`` (:func:`rollout_metrics`; keys in :mod:`hma_zoo.sweep.spec`).

A point's folder (``<sweep out>/points/<id>/``) holds ``point.json`` (what it is), ``checkpoints/`` (``last.ckpt``
every ``checkpoint.every_n_train_steps`` of the base recipe), ``tb/`` (TensorBoard: the training and validation
curves) and, once it finished, ``result.json``. Rerunning skips a point with a ``result.json`` and resumes a killed
one from ``last.ckpt`` (Lightning restores the step, the optimiser and the data order, so a resumed point ends where
an uninterrupted one would). Wall time adds up over resumes (``timing.json``).

Run as ``python -m hma_zoo.sweep.point POINT_JSON`` by the local engine, or as a function by submitit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESULT = "result.json"


def cli_value(value: Any) -> str:
    """A value as jsonargparse reads it on the command line (strings as is, everything else as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def fit_args(base: str, overrides: dict[str, Any], folder: Path) -> list[str]:
    """The ``hma-zoo fit`` arguments of a point: the base recipe, its overrides, and the point's own folders."""
    args = ["fit", "--config", base]
    args += [f"--{k}={cli_value(v)}" for k, v in overrides.items()]
    logger = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
              "init_args": {"save_dir": str(folder), "name": "tb", "version": 0}}
    args += [f"--trainer.default_root_dir={folder}", f"--trainer.logger={json.dumps(logger)}",
             f"--checkpoint.dirpath={folder / 'checkpoints'}", "--trainer.enable_progress_bar=false"]
    last = folder / "checkpoints" / "last.ckpt"
    if last.is_file():
        args.append(f"--ckpt_path={last}")
    return args


def _with_argv(argv: list[str], fn: Any) -> Any:
    saved = sys.argv
    sys.argv = ["hma-zoo", *argv]
    try:
        return fn()
    finally:
        sys.argv = saved


def _train_frames(datamodule: Any) -> tuple[int, int]:
    """(episodes, frames) the training split holds after ``embodiments`` / ``max_episodes``.

    A shard data module counts its episodes; a data module without episodes (the synthetic one) counts each
    training sample (``train_size``) as an episode of ``window`` frames.
    """
    if hasattr(datamodule, "components"):
        eps = [n for c in datamodule.components("train") for _, shard_eps in c.shards for _, n in shard_eps]
        return len(eps), int(sum(eps))
    size = int(getattr(datamodule, "train_size", 0))
    return size, size * int(getattr(datamodule, "window", 1))


def point_cli(base: str, overrides: dict[str, Any], extra: list[str] | None = None) -> Any:
    """The LightningCLI of a point (``base`` recipe + ``overrides`` + raw ``extra`` arguments), built, not run:
    ``.model`` is the point's fresh LightningModule, ``.datamodule`` its data, ``.trainer`` its trainer."""
    from lightning.pytorch import LightningDataModule, LightningModule

    from hma_zoo.lit.cli import HMACLI

    args = ["--config", base, *[f"--{k}={cli_value(v)}" for k, v in overrides.items()], *(extra or [])]
    return _with_argv(args, lambda: HMACLI(LightningModule, LightningDataModule, subclass_mode_model=True,
                                           subclass_mode_data=True, run=False, auto_configure_optimizers=False,
                                           save_config_callback=None))


def load_weights(lit: Any, ckpt: str | Path) -> None:
    """Load a point's Lightning checkpoint into ``lit.model`` (weights only; the EMA weights when the run kept them)."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    prefix = "ema." if any(k.startswith("ema.") for k in state) else "model."
    lit.model.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def evaluate_point(base: str, overrides: dict[str, Any], folder: Path, eval_spec: dict[str, Any]) -> dict[str, Any]:
    """Validation of a point's ``last.ckpt`` (weights only) on the sweep's fixed eval set, plus its size and FLOPs.

    Returns ``val_loss``, ``val_video_loss``, ``perplexity`` (``exp`` of the per-token cross-entropy, ``vq`` only),
    ``psnr`` / ``delta_psnr`` when ``eval_spec["sample_metrics"]``, ``params`` (the world model), ``params_trunk``
    (the shared transformer alone: no token embeddings, action stems or heads), ``flops_per_step`` (forward +
    backward of one training batch, counted with ``FlopCounterMode``), ``train_episodes`` / ``train_frames`` (what
    the point trained on); with ``eval_spec["rollout"]`` (the sweep file's ``eval.rollout``) also what
    :func:`rollout_metrics` adds (``tf_psnr``, ``tf_delta_psnr``, ``state_error_norm``, ``state_error/<embodiment>``,
    ``rollout_*``, ``eval_windows``, ``eval_notes``).
    """
    import torch


    ckpt = folder / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{folder}: no checkpoints/last.ckpt to evaluate; the fit did not save one")
    extra = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]",
             "--data.init_args.num_workers=0"]
    if eval_spec.get("batches") is not None:
        extra.append(f"--trainer.limit_val_batches={int(eval_spec['batches'])}")
    # sampled metrics (PSNR / delta-PSNR on the first val batch's samples) only when asked: they cost sampling
    samples = 4 if eval_spec.get("sample_metrics", False) is True else int(eval_spec.get("sample_metrics") or 0)
    extra.append(f"--model.init_args.val_metric_samples={samples}")

    # the model as trained (its embodiments, in its order: stems and heads are indexed by it) ...
    train_cli = point_cli(base, overrides, extra)
    episodes, frames = _train_frames(train_cli.datamodule)
    lit = train_cli.model
    load_weights(lit, ckpt)
    # ... validated on the sweep's eval data (e.g. one fixed embodiment for every point; batches name their
    # embodiment, so a narrower eval set routes to the right stems)
    eval_overrides = eval_spec.get("overrides", {})
    cli = point_cli(base, {**overrides, **eval_overrides}, extra) if eval_overrides else train_cli
    metrics = cli.trainer.validate(lit, datamodule=cli.datamodule, verbose=False)[0]
    model = lit.model
    params = sum(p.numel() for p in model.parameters())
    trunk = sum(p.numel() for n, p in model.named_parameters() if n.startswith("trunk."))
    result: dict[str, Any] = {
        "val_loss": float(metrics["val/loss"]),
        "val_video_loss": float(metrics.get("val/video_loss", metrics["val/loss"])),
        "params": int(params), "params_trunk": int(trunk),
        "train_episodes": episodes, "train_frames": frames,
        "embodiments": [e.name for e in train_cli.datamodule.embodiments],
    }
    if model.config.tokens.kind == "vq":
        result["perplexity"] = math.exp(result["val_video_loss"])
    for k_in, k_out in (("val/psnr", "psnr"), ("val/delta_psnr", "delta_psnr")):
        if k_in in metrics:
            result[k_out] = float(metrics[k_in])
    # FLOPs of one training step: forward + backward (3x forward) of one batch of the training data
    train_cli.datamodule.setup("fit")
    batch = next(iter(train_cli.datamodule.train_dataloader()))
    lit.flops_per_token = None
    with torch.no_grad():
        _, _, tokens = lit._measure_flops(batch)
    tokens = tokens.shape[0] * tokens.shape[1] * model.config.tokens.tokens_per_frame  # trunk tokens of the batch
    result["flops_per_step"] = float(lit.flops_per_token * tokens)
    if eval_spec.get("rollout"):
        result.update(rollout_metrics(lit, eval_spec["rollout"], device=cli.trainer.strategy.root_device))
    return result


#: per mode of :func:`hma_zoo.eval.rollout.evaluate`: the prefix of its metrics in a point's result
_MODE_PREFIX = {"teacher_forced": {"psnr": "tf_psnr", "delta_psnr": "tf_delta_psnr",
                                   "state_error_norm": "state_error_norm", "state_error": "state_error"},
                "rollout": {"psnr": "rollout_psnr", "delta_psnr": "rollout_delta_psnr",
                            "state_error_norm": "rollout_state_error_norm", "state_error": "rollout_state_error"}}


def rollout_metrics(lit: Any, spec: dict[str, Any], device: Any = "cpu") -> dict[str, Any]:
    """The evaluator's numbers for a sweep point: :func:`hma_zoo.eval.rollout.evaluate` of ``lit.model`` with
    ``lit.tokenizer`` on ``spec["data"]`` (frame episodes), ``spec`` the sweep file's ``eval.rollout`` (keys
    :data:`hma_zoo.sweep.spec.ROLLOUT_KEYS`; ``policy`` rows, GIFs and files are skipped).

    Returns flat, JSON-able keys from the ``model`` rows over all embodiments (``horizon == "all"``):
    ``tf_psnr``, ``tf_delta_psnr``, ``state_error_norm`` (teacher-forced, in train standard deviations),
    ``state_error_norm_floor`` (the probe on the real frames), ``state_error/<embodiment>`` (raw state units, one
    key per embodiment: raw errors are never averaged across embodiments), the same with the ``rollout_`` prefix
    when ``spec["rollout"]``, ``eval_windows`` and ``eval_notes`` (why the state error is missing, if it is).
    The model is evaluated on ``device`` and left on the CPU.

    Raises ``FileNotFoundError`` when the data folder is gone, ``ValueError`` (naming ``eval.rollout``) when the
    point has no tokenizer or the data share no embodiment / window with the model.
    """
    from hma_zoo.eval.rollout import evaluate
    from hma_zoo.sweep.spec import check_rollout_paths

    data = str(spec["data"])
    probe = spec.get("probe")
    check_rollout_paths(data, probe)
    if lit.tokenizer is None:
        raise ValueError("eval.rollout needs the point's tokenizer to encode and decode frames: set "
                         "model.init_args.tokenizer in the base recipe (the sweep trained on tokens alone)")
    kwargs = {k: v for k, v in spec.items() if k not in ("data", "probe") and v is not None}
    rollout = bool(kwargs.pop("rollout", False))
    lit.to(device)
    try:
        result = evaluate(lit.model, lit.tokenizer, data, probe=probe, rollout=rollout, policy=False, progress=False,
                          out_dir=None, **kwargs)
    except ValueError as err:
        raise ValueError(f"eval.rollout on {data}: {err}") from err
    finally:
        lit.to("cpu")
    rows = [r for r in result["rows"] if r.get("horizon", "all") == "all"]
    out: dict[str, Any] = {"eval_windows": int(result["settings"]["windows"])}
    for mode, names in _MODE_PREFIX.items():
        for r in rows:
            if r["mode"] != mode or r["method"] != "model":
                continue
            if r["embodiment"] == "all":
                out.update({names[m]: float(r[m]) for m in ("psnr", "delta_psnr", "state_error_norm") if m in r})
            elif "state_error" in r:
                out[f"{names['state_error']}/{r['embodiment']}"] = float(r["state_error"])
    floor = [r for r in rows if (r["mode"], r["method"], r["embodiment"]) == ("teacher_forced", "ground_truth", "all")]
    if floor and "state_error_norm" in floor[0]:
        out["state_error_norm_floor"] = float(floor[0]["state_error_norm"])
    notes = [n for n in result["notes"] if n.startswith(("no state probe", "some windows carry no recorded state"))]
    if "state_error_norm" not in out and not notes:
        notes.append("no state_error: the data hold no recorded state (proprio) the probe can judge")
    if notes:
        out["eval_notes"] = notes
        for note in notes:
            log.warning("eval.rollout (%s): %s", data, note)
    return out


class _FitClock:
    """Adds this attempt's wall seconds to ``timing["fit_seconds"]`` and keeps ``timing.json`` current every
    ``every`` seconds (and at the end), so an attempt that is killed still counts, to within ``every`` seconds."""

    def __init__(self, path: Path, timing: dict[str, Any], every: float = 30.0) -> None:
        self.path, self.timing, self.every = path, timing, every
        self.before = float(timing["fit_seconds"])
        self._stop = threading.Event()

    def _write(self) -> None:
        self.timing["fit_seconds"] = self.before + time.perf_counter() - self.start
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.timing))
        os.replace(tmp, self.path)

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self._write()

    def __enter__(self) -> _FitClock:
        self.start = time.perf_counter()
        self._write()  # the attempt is on record from its first second
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._write()


def run_point(point: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) and evaluate one point; returns its result (also written to ``result.json``).

    ``point``: ``{"id", "overrides", "base", "folder", "eval", "threads"}`` as written by the sweep runner. A point
    that already has ``result.json`` returns it untouched.
    """
    import torch

    from hma_zoo.lit.cli import main as fit_main

    folder = Path(point["folder"])
    done = folder / RESULT
    if done.is_file():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "point.json").write_text(json.dumps(point, indent=1, default=str))
    threads = int(point.get("threads", 1))
    torch.set_num_threads(threads)
    timing_path = folder / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {"fit_seconds": 0.0, "attempts": 0}
    resumed = (folder / "checkpoints" / "last.ckpt").is_file()
    timing["attempts"] += 1
    with _FitClock(timing_path, timing):
        fit_main(fit_args(point["base"], point["overrides"], folder))
    result = evaluate_point(point["base"], point["overrides"], folder, point.get("eval") or {})
    result.update(id=point["id"], overrides=point["overrides"], fit_seconds=round(timing["fit_seconds"], 2),
                  attempts=timing["attempts"], resumed=resumed, threads=threads,
                  steps=_last_step(folder), curve=read_curve(folder))
    result["flops"] = result["flops_per_step"] * result["steps"]
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, done)  # atomic: a killed evaluation never leaves a half-written result
    return result


def _last_step(folder: Path) -> int:
    import torch

    ckpt = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return int(ckpt.get("global_step", 0))


def read_curve(folder: Path, tag: str = "val/video_loss") -> list[tuple[int, float]]:
    """``(step, value)`` of a scalar from the point's TensorBoard events (every validation during training)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: dict[int, float] = {}
    for events in sorted((folder / "tb").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            points.update({int(e.step): float(e.value) for e in acc.Scalars(tag)})
    return sorted(points.items())


def main(argv: list[str] | None = None) -> int:
    """``python -m hma_zoo.sweep.point POINT_JSON``: run one point (the local engine's worker process)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m hma_zoo.sweep.point POINT_JSON", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_point(json.loads(Path(argv[0]).read_text()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
