"""Policy ranking statistics and reports for ``hma-zoo policy-eval`` (HMA paper Table 5).

Each policy is rolled out in the real simulator and inside the learned world model; the world model is useful for
policy evaluation when it ranks the policies as the real simulator does. This module holds the statistics and the
report of that comparison:

* per-policy success rates with 95% intervals (:func:`wilson_interval` for 0/1 success, :func:`mean_interval` for
  continuous progress scores), collected in :class:`PolicyResult`;
* agreement between the per-policy real and world-model means: :func:`pearson`, :func:`spearman` (through
  ``torchmetrics``) and :func:`mmrv` (Mean Maximum Rank Violation, from SIMPLER);
* :func:`summarize` (a JSON-serialisable dict), :func:`to_markdown`, :func:`write_report`, :func:`combine` (several
  tasks in one document) and :func:`side_by_side_gif` (a real rollout next to its world-model counterpart).

The paper's anchors: RoboWorld Pearson 0.989 / Spearman 0.970; SC3-Eval Pearson 0.929 with MMRV 0.119. The targets
marked in reports are Pearson >= 0.95 and Spearman >= 0.9 (:data:`TARGETS`).

When the judge's verdict on the *real* rollouts' frames is given (``world_on_real``), the same agreement figures are
computed between the real scores and those verdicts: the "judge-only" agreement, which separates the success judge's
error from the world model's.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

TARGETS: dict[str, float] = {"pearson": 0.95, "spearman": 0.9}
"""Agreement targets marked met / missed in reports (MMRV has none: 0 is a perfect ranking)."""

NA_TEXT = "n/a (fewer than 3 policies or no spread)"
"""How a missing (NaN / None) agreement figure is printed."""


# --------------------------------------------------------------------------------------------------------- intervals


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` for a success rate ``successes / n`` (95% for ``z = 1.96``).

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n successes (0/10 gives
    ``(0.0, 0.278)``). Raises ``ValueError`` for ``n <= 0`` or ``successes`` outside ``[0, n]``.
    """
    if n <= 0:
        raise ValueError(f"the Wilson interval needs at least one trial, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]; got {successes} of {n}")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def mean_interval(values: Sequence[float], z: float = 1.96) -> tuple[float, float, float]:
    """Mean and normal-approximation interval ``(mean, low, high)`` of continuous scores (e.g. progress in [0, 1]).

    The half-width is ``z * s / sqrt(n)`` with ``s`` the sample standard deviation (``ddof=1``); the interval is not
    clipped to the scores' range. A single value gives ``(v, v, v)``. Raises ``ValueError`` for no values.
    """
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = float(arr.mean())
    if arr.size == 1:
        return mean, mean, mean
    half = z * float(arr.std(ddof=1)) / math.sqrt(arr.size)
    return mean, mean - half, mean + half


# --------------------------------------------------------------------------------------------------------- agreement


def _pair(x: Sequence[float], y: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 1-D tensors of two equally long score lists (``ValueError`` otherwise)."""
    tx = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(-1))
    ty = torch.as_tensor(np.asarray(y, dtype=np.float64).reshape(-1))
    if tx.numel() != ty.numel():
        raise ValueError(f"need one score per policy in both lists; got {tx.numel()} and {ty.numel()}")
    return tx, ty


def _undefined(tx: torch.Tensor, ty: torch.Tensor) -> bool:
    """True when a correlation is undefined: fewer than 3 policies, a constant list, or a non-finite score."""
    if tx.numel() < 3:
        return True
    if not (torch.isfinite(tx).all() and torch.isfinite(ty).all()):
        return True
    return bool(tx.max() == tx.min() or ty.max() == ty.min())


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of two per-policy score lists (``torchmetrics.functional.pearson_corrcoef``, float64).

    Returns ``float('nan')``, with no exception or warning, for fewer than 3 policies, when either list has no spread
    (all values equal; torchmetrics itself warns and returns NaN there) or holds a non-finite value. Raises
    ``ValueError`` when the lists differ in length.
    """
    from torchmetrics.functional import pearson_corrcoef

    tx, ty = _pair(x, y)
    if _undefined(tx, ty):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics' near-zero-variance warning: the result is NaN, handled below
        r = float(pearson_corrcoef(tx, ty))
    return r if math.isfinite(r) else float("nan")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation of two per-policy score lists (``torchmetrics.functional.spearman_corrcoef``).

    Ties get their mean rank. torchmetrics computes on the ranks with ``eps = 1e-6`` added to the denominator, so
    values are within about 1e-6 of the exact coefficient. Returns ``float('nan')`` for fewer than 3 policies, when
    either list has no spread (torchmetrics would return 0 there, which reads as "no agreement") or holds a
    non-finite value. Raises ``ValueError`` when the lists differ in length.
    """
    from torchmetrics.functional import spearman_corrcoef

    tx, ty = _pair(x, y)
    if _undefined(tx, ty):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = float(spearman_corrcoef(tx, ty))
    return r if math.isfinite(r) else float("nan")


def mmrv(real: Sequence[float], predicted: Sequence[float]) -> float:
    """Mean Maximum Rank Violation between real and predicted (world-model) per-policy success rates.

    From SIMPLER (Li et al. 2024, "Evaluating Real-World Robot Manipulation Policies in Simulation")::

        MMRV = (1/N) sum_i max_j |R_i - R_j| * 1[(P_i < P_j) != (R_i < R_j)]

    with ``R`` the real and ``P`` the predicted rates: each policy is charged the largest real-performance gap of a
    pair that the prediction orders wrongly. 0 is a perfect ranking; the value is in units of the real scores.
    Comparisons are strict, so a tie in one list against a strict order in the other is a violation (as in SIMPLER).
    SIMPLER's released code tests ``>`` where this formula has ``<``; both give the same value unless there are ties.

    Returns ``float('nan')`` for fewer than 2 policies (no ranking to violate); raises ``ValueError`` when the lists
    differ in length.
    """
    r = np.asarray(real, dtype=np.float64).reshape(-1)
    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    if r.size != p.size:
        raise ValueError(f"need one score per policy in both lists; got {r.size} and {p.size}")
    if r.size < 2:
        return float("nan")
    violated = (p[:, None] < p[None, :]) != (r[:, None] < r[None, :])  # [i, j]
    gaps = np.abs(r[:, None] - r[None, :]) * violated
    return float(gaps.max(axis=1).mean())


# ---------------------------------------------------------------------------------------------------------- results


def _interval(values: list[float], binary: bool) -> tuple[float, float, float]:
    """``(mean, low, high)``: Wilson for 0/1 scores, the normal approximation for continuous ones."""
    if binary:
        n = len(values)
        successes = int(round(sum(values)))
        low, high = wilson_interval(successes, n)
        return successes / n, low, high
    return mean_interval(values)


@dataclass
class PolicyResult:
    """One policy's per-rollout scores on one task.

    Attributes:
        name: the policy's name.
        real: scores of the rollouts in the real simulator, one per rollout.
        world: scores of the rollouts inside the world model, one per rollout.
        world_on_real: the success judge's verdict on the *real* rollouts' frames (one per real rollout), which
            separates the judge's error from the world model's; ``None`` when not measured.
        binary: scores are 0/1 success (Wilson intervals) rather than continuous progress (normal intervals).
    """

    name: str
    real: list[float]
    world: list[float]
    world_on_real: list[float] | None = None
    binary: bool = True

    def __post_init__(self) -> None:
        self.real = [float(v) for v in self.real]
        self.world = [float(v) for v in self.world]
        if self.world_on_real is not None:
            self.world_on_real = [float(v) for v in self.world_on_real]
        lists = {"real": self.real, "world": self.world}
        if self.world_on_real is not None:
            lists["world_on_real"] = self.world_on_real
        for key, vals in lists.items():
            if not vals:
                raise ValueError(f"policy {self.name!r}: no {key} rollouts")
            if self.binary and any(v not in (0.0, 1.0) for v in vals):
                raise ValueError(f"policy {self.name!r}: binary {key} scores must be 0 or 1, got {vals}")

    @property
    def real_mean(self) -> float:
        """Mean real score (the success rate when binary)."""
        return _interval(self.real, self.binary)[0]

    @property
    def world_mean(self) -> float:
        """Mean world-model score."""
        return _interval(self.world, self.binary)[0]

    @property
    def world_on_real_mean(self) -> float | None:
        """Mean of the judge's verdicts on the real frames, or ``None`` when absent."""
        return None if self.world_on_real is None else _interval(self.world_on_real, self.binary)[0]

    @property
    def real_interval(self) -> tuple[float, float]:
        """95% interval ``(low, high)`` of the real mean."""
        return _interval(self.real, self.binary)[1:]

    @property
    def world_interval(self) -> tuple[float, float]:
        """95% interval ``(low, high)`` of the world-model mean."""
        return _interval(self.world, self.binary)[1:]

    @property
    def world_on_real_interval(self) -> tuple[float, float] | None:
        """95% interval of the judge-on-real-frames mean, or ``None`` when absent."""
        return None if self.world_on_real is None else _interval(self.world_on_real, self.binary)[1:]

    def row(self) -> dict[str, Any]:
        """This policy's row of :func:`summarize` (``{"mean", "low", "high"}`` per score list)."""

        def block(values: list[float] | None) -> dict[str, float] | None:
            if values is None:
                return None
            mean, low, high = _interval(values, self.binary)
            return {"mean": mean, "low": low, "high": high}

        return {
            "name": self.name,
            "binary": self.binary,
            "n": len(self.real),
            "n_world": len(self.world),
            "real": block(self.real),
            "world": block(self.world),
            "world_on_real": block(self.world_on_real),
        }


# ---------------------------------------------------------------------------------------------------------- summary


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN / inf -> None, numpy scalars and arrays -> Python, paths and other objects -> str."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray | torch.Tensor):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _agreement(x: list[float], y: list[float]) -> dict[str, Any]:
    """``{"n_policies", "pearson", "spearman", "mmrv"}``; undefined figures are ``None``."""
    return _clean({"n_policies": len(x), "pearson": pearson(x, y), "spearman": spearman(x, y), "mmrv": mmrv(x, y)})


def summarize(task: str, results: list[PolicyResult], meta: dict) -> dict:
    """JSON-serialisable summary of one task's policy evaluation.

    Returns ``{"task", "binary", "policies": [row, ...], "agreement", "judge_agreement", "targets", "meta"}``:

    * ``policies``: :meth:`PolicyResult.row` per policy (name, ``n`` real rollouts, ``n_world``, and
      ``{"mean", "low", "high"}`` for ``real``, ``world`` and ``world_on_real``, the last ``None`` when absent);
    * ``agreement``: ``{"n_policies", "pearson", "spearman", "mmrv"}`` between the per-policy real and world means;
    * ``judge_agreement``: the same between the real means and the judge's verdict on the real frames, over the
      policies that have it (``None`` when none has): the judge-only agreement;
    * ``targets``: :data:`TARGETS`; ``meta``: ``meta`` passed through (model, judge, horizon, seeds, machine...).

    Undefined figures (NaN: fewer than 3 policies or no spread) are stored as ``None`` so the dict is strict JSON;
    paths and numpy values in ``meta`` become strings / Python numbers.
    """
    names = [r.name for r in results]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}")
    real = [r.real_mean for r in results]
    world = [r.world_mean for r in results]
    judged = [r for r in results if r.world_on_real is not None]
    judge = (
        _agreement([r.real_mean for r in judged], [float(r.world_on_real_mean or 0.0) for r in judged])
        if judged
        else None
    )
    return {
        "task": task,
        "binary": all(r.binary for r in results),
        "policies": [_clean(r.row()) for r in results],
        "agreement": _agreement(real, world),
        "judge_agreement": judge,
        "targets": dict(TARGETS),
        "meta": _clean(dict(meta)),
    }


# --------------------------------------------------------------------------------------------------------- markdown


def _num(value: float | None, digits: int = 3) -> str:
    """A figure, or :data:`NA_TEXT` when undefined."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NA_TEXT
    return f"{value:.{digits}f}"


def _ci(block: dict | None) -> str:
    """``0.80 [0.49, 0.94]`` from a ``{"mean", "low", "high"}`` block; ``-`` when absent."""
    if not block:
        return "-"
    return f"{block['mean']:.2f} [{block['low']:.2f}, {block['high']:.2f}]"


def _marked(name: str, value: float | None, targets: dict[str, float]) -> str:
    """``Pearson 0.989 (target >= 0.95: met)``."""
    label = name.capitalize()
    if name not in targets:
        return f"{label} {_num(value)}"
    if value is None or not math.isfinite(value):
        return f"{label} {NA_TEXT} (target ≥ {targets[name]:g}: not assessed)"
    verdict = "met" if value >= targets[name] else "missed"
    return f"{label} {_num(value)} (target ≥ {targets[name]:g}: {verdict})"


def _agreement_line(title: str, agreement: dict, targets: dict[str, float]) -> str:
    parts = [
        _marked("pearson", agreement.get("pearson"), targets),
        _marked("spearman", agreement.get("spearman"), targets),
    ]
    parts.append(f"MMRV {_num(agreement.get('mmrv'))} (0 = perfect ranking)")
    return f"**{title}** ({agreement.get('n_policies', '?')} policies): " + " · ".join(parts)


def to_markdown(summary: dict, level: int = 1) -> str:
    """Markdown report of one :func:`summarize` result: a heading with the task (``level`` sets its depth), a table
    of policies (policy, rollouts, real success (95% CI), world model (95% CI), judge on real frames), the agreement
    line (Pearson / Spearman marked against :data:`TARGETS`, MMRV), the judge-only line when present, and ``meta``."""
    h = "#" * max(1, level)
    targets = summary.get("targets") or TARGETS
    lines = [f"{h} Policy evaluation: {summary['task']}", ""]
    if not summary.get("binary", True):
        lines += ["Scores are continuous progress in [0, 1] (mean with a normal-approximation 95% interval).", ""]
    lines += [
        "| policy | rollouts | real success (95% CI) | world model (95% CI) | judge on real frames |",
        "|---|---:|---|---|---|",
    ]
    for row in summary["policies"]:
        n, n_world = row["n"], row.get("n_world", row["n"])
        rollouts = str(n) if n == n_world else f"{n} real / {n_world} world"
        lines.append(
            f"| {row['name']} | {rollouts} | {_ci(row['real'])} | {_ci(row['world'])} "
            f"| {_ci(row.get('world_on_real'))} |"
        )
    lines += ["", _agreement_line("Agreement, real vs world model", summary["agreement"], targets)]
    if summary.get("judge_agreement"):
        lines += ["", _agreement_line("Judge only, real vs judge on real frames", summary["judge_agreement"], targets)]
    for name, alt in (summary.get("other_judges") or {}).items():
        lines += ["", f"Judge `{name}` on the same rollouts:", "",
                  "| policy | world model (95% CI) | judge on real frames |", "|---|---|---|"]
        lines += [f"| {row['name']} | {_ci(row['world'])} | {_ci(row.get('world_on_real'))} |"
                  for row in alt["policies"]]
        lines += ["", _agreement_line(f"Agreement with judge `{name}`, real vs world model", alt["agreement"], targets)]
        if alt.get("judge_agreement"):
            lines += ["", _agreement_line(f"Judge `{name}` only, real vs judge on real frames",
                                          alt["judge_agreement"], targets)]
    meta = summary.get("meta") or {}
    if meta:
        lines += [""] + [f"- {key}: {value}" for key, value in meta.items()]
    return "\n".join(lines) + "\n"


def combine(summaries: list[dict]) -> str:
    """One Markdown document for several tasks: an overall table (task, policies, Pearson, Spearman, MMRV) followed
    by each task's :func:`to_markdown` report one heading level down."""
    lines = [
        "# Policy evaluation",
        "",
        "| task | policies | Pearson | Spearman | MMRV |",
        "|---|---:|---|---|---|",
    ]
    for s in summaries:
        a = s["agreement"]
        lines.append(
            f"| {s['task']} | {len(s['policies'])} | {_num(a.get('pearson'))} | {_num(a.get('spearman'))} | "
            f"{_num(a.get('mmrv'))} |"
        )
    targets = (summaries[0].get("targets") if summaries else None) or TARGETS
    lines += ["", f"Targets: Pearson ≥ {targets['pearson']:g}, Spearman ≥ {targets['spearman']:g}; MMRV 0 is perfect."]
    text = "\n".join(lines) + "\n"
    for s in summaries:
        text += "\n" + to_markdown(s, level=2)
    return text


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path`` and move it into place (``os.replace``)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(summary: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``summary.json`` (strict JSON) and ``report.md`` (:func:`to_markdown`) atomically into ``out_dir``
    (created if needed); returns ``(json_path, markdown_path)``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "summary.json", out / "report.md"
    _atomic_write(json_path, json.dumps(_clean(summary), indent=2, allow_nan=False) + "\n")
    _atomic_write(md_path, to_markdown(summary))
    return json_path, md_path


# ------------------------------------------------------------------------------------------------------------ video


def _label_strip(text: str, width: int, height: int) -> np.ndarray:
    """uint8 ``[height, width, 3]`` black strip with ``text`` in white (PIL's default font; clipped if too wide)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (width, height), (0, 0, 0))
    ImageDraw.Draw(img).text((2, 1), text, fill=(255, 255, 255), font=ImageFont.load_default())
    return np.asarray(img)


def _pad_to(frames: np.ndarray, t: int) -> np.ndarray:
    """Repeat the last frame until there are ``t`` frames."""
    if frames.shape[0] >= t:
        return frames
    return np.concatenate([frames, np.repeat(frames[-1:], t - frames.shape[0], axis=0)], axis=0)


def side_by_side_gif(
    real_frames: np.ndarray,
    world_frames: np.ndarray,
    path: str | os.PathLike,
    fps: float = 8.0,
    labels: Sequence[str] | None = ("real", "world model"),
) -> Path:
    """Write a real rollout and its world-model counterpart side by side (``hma_zoo.video.side_by_side`` with its
    2-pixel white separator, then ``save_video``; ``.gif`` or ``.mp4`` by the suffix of ``path``).

    ``real_frames`` and ``world_frames`` are uint8 ``[T, H, W, 3]`` of the same ``H`` (widths and lengths may
    differ); the shorter clip is padded by repeating its last frame. With ``labels`` each clip gets a black strip
    with its label above it (``labels=None`` for none). The written frames are
    ``[max T, (label strip +) H, W_real + 2 + W_world, 3]``. Returns the path.
    """
    from hma_zoo.video import _as_frames, save_video, side_by_side

    real, world = _as_frames(real_frames), _as_frames(world_frames)
    if real.shape[1] != world.shape[1]:
        raise ValueError(f"real and world frames need the same height; got {real.shape} and {world.shape}")
    t = max(real.shape[0], world.shape[0])
    clips = [_pad_to(real, t), _pad_to(world, t)]
    if labels:
        if len(labels) != 2:
            raise ValueError(f"labels must name the two clips, got {labels!r}")
        strip_h = 14
        clips = [
            np.concatenate([np.broadcast_to(_label_strip(lab, c.shape[2], strip_h), (t, strip_h, c.shape[2], 3)), c], 1)
            for lab, c in zip(labels, clips)
        ]
    return save_video(path, side_by_side(*clips), fps=fps)
