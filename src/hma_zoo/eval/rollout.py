"""Evaluation of a world model on held-out windows: teacher-forced and autoregressive predictions, baselines.

For every validation window (``T`` frames, actions, embodiment):

* ``teacher_forced``: frame ``t >= 1`` predicted from the ground-truth frames ``< t``
  (:meth:`hma_zoo.model.HMA.generate_teacher_forced`);
* ``rollout``: a true autoregressive rollout from ``prompt`` ground-truth frames, every generated frame fed back.

Methods compared in the same table: ``model``; ``model_zero_actions`` (the same model with all actions set to 0,
raw units); ``copy_last_frame`` (teacher-forced: frame ``t-1``; rollout: the last prompt frame forever);
``tokenizer_recon`` (teacher-forced, episode data only: the tokenizer's reconstruction of the true frames, the
ceiling any model using this tokenizer can reach).
Metrics over the predicted frames: PSNR, SSIM, delta-PSNR (model only: PSNR with the true actions minus PSNR with
actions drawn from the embodiment's ``N(mean, std^2)``, averaged over ``random_draws`` draws), perplexity (``vq``:
``exp`` of the mean cross-entropy of a fully hidden next frame given the true past, no label smoothing), and the
project's own Frechet video distance (:mod:`hma_zoo.eval.features`; NOT comparable to published FVD).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hma_zoo.eval.features import load_lpips, own_fvd, video_feature_fn
from hma_zoo.eval.metrics import (
    frechet_distance_from_features,
    perplexity,
    psnr,
    sample_random_actions,
    ssim,
)
from hma_zoo.model.stems import factorize_ids

log = logging.getLogger(__name__)

MODES = ("teacher_forced", "rollout")
METHODS = ("model", "model_zero_actions", "copy_last_frame", "tokenizer_recon")


@torch.no_grad()
def next_frame_cross_entropy(model: torch.nn.Module, tokens: torch.Tensor, actions: torch.Tensor | None,
                             embodiment: list[str]) -> torch.Tensor:
    """Per-sample mean cross-entropy (nats per token) of each frame ``t >= 1`` of ``tokens`` ``[B, T, h, w]`` when
    it is entirely hidden and frames ``< t`` are visible (``vq`` only; no label smoothing). Returns ``[B]``."""
    if model.kind != "vq":
        raise ValueError("perplexity is defined for vq (discrete-token) models only")
    b, t = tokens.shape[:2]
    target = model.to_trunk_tokens(tokens)
    total = torch.zeros(b, dtype=torch.float64)
    for k in range(1, t):
        mask = torch.zeros(b, k + 1, *tokens.shape[2:], dtype=torch.bool, device=tokens.device)
        mask[:, k] = True
        out = model(tokens[:, : k + 1], None if actions is None else actions[:, : k + 1], embodiment, mask)
        logits = out["video"][:, k].float()  # [B, S, sum F]
        digits = factorize_ids(target[:, k].reshape(-1), model.video_head.factor_sizes)
        ce = torch.zeros(digits.shape[0], device=logits.device)
        for i, lg in enumerate(model.video_head.split(logits.reshape(-1, logits.shape[-1]))):
            ce = ce + F.cross_entropy(lg, digits[:, i], reduction="none")
        total += ce.view(b, -1).mean(1).double().cpu()
    return (total / max(t - 1, 1)).float()


def _predict(model: torch.nn.Module, tokenizer: Any, tokens: torch.Tensor, actions: torch.Tensor, names: list[str],
             mode: str, prompt_frames: int, sample: dict[str, Any]) -> torch.Tensor:
    """Decoded frames ``[B, T, H, W, 3]`` of a teacher-forced pass or of a rollout from ``prompt_frames`` frames."""
    if mode == "teacher_forced":
        out = model.generate_teacher_forced(tokens, actions, names, **sample)
    else:
        out = model.generate(tokens[:, :prompt_frames], actions, names, num_frames=tokens.shape[1] - prompt_frames,
                             **sample)
    return _to_frames(tokenizer, out)


class _Accumulator:
    """Per-sample values by (mode, method, metric), with each sample's embodiment."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        self.names: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        self.features: dict[tuple[str, str], list[torch.Tensor]] = defaultdict(list)
        self.feature_names: dict[tuple[str, str], list[str]] = defaultdict(list)

    def add(self, mode: str, method: str, metric: str, per_sample: torch.Tensor, names: list[str]) -> None:
        self.values[(mode, method, metric)].extend(per_sample.double().cpu().tolist())
        self.names[(mode, method, metric)].extend(names)

    def add_features(self, key: tuple[str, str], feats: torch.Tensor, names: list[str]) -> None:
        self.features[key].append(feats.cpu())
        self.feature_names[key].extend(names)


def _to_frames(tokenizer: Any, tokens: torch.Tensor) -> torch.Tensor:
    param = next(iter(tokenizer.parameters()), None) if isinstance(tokenizer, torch.nn.Module) else None
    return tokenizer.decode(tokens if param is None else tokens.to(param.device)).cpu()


def _datamodule(data: Any, model: torch.nn.Module, window: int, batch_size: int) -> Any:
    """An :class:`HMADataModule` for ``data`` (a folder / URL or a datamodule) whose strides match the model's."""
    if not isinstance(data, (str, Path)):
        return data
    from hma_zoo.data import HMADataModule

    probe = HMADataModule(str(data), window=window, batch_size=batch_size, num_workers=0)
    skip: dict[str, int] = {}
    for spec in probe.embodiments:
        if spec.name in model.config.embodiment_names:
            want = model.config.embodiment(spec.name).stride
            if want % spec.stride:
                raise ValueError(f"embodiment {spec.name!r}: the model's stride {want} is not a multiple of the "
                                 f"data's stored stride {spec.stride}")
            skip[spec.name] = want // spec.stride
    keep = sorted(skip)
    if not keep:
        raise ValueError(f"the data's embodiments {[e.name for e in probe.embodiments]} share none with the model's "
                         f"{list(model.config.embodiment_names)}")
    return HMADataModule(str(data), window=window, batch_size=batch_size, num_workers=0, frame_skip=skip,
                         embodiments=keep)


def _batches(dm: Any, split: str, max_windows: int):  # noqa: ANN202 - generator of batches
    if hasattr(dm, "make_dataset"):
        from torch.utils.data import DataLoader

        from hma_zoo.data.datamodule import collate_windows

        ds = dm.make_dataset(split, mode="finite")
        loader = DataLoader(ds, batch_size=dm.hparams.batch_size, num_workers=0, collate_fn=collate_windows)
    else:
        loader = dm.val_dataloader() if split == "val" else dm.train_dataloader()
    seen = 0
    for batch in loader:
        if seen >= max_windows:
            break
        take = min(len(batch["embodiment"]), max_windows - seen)
        seen += take
        yield {k: (v[:take] if isinstance(v, (torch.Tensor, list)) else v) for k, v in batch.items()}


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    tokenizer: Any,
    data: Any,
    split: str = "val",
    max_windows: int = 32,
    batch_size: int = 8,
    window: int | None = None,
    prompt_frames: int = 1,
    rollout: bool = True,
    steps: int = 2,
    temperature: float = 0.0,
    random_draws: int = 3,
    seed: int = 0,
    out_dir: str | Path | None = None,
    num_gifs: int = 4,
    lpips_weights: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` with ``tokenizer`` on ``data`` (a dataset folder / URL or an ``HMADataModule``).

    Args:
        model: the world model; tokenizer: the tokenizer it was trained with.
        data: episode shards (frames) or token shards (then the ground truth is the tokenizer's reconstruction).
        split: ``"val"`` or ``"train"``; max_windows: windows evaluated (in data order).
        window: frames per window (default: the model's ``max_frames``).
        prompt_frames: ground-truth frames a rollout starts from.
        rollout: also run autoregressive rollouts (slower: ``T - prompt`` generated frames per window and draw).
        steps, temperature: sampling (MaskGIT/MAR steps per frame; 0 = greedy for ``vq``).
        random_draws: random-action draws for delta-PSNR.
        out_dir: if given, ``metrics.json``, ``metrics.md`` and rollout GIFs (ground truth | prediction) go here.
        lpips_weights: torchvision AlexNet weights file to add LPIPS (skipped without one).

    Returns:
        ``{"rows": [...], "markdown": str, "settings": {...}, "notes": [...]}``; each row has mode, method,
        embodiment (or ``"all"``), windows, psnr, ssim, delta_psnr, perplexity, own_fvd (and lpips).
    """
    model = model.eval()
    cfg = model.config
    window = window or cfg.trunk.max_frames
    if not 1 <= prompt_frames < window:
        raise ValueError(f"prompt_frames must be in [1, window={window}), got {prompt_frames}")
    dm = _datamodule(data, model, window, batch_size)
    features, feature_desc = video_feature_fn(tokenizer)
    lpips = load_lpips(lpips_weights)
    gen = torch.Generator(device=model.pos.device).manual_seed(seed)
    cpu_gen = torch.Generator().manual_seed(seed + 1)
    sample = dict(steps=steps, temperature=temperature, unmask="confidence" if temperature == 0 else "random",
                  generator=gen)
    acc = _Accumulator()
    gif_rows: dict[str, list] = {}
    modes = MODES if rollout else MODES[:1]
    notes: list[str] = []
    n_windows = 0
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task("evaluating", total=max_windows)
        for batch in _batches(dm, split, max_windows):
            names = list(batch["embodiment"])
            b = len(names)
            actions = batch["actions"].float()[:, :window]
            a_model = cfg.max_chunk_dim
            actions = F.pad(actions, (0, max(0, a_model - actions.shape[-1])))[..., :a_model].to(model.pos.device)
            if "frames" in batch:
                gt = batch["frames"][:, :window]
                tokens = tokenizer.encode(gt)
            else:
                tokens = batch["tokens"][:, :window]
                gt = _to_frames(tokenizer, tokens)
                if "gt_is_recon" not in notes:
                    notes.append("gt_is_recon")
            tokens = tokens.to(model.pos.device)
            t = tokens.shape[1]
            zero = torch.zeros_like(actions)
            for mode in modes:
                start = 1 if mode == "teacher_forced" else prompt_frames

                def predict(acts: torch.Tensor, mode: str = mode, tokens: torch.Tensor = tokens,
                            names: list[str] = names) -> torch.Tensor:
                    return _predict(model, tokenizer, tokens, acts, names, mode, prompt_frames, sample)

                preds = {"model": predict(actions), "model_zero_actions": predict(zero)}
                if mode == "teacher_forced":
                    preds["copy_last_frame"] = torch.cat((gt[:, :1], gt[:, :-1]), 1)
                    if "frames" in batch:  # the tokenizer's ceiling: decode(encode(ground truth))
                        preds["tokenizer_recon"] = _to_frames(tokenizer, tokens)
                else:
                    last = gt[:, prompt_frames - 1 : prompt_frames]
                    preds["copy_last_frame"] = torch.cat((gt[:, :prompt_frames], last.expand(-1, t - prompt_frames,
                                                                                             -1, -1, -1)), 1)
                for method, pred in preds.items():
                    p = psnr(pred[:, start:], gt[:, start:])
                    acc.add(mode, method, "psnr", p.mean(1), names)
                    acc.add(mode, method, "ssim", ssim(pred[:, start:], gt[:, start:]).mean(1), names)
                    if lpips is not None:
                        acc.add(mode, method, "lpips", lpips(pred[:, start:], gt[:, start:]).mean(1), names)
                    acc.add_features((mode, method), features(pred), names)
                    if method == "model":
                        rand = []
                        for _ in range(random_draws):
                            ra = sample_random_actions(cfg.embodiments, names, t, a_model, cpu_gen, model.pos.device)
                            rand.append(psnr(predict(ra)[:, start:], gt[:, start:]).mean(1))
                        acc.add(mode, method, "delta_psnr", p.mean(1) - torch.stack(rand).mean(0), names)
                        if mode == "rollout" and out_dir is not None:
                            for i, name in enumerate(names):
                                rows = gif_rows.setdefault(name, [])
                                if len(rows) < max(1, num_gifs // max(1, len(cfg.embodiments))):
                                    rows.append((gt[i], pred[i]))
                if mode == "teacher_forced":
                    acc.add_features((mode, "ground_truth"), features(gt), names)
            if model.kind == "vq":
                ce = next_frame_cross_entropy(model, tokens, actions, names)
                acc.add("teacher_forced", "model", "ce", ce, names)
            n_windows += b
            progress.update(task, advance=b)
    if n_windows == 0:
        raise ValueError(f"no {split!r} windows of {window} frames in the data; lower --window or pick another split")
    result = _summarise(acc, modes, n_windows, feature_desc)
    result["settings"] = dict(split=split, windows=n_windows, window=window, prompt_frames=prompt_frames,
                              steps=steps, temperature=temperature, random_draws=random_draws, seed=seed,
                              own_fvd_features=feature_desc, lpips="on" if lpips is not None else "skipped")
    result["notes"] = _notes(notes, feature_desc)
    result["markdown"] = to_markdown(result)
    if out_dir is not None:
        _write_outputs(Path(out_dir), result, gif_rows)
    return result


def _notes(flags: list[str], feature_desc: str) -> list[str]:
    notes = [f"own_fvd: Frechet distance over {feature_desc}; NOT comparable to published FVD (I3D).",
             "perplexity: exp of the mean cross-entropy of a fully hidden next frame given the true past (vq only).",
             "delta_psnr: PSNR(true actions) - PSNR(actions ~ N(mean, std^2) of the embodiment), model rows only.",
             "LPIPS / FID / I3D-FVD need weight files that cannot be downloaded here; they are skipped without them."]
    if "gt_is_recon" in flags:
        notes.append("token shards: the ground truth is the tokenizer's reconstruction of the true tokens.")
    return notes


def _summarise(acc: _Accumulator, modes: tuple[str, ...], n_windows: int, feature_desc: str) -> dict[str, Any]:
    rows = []
    embodiments = sorted({n for v in acc.names.values() for n in v})
    gt_key = ("teacher_forced", "ground_truth")
    gt_feats = torch.cat(acc.features[gt_key]) if acc.features.get(gt_key) else None
    gt_names = acc.feature_names.get(gt_key, [])
    for mode in modes:
        for method in METHODS:
            for emb in ["all", *embodiments]:
                row: dict[str, Any] = {"mode": mode, "method": method, "embodiment": emb}
                for metric in ("psnr", "ssim", "delta_psnr", "lpips", "ce"):
                    vals = acc.values.get((mode, method, metric))
                    if not vals:
                        continue
                    sel = [v for v, n in zip(vals, acc.names[(mode, method, metric)]) if emb in ("all", n)]
                    if not sel:
                        continue
                    mean = sum(sel) / len(sel)
                    if metric == "ce":
                        row["perplexity"] = perplexity(mean)
                    else:
                        row[metric] = mean
                    row["windows"] = len(sel)
                feats = acc.features.get((mode, method))
                if feats and gt_feats is not None:
                    f = torch.cat(feats)
                    names = acc.feature_names[(mode, method)]
                    idx = [i for i, n in enumerate(names) if emb in ("all", n)]
                    gidx = [i for i, n in enumerate(gt_names) if emb in ("all", n)]
                    if len(idx) >= 2 and len(gidx) >= 2:
                        row["own_fvd"] = frechet_distance_from_features(gt_feats[gidx], f[idx])
                rows.append(row)
    return {"rows": rows}


def to_markdown(result: dict[str, Any]) -> str:
    """The result rows as a Markdown table (one row per mode x method x embodiment)."""
    has_lpips = any("lpips" in r for r in result["rows"])
    cols = ["mode", "method", "embodiment", "windows", "psnr", "ssim", "delta_psnr", "perplexity", "own_fvd"]
    if has_lpips:
        cols.append("lpips")
    heads = {"psnr": "PSNR (dB)", "ssim": "SSIM", "delta_psnr": "ΔPSNR (dB)", "perplexity": "PPL",
             "own_fvd": "own-FVD", "lpips": "LPIPS"}
    lines = ["| " + " | ".join(heads.get(c, c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in result["rows"]:
        cells = []
        for c in cols:
            v = r.get(c)
            if v is None:
                cells.append("–")
            elif isinstance(v, float):
                cells.append(f"{v:.3f}" if c in ("ssim", "lpips") else f"{v:.2f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_outputs(out: Path, result: dict[str, Any], gif_rows: dict[str, list]) -> None:
    import json

    from hma_zoo.video import side_by_side, stack_rows, write_gif

    out.mkdir(parents=True, exist_ok=True)
    gifs = []
    for name, rows in gif_rows.items():
        strips = [side_by_side(g.numpy(), p.numpy()) for g, p in rows]
        path = write_gif(out / f"rollout_{name}.gif", stack_rows(strips), fps=4, scale=2)
        gifs.append(str(path))
    result["gifs"] = gifs
    (out / "metrics.json").write_text(json.dumps({k: v for k, v in result.items()}, indent=1))
    notes = "\n".join(f"- {n}" for n in result["notes"])
    (out / "metrics.md").write_text(result["markdown"] + "\n\n" + notes + "\n")
    log.info("wrote %s, %s and %d rollout GIFs (ground truth | prediction)", out / "metrics.json",
             out / "metrics.md", len(gifs))


__all__ = ["evaluate", "next_frame_cross_entropy", "to_markdown", "own_fvd"]
