"""Scaling laws from a sweep's table: ``L(x) = a * x^-b + c`` in parameters, data and compute, with bootstrap
intervals, the compute-optimal frontier, PNG plots and TensorBoard hparams.

The form is the saturating power law of Kaplan et al. (2020) and Hoffmann et al. (2022); HMA's Fig. 5/6 (Wang et al.
2025) claim that more embodiments, more data and bigger trunks each lower the loss. A fit needs at least four
distinct ``x`` (three parameters) and a loss that falls with ``x``; otherwise :class:`IllPosedFitError` says so
instead of drawing a curve through noise.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hma_zoo.registry import natural_key
from hma_zoo.sweep.point import RESULT

TABLE_COLUMNS = ("id", "seed", "variant", "params", "params_trunk", "train_episodes", "train_frames", "embodiments",
                 "steps", "flops_per_step", "flops", "val_loss", "val_video_loss", "perplexity", "psnr", "delta_psnr",
                 "fit_seconds", "attempts")
#: columns of ``eval.rollout`` (:func:`hma_zoo.sweep.point.rollout_metrics`), in the table only when a point has them
EVAL_COLUMNS = ("tf_psnr", "tf_delta_psnr", "state_error_norm", "state_error_norm_floor", "rollout_psnr",
                "rollout_delta_psnr", "rollout_state_error_norm", "eval_windows")
#: per-embodiment raw state errors: one column ``<prefix>/<embodiment>`` each (units differ between embodiments)
PER_EMBODIMENT_PREFIXES = ("state_error/", "rollout_state_error/")
X_COLUMNS = {"params": "parameters N", "params_trunk": "trunk parameters N", "train_frames": "training frames D",
             "flops": "training compute C (FLOPs)", "embodiments": "embodiments"}


class IllPosedFitError(ValueError):
    """The points cannot determine ``a * x^-b + c``: too few distinct ``x``, or a loss that does not fall with ``x``."""


@dataclass
class PowerLawFit:
    """``y = a * x^-b + c`` fitted to ``n`` points, with 95% bootstrap intervals (``*_ci``) of the parameters."""

    x_name: str
    a: float
    b: float
    c: float
    n: int
    r2: float
    a_ci: tuple[float, float] = (math.nan, math.nan)
    b_ci: tuple[float, float] = (math.nan, math.nan)
    c_ci: tuple[float, float] = (math.nan, math.nan)
    boot_ok: float = 0.0
    group: str = ""
    notes: list[str] = field(default_factory=list)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.a * np.asarray(x, dtype=float) ** (-self.b) + self.c

    def describe(self) -> str:
        text = (f"L({self.x_name}) = {self.a:.4g} * {self.x_name}^-{self.b:.3f} + {self.c:.4f}   "
                f"b in [{self.b_ci[0]:.3f}, {self.b_ci[1]:.3f}], c in [{self.c_ci[0]:.4f}, {self.c_ci[1]:.4f}] "
                f"(95% bootstrap, {self.boot_ok:.0%} of resamples fit), R^2 {self.r2:.3f}, {self.n} points")
        return text + "".join(f"; {n}" for n in self.notes)


def _curve(x: np.ndarray, log_a: float, b: float, c: float) -> np.ndarray:
    return np.exp(log_a) * x ** (-b) + c


def _fit_once(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least squares of ``a * x^-b + c`` on ``x`` scaled to ``[1, ...]``; returns ``(log a, b, c)`` in those units."""
    from scipy.optimize import curve_fit

    lo = float(y.min())
    span = max(float(y.max()) - lo, 1e-6)
    # start: the log-log slope of y - 0.9 * min(y), an irreducible loss a little under the best point
    c0 = max(0.0, lo - 0.5 * span)
    slope = np.polyfit(np.log(x), np.log(np.maximum(y - c0, 1e-9)), 1)[0]
    p0 = (math.log(max(float(y.max()) - c0, 1e-6)), float(np.clip(-slope, 0.01, 3.0)), c0)
    bounds = ([-50.0, 0.0, 0.0], [50.0, 5.0, lo])
    popt, _ = curve_fit(_curve, x, y, p0=p0, bounds=bounds, maxfev=20000)
    return float(popt[0]), float(popt[1]), float(popt[2])


def fit_power_law(x: Any, y: Any, x_name: str = "x", n_boot: int = 1000, seed: int = 0,
                  min_points: int = 4, min_r2: float = 0.5) -> PowerLawFit:
    """Fit ``y = a * x^-b + c`` (``b >= 0``, ``0 <= c <= min(y)``) with ``n_boot`` bootstrap resamples of the points.

    ``x``, ``y``: 1-D, same length (repeated ``x``, e.g. seeds, are fine). Raises :class:`IllPosedFitError` with fewer
    than ``min_points`` distinct ``x``, when ``y`` does not fall with ``x`` (Spearman correlation above -0.5), or when
    the best curve explains less than ``min_r2`` of the variance (a trend within noise); notes a non-monotone trend
    (a later ``x`` with a higher mean loss) in :attr:`PowerLawFit.notes`.
    """
    from scipy.stats import spearmanr

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[keep], y[keep]
    distinct = np.unique(x)
    if len(distinct) < min_points:
        raise IllPosedFitError(f"L({x_name}) needs at least {min_points} distinct values of {x_name} to fit a*x^-b + c "
                          f"(3 parameters); the sweep has {len(distinct)}: add sizes to the grid")
    rho = float(spearmanr(x, y)[0])
    if not rho < -0.5:
        raise IllPosedFitError(f"the loss does not fall with {x_name} (Spearman {rho:+.2f} over {len(x)} points): a "
                               "power law would be a wrong curve; check for undertrained or diverged points")
    notes = []
    means = np.array([y[x == v].mean() for v in distinct])
    rises = [f"{distinct[i]:.3g}->{distinct[i + 1]:.3g}" for i in range(len(distinct) - 1) if means[i + 1] > means[i]]
    if rises:
        notes.append(f"not monotone: the mean loss rises at {', '.join(rises)}")
    x0 = float(distinct[0])
    xs = x / x0
    try:
        log_a, b, c = _fit_once(xs, y)
    except (RuntimeError, ValueError) as err:
        raise IllPosedFitError(f"L({x_name}): the least-squares fit did not converge ({err})") from err
    pred = _curve(xs, log_a, b, c)
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum()) or 1e-12
    r2 = 1.0 - ss_res / ss_tot
    if r2 < min_r2:
        raise IllPosedFitError(f"L({x_name}): the best curve explains only R^2 {r2:.2f} of the "
                               f"spread (< {min_r2}): the differences are within noise at this budget; add seeds, "
                               "wider steps in x or a longer training budget")
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        if len(np.unique(xs[idx])) < 3:
            continue
        try:
            la_b, b_b, c_b = _fit_once(xs[idx], y[idx])
        except (RuntimeError, ValueError):
            continue
        boots.append((math.exp(la_b) * x0 ** b_b, b_b, c_b))
    a = math.exp(log_a) * x0 ** b  # back to the units of x: a * x^-b = a' * (x / x0)^-b
    fit = PowerLawFit(x_name=x_name, a=a, b=b, c=c, n=len(x), r2=r2, notes=notes,
                      boot_ok=len(boots) / max(1, n_boot))
    if boots:
        arr = np.array(boots)
        fit.a_ci, fit.b_ci, fit.c_ci = (tuple(float(v) for v in np.percentile(arr[:, i], [2.5, 97.5]))
                                        for i in range(3))
    return fit


# ------------------------------------------------------------------------------------------------------ the table
def collect(root: str | Path) -> list[dict[str, Any]]:
    """Every finished point's ``result.json`` under ``root/points``, with ``seed`` / ``variant`` pulled out."""
    import yaml

    rows = []
    for path in sorted(Path(root, "points").glob(f"*/{RESULT}")):
        r = json.loads(path.read_text())
        ov = r.get("overrides", {})
        base: dict[str, Any] = {}
        point = path.parent / "point.json"
        if point.is_file() and Path(json.loads(point.read_text()).get("base", "")).is_file():
            base = yaml.safe_load(Path(json.loads(point.read_text())["base"]).read_text()) or {}
        r.setdefault("seed", ov.get("seed_everything", base.get("seed_everything")))
        r.setdefault("variant", ov.get("model.init_args.variant",
                                       (base.get("model") or {}).get("init_args", {}).get("variant")))
        rows.append(r)
    return rows


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The metric columns of ``results.csv``: :data:`TABLE_COLUMNS`, then those of :data:`EVAL_COLUMNS` and the
    per-embodiment ``state_error/<embodiment>`` columns that at least one row has."""
    present = {k for r in rows for k in r}
    per_emb = sorted((k for k in present if k.startswith(PER_EMBODIMENT_PREFIXES)),
                     key=lambda k: (k.startswith("rollout_"), k))
    return [*TABLE_COLUMNS, *(c for c in EVAL_COLUMNS if c in present), *per_emb]


def write_table(rows: list[dict[str, Any]], root: str | Path) -> tuple[Path, Path]:
    """``results.csv`` (one row per point: the swept keys, then :func:`table_columns`) and ``results.json``."""
    root = Path(root)
    keys = sorted({k for r in rows for k in r.get("overrides", {})})
    columns = table_columns(rows)
    csv_path, json_path = root / "results.csv", root / "results.json"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*keys, *columns])
        for r in rows:
            ov = r.get("overrides", {})
            cells = [json.dumps(ov[k]) if not isinstance(ov.get(k), str) and k in ov else ov.get(k, "") for k in keys]
            cells += [len(r[c]) if c == "embodiments" and isinstance(r.get(c), list) else r.get(c, "")
                      for c in columns]
            writer.writerow(cells)
    json_path.write_text(json.dumps([{k: v for k, v in r.items() if k != "curve"} for r in rows], indent=1))
    return csv_path, json_path


def _x(row: dict[str, Any], key: str) -> float:
    v = row.get(key)
    return float(len(v)) if isinstance(v, list) else float(v)


def _group_key(row: dict[str, Any], x: str) -> str:
    """Points that differ only in ``x`` share a group: data size for L(N), model size for L(D), ...; the training
    steps are part of every group (points trained for different budgets are never fitted together)."""
    steps = f", {row['steps']} steps" if row.get("steps") is not None else ""
    emb = f", {len(row['embodiments'])} embodiments" if row.get("embodiments") else ""
    if x in ("params", "params_trunk"):
        return f"D={row['train_frames']} frames{emb}{steps}"
    # model size by its trunk: the stems and heads grow with the embodiments, the trunk is what was chosen
    size = f"N_trunk={row.get('params_trunk', row['params']) / 1e6:.2f}M"
    if x == "train_frames":
        return f"{size}{emb}{steps}"
    if x == "embodiments":
        return f"{size}{steps}"
    return f"all{steps}" if steps else "all"


def _groups(rows: list[dict[str, Any]], x: str, metric: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The rows that have ``x`` (and ``metric``, if given) by :func:`_group_key`, groups in their numbers' order."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get(x) is not None and (metric is None or r.get(metric) is not None):
            groups[_group_key(r, x)].append(r)
    return dict(sorted(groups.items(), key=lambda kv: natural_key(kv[0])))


def _swept(rows: list[dict[str, Any]], x: str) -> bool:
    """Whether some group of points that differ only in ``x`` holds more than one value of it."""
    return any(len({_x(r, x) for r in members}) > 1 for members in _groups(rows, x).values())


def fit_table(rows: list[dict[str, Any]], x: str, metric: str = "val_video_loss",
              n_boot: int = 1000) -> tuple[list[PowerLawFit], list[str]]:
    """Fit ``metric`` against ``x`` in each group of points that differ only in ``x``; returns the fits and the
    messages of the groups that could not be fitted (:class:`IllPosedFitError`)."""
    fits, problems = [], []
    for name, members in _groups(rows, x, metric).items():
        try:
            fit = fit_power_law([_x(r, x) for r in members], [float(r[metric]) for r in members], x_name=x,
                                n_boot=n_boot)
        except IllPosedFitError as err:
            problems.append(f"{name}: {err}")
            continue
        fit.group = name
        fits.append(fit)
    return fits, problems


def frontier(rows: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    """The compute-optimal frontier: ``(C, loss, point id)`` of every validation where no point reached a lower loss
    with less or equal compute (C = FLOPs per step x step), in increasing C."""
    pts = sorted((r["flops_per_step"] * step, loss, r["id"])
                 for r in rows for step, loss in r.get("curve", []) if step > 0)
    out, best = [], math.inf
    for c, loss, pid in pts:
        if loss < best:
            best = loss
            out.append((c, loss, pid))
    return out


# ------------------------------------------------------------------------------------------------------ plots
def plot_fits(rows: list[dict[str, Any]], fits: list[PowerLawFit], x: str, metric: str, path: str | Path) -> Path:
    """Points (one colour per group) and their fitted curves on log-x axes, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    by_group = {f.group: f for f in fits}
    for i, (name, members) in enumerate(_groups(rows, x, metric).items()):
        color = f"C{i % 10}"
        xs = np.array([_x(r, x) for r in members])
        ax.scatter(xs, [r[metric] for r in members], color=color, s=18, label=name)
        if name in by_group:
            f = by_group[name]
            grid = np.geomspace(xs.min(), xs.max(), 100)
            ax.plot(grid, f.predict(grid), color=color, lw=1.2,
                    label=f"b = {f.b:.2f} [{f.b_ci[0]:.2f}, {f.b_ci[1]:.2f}]")
    ax.set_xscale("log")
    ax.set_xlabel(X_COLUMNS.get(x, x))
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{metric} against {X_COLUMNS.get(x, x)}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_frontier(rows: list[dict[str, Any]], front: list[tuple[float, float, str]], fit: PowerLawFit | None,
                  path: str | Path) -> Path:
    """Every point's validation curve against compute (log-log), the frontier, and its fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    sizes = sorted({r["params"] for r in rows})
    cmap = plt.get_cmap("viridis")
    for r in rows:
        curve = [(s, v) for s, v in r.get("curve", []) if s > 0]
        if not curve:
            continue
        color = cmap(sizes.index(r["params"]) / max(1, len(sizes) - 1))
        ax.plot([r["flops_per_step"] * s for s, _ in curve], [v for _, v in curve], color=color, lw=0.8, alpha=0.7)
    for i, n in enumerate(sizes):
        ax.plot([], [], color=cmap(i / max(1, len(sizes) - 1)), label=f"N = {n / 1e6:.2f}M")
    if front:
        ax.plot([c for c, _, _ in front], [v for _, v, _ in front], "k.", ms=5, label="frontier")
    if fit is not None:
        grid = np.geomspace(front[0][0], front[-1][0], 100)
        ax.plot(grid, fit.predict(grid), "k--", lw=1, label=f"fit b = {fit.b:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C (FLOPs)")
    ax.set_ylabel("val video loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


#: the final metrics a point can have, logged as TensorBoard hparams metrics
HPARAM_METRICS = ("val_loss", "val_video_loss", "perplexity", "psnr", "delta_psnr",
                  *(c for c in EVAL_COLUMNS if c not in ("state_error_norm_floor", "eval_windows")))


def log_hparams(rows: list[dict[str, Any]], logdir: str | Path, metrics: tuple[str, ...] = HPARAM_METRICS) -> Path:
    """One TensorBoard hparams run per point (its swept keys, size and data against its final metrics)."""
    from torch.utils.tensorboard import SummaryWriter

    logdir = Path(logdir)
    with SummaryWriter(str(logdir)) as writer:
        for r in rows:
            hp: dict[str, Any] = {k.rsplit(".", 1)[-1]: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v))
                                  for k, v in r.get("overrides", {}).items()}
            hp.update(params=r["params"], train_frames=r["train_frames"], steps=r.get("steps", 0))
            writer.add_hparams(hp, {f"hparam/{m}": float(r[m]) for m in metrics if r.get(m) is not None},
                               run_name=r["id"])
    return logdir


def analyse(root: str | Path, metric: str = "val_video_loss", n_boot: int = 1000) -> dict[str, Any]:
    """``hma-zoo sweep fit``: table, fits in N / D / C (+ embodiments when swept), plots, hparams, ``fits.json``."""
    root = Path(root)
    rows = collect(root)
    if not rows:
        raise FileNotFoundError(f"{root}: no finished points (points/*/{RESULT}); run the sweep first")
    write_table(rows, root)
    report: dict[str, Any] = {"points": len(rows), "metric": metric, "fits": {}, "problems": {}, "plots": []}
    for x in ("params", "train_frames"):
        if not _swept(rows, x):  # e.g. an embodiment sweep: sizes differ only by stems, data only by mixture
            report["fits"][x] = []
            report["problems"][x] = [f"not swept: no two points differ only in {x}"]
            continue
        fits, problems = fit_table(rows, x, metric, n_boot)
        report["fits"][x] = [asdict(f) for f in fits]
        report["problems"][x] = problems
        report["plots"].append(str(plot_fits(rows, fits, x, metric, root / f"loss_vs_{x}.png")))
    if _swept(rows, "embodiments"):
        report["plots"].append(str(plot_fits(rows, [], "embodiments", metric, root / "loss_vs_embodiments.png")))
    # the validation curves are on each point's own val split: comparable only when all points share one mixture
    same_data = len({tuple(sorted(r.get("embodiments", []))) for r in rows}) == 1
    front = frontier(rows) if same_data else []
    cfit = None
    report["fits"]["flops"], report["problems"]["flops"] = [], []
    if not same_data:
        report["problems"]["flops"].append("frontier: the points train on different embodiment mixtures, so their "
                                           "validation curves are on different data; no common compute frontier")
    else:
        try:
            cfit = fit_power_law([c for c, _, _ in front], [v for _, v, _ in front], x_name="C", n_boot=n_boot)
            cfit.group = "frontier"
            report["fits"]["flops"].append(asdict(cfit))
        except IllPosedFitError as err:
            report["problems"]["flops"].append(f"frontier: {err}")
    report["frontier"] = [{"flops": c, "loss": v, "id": pid} for c, v, pid in front]
    if front:
        report["plots"].append(str(plot_frontier(rows, front, cfit, root / "frontier.png")))
    log_hparams(rows, root / "tb_hparams")
    (root / "fits.json").write_text(json.dumps(report, indent=1))
    return report
