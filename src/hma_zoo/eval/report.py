"""Turning per-sample evaluation values into the result table, the horizon curves, Markdown, JSON and a PNG plot.

:class:`Accumulator` collects per-sample, per-frame values by ``(mode, method, metric)``; :func:`summarise` turns
them into rows. Every row has ``mode``, ``method``, ``embodiment`` (or ``"all"``), ``horizon`` and ``windows``
plus the metrics it has (``psnr``, ``ssim``, ``delta_psnr``, ``state_error``, ``state_error_norm``, ``token_acc``,
``perplexity``, ``own_fvd``, ``lpips``, ``action_mse``, ``loss``...; raw ``state_error`` only per embodiment, since
its units differ between robots). ``horizon`` is ``"all"`` for the aggregate
rows (the mean over a sample's scored frames, then over samples) and the 1-based index of a generated frame for
the per-step rollout rows (mean over samples at that step).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from hma_zoo.eval.metrics import frechet_distance_from_features, perplexity

log = logging.getLogger(__name__)

# metrics averaged per sample over frames, in table order
FRAME_METRICS = ("psnr", "ssim", "delta_psnr", "state_error", "state_error_norm", "token_acc", "lpips")
HEADS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "delta_psnr": "ΔPSNR (dB)", "state_error": "state err",
         "state_error_norm": "state err (σ)", "token_acc": "token acc", "perplexity": "PPL", "own_fvd": "own-FVD",
         "lpips": "LPIPS", "action_mse": "action MSE (σ²)", "loss": "loss", "video_loss": "video loss",
         "action_loss": "action loss", "changed_share": "changed share", "ce_changed": "CE changed",
         "ce_static": "CE static"}


class Accumulator:
    """Per-sample values (each a vector over scored frames) by ``(mode, method, metric)``, with each sample's
    embodiment; and video features by ``(mode, method)`` for the own-feature Frechet distance."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], list[torch.Tensor]] = defaultdict(list)
        self.names: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        self.features: dict[tuple[str, str], list[torch.Tensor]] = defaultdict(list)
        self.feature_names: dict[tuple[str, str], list[str]] = defaultdict(list)

    def add(self, mode: str, method: str, metric: str, values: torch.Tensor, names: list[str],
            keep: torch.Tensor | None = None) -> None:
        """Record ``values`` ``[B]`` or ``[B, F]`` (``F`` scored frames) for the samples where ``keep`` ``[B]``."""
        values = values.detach().double().cpu()
        if values.ndim == 1:
            values = values[:, None]
        for i, name in enumerate(names):
            if keep is None or bool(keep[i]):
                self.values[(mode, method, metric)].append(values[i])
                self.names[(mode, method, metric)].append(name)

    def add_features(self, key: tuple[str, str], feats: torch.Tensor, names: list[str]) -> None:
        self.features[key].append(feats.cpu())
        self.feature_names[key].extend(names)


def _select(acc: Accumulator, key: tuple[str, str, str], emb: str) -> list[torch.Tensor]:
    return [v for v, n in zip(acc.values.get(key, []), acc.names.get(key, [])) if emb in ("all", n)]


def summarise(acc: Accumulator, modes: tuple[str, ...], methods: tuple[str, ...], aggregate_frames: dict[str, int],
              horizon_modes: tuple[str, ...] = ("rollout",)) -> list[dict[str, Any]]:
    """Rows of the result table.

    Args:
        acc: the collected values.
        modes, methods: in table order.
        aggregate_frames: per mode, how many leading scored frames the ``horizon == "all"`` rows average (a rollout
            that runs past the training window is aggregated over its first window only; later steps are in the
            per-step rows).
        horizon_modes: modes that also get per-step rows.
    """
    embodiments = sorted({n for v in acc.names.values() for n in v})
    metrics = sorted({k[2] for k in acc.values}, key=lambda m: (m not in FRAME_METRICS, m))
    rows: list[dict[str, Any]] = []
    gt_key = ("teacher_forced", "ground_truth")
    gt_feats = torch.cat(acc.features[gt_key]) if acc.features.get(gt_key) else None
    gt_names = acc.feature_names.get(gt_key, [])
    for mode in modes:
        n_agg = aggregate_frames.get(mode)
        for method in methods:
            for emb in ["all", *embodiments]:
                row: dict[str, Any] = {"mode": mode, "method": method, "embodiment": emb, "horizon": "all"}
                for metric in metrics:
                    if metric == "state_error" and emb == "all":
                        continue  # raw state units differ between embodiments; "all" has state_error_norm only
                    sel = _select(acc, (mode, method, metric), emb)
                    if not sel:
                        continue
                    per_sample = torch.stack([v[:n_agg].mean() for v in sel])
                    mean = float(per_sample.mean())
                    if metric == "ce":
                        row["perplexity"] = perplexity(mean)
                    else:
                        row[metric] = mean
                    row["windows"] = max(row.get("windows", 0), len(sel))
                feats = acc.features.get((mode, method))
                if feats and gt_feats is not None:
                    f = torch.cat(feats)
                    names = acc.feature_names[(mode, method)]
                    idx = [i for i, n in enumerate(names) if emb in ("all", n)]
                    gidx = [i for i, n in enumerate(gt_names) if emb in ("all", n)]
                    if len(idx) >= 2 and len(gidx) >= 2:
                        row["own_fvd"] = frechet_distance_from_features(gt_feats[gidx], f[idx])
                if len(row) > 4:
                    rows.append(row)
    for mode in horizon_modes:
        rows.extend(_horizon_rows(acc, mode, methods, embodiments))
    return rows


def _horizon_rows(acc: Accumulator, mode: str, methods: tuple[str, ...], embodiments: list[str]) -> list[dict]:
    """Per generated frame ``h`` (1-based): the mean over samples of each per-frame metric."""
    rows = []
    for method in methods:
        for emb in ["all", *embodiments]:
            per_metric = {}
            for metric in ("psnr", "ssim", "state_error", "state_error_norm", "token_acc"):
                if metric == "state_error" and emb == "all":
                    continue
                sel = _select(acc, (mode, method, metric), emb)
                if sel and all(v.numel() == sel[0].numel() for v in sel) and sel[0].numel() > 1:
                    per_metric[metric] = (torch.stack(sel).mean(0), len(sel))
            if not per_metric:
                continue
            steps = max(v.numel() for v, _ in per_metric.values())
            for h in range(steps):
                row: dict[str, Any] = {"mode": mode, "method": method, "embodiment": emb, "horizon": h + 1}
                for metric, (curve, n) in per_metric.items():
                    if h < curve.numel():
                        row[metric] = float(curve[h])
                        row["windows"] = n
                rows.append(row)
    return rows


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if column in ("ssim", "lpips", "token_acc", "state_error_norm", "action_mse",
                                            "changed_share", "ce_changed", "ce_static", "video_loss") \
            else f"{value:.2f}"
    return str(value)


def to_markdown(result: dict[str, Any]) -> str:
    """The aggregate rows (``horizon == "all"``) as a Markdown table, then the horizon table if there is one."""
    rows = [r for r in result["rows"] if r.get("horizon", "all") == "all"]
    optional = ["delta_psnr", "state_error", "state_error_norm", "token_acc", "perplexity", "own_fvd", "lpips",
                "action_mse", "loss", "video_loss", "action_loss", "changed_share", "ce_changed", "ce_static"]
    cols = ["mode", "method", "embodiment", "windows", "psnr", "ssim"]
    cols = [c for c in cols if c not in ("psnr", "ssim") or any(c in r for r in rows)]
    cols += [c for c in optional if any(c in r for r in rows)]
    lines = ["| " + " | ".join(HEADS.get(c, c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(c, r.get(c)) for c in cols) + " |")
    table = "\n".join(lines)
    horizon = horizon_markdown(result)
    return table + ("\n\n" + horizon if horizon else "")


def horizon_steps(total: int, window: int, prompt: int) -> list[int]:
    """Generated-frame indices worth a column: 1, the end of the first window, 2x and 4x the window, the last."""
    marks = {1, window - prompt, 2 * window - prompt, 4 * window - prompt, total}
    return sorted(h for h in marks if 1 <= h <= total)


def horizon_markdown(result: dict[str, Any]) -> str:
    """PSNR (and normalised state error) of the rollout rows at a few horizons, all embodiments together."""
    rows = [r for r in result["rows"] if r.get("horizon") not in (None, "all") and r["embodiment"] == "all"]
    if not rows:
        return ""
    settings = result.get("settings", {})
    total = max(r["horizon"] for r in rows)
    steps = horizon_steps(total, settings.get("window", total), settings.get("prompt_frames", 1))
    by = {(r["method"], r["horizon"]): r for r in rows}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    metrics = [m for m in ("psnr", "state_error_norm") if any(m in r for r in rows)]
    head = ["method"] + [f"{HEADS[m]} @ {h}" for m in metrics for h in steps]
    lines = [f"Rollout by horizon (generated frame; the window is {settings.get('window', '?')} frames):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods:
        cells = [method] + [_cell(m, by.get((method, h), {}).get(m)) for m in metrics for h in steps]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_horizons(result: dict[str, Any], path: Path) -> Path | None:
    """A PNG of PSNR and normalised state error against the rollout horizon, one line per method (all
    embodiments); vertical lines at 1x, 2x and 4x the window. Returns the path, or None without horizon rows."""
    rows = [r for r in result["rows"] if r.get("horizon") not in (None, "all") and r["embodiment"] == "all"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("psnr", "state_error_norm") if any(m in r for r in rows)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8), squeeze=False)
    settings = result.get("settings", {})
    window, prompt = settings.get("window"), settings.get("prompt_frames", 1)
    for ax, metric in zip(axes[0], metrics):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["horizon"], r[metric]) for r in rows if r["method"] == method and metric in r)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=method, marker=".", markersize=3)
        if window:
            for k in (1, 2, 4):
                ax.axvline(k * window - prompt, color="0.8", linestyle="--", linewidth=0.8)
        ax.set_xlabel("generated frame (horizon)")
        ax.set_ylabel(HEADS[metric])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("rollout metrics by horizon (dashed: 1x, 2x, 4x the window)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(out: Path, result: dict[str, Any], gif_rows: dict[str, list]) -> None:
    """``metrics.json`` (all rows), ``metrics.md`` (tables and notes), ``horizons.png`` and the rollout GIFs
    (ground truth | prediction) into ``out``."""
    from hma_zoo.video import side_by_side, stack_rows, write_gif

    out.mkdir(parents=True, exist_ok=True)
    gifs = []
    for name, pairs in gif_rows.items():
        strips = [side_by_side(g.numpy(), p.numpy()) for g, p in pairs]
        gifs.append(str(write_gif(out / f"rollout_{name}.gif", stack_rows(strips), fps=4, scale=2)))
    result["gifs"] = gifs
    plot = plot_horizons(result, out / "horizons.png")
    result["plots"] = [str(plot)] if plot else []
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    notes = "\n".join(f"- {n}" for n in result["notes"])
    (out / "metrics.md").write_text(result["markdown"] + "\n\n" + notes + "\n")
    log.info("wrote %s, %s, %d rollout GIFs%s", out / "metrics.json", out / "metrics.md", len(gifs),
             f" and {plot}" if plot else "")
