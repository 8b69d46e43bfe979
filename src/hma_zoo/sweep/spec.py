"""What a sweep is: a base ``hma-zoo fit`` recipe, a grid (or list) of LightningCLI overrides, and where it runs.

A sweep file (YAML)::

    name: vq-width-x-data
    base: recipes/sweeps/hma-vq-w_simmix.yaml     # an ordinary `hma-zoo fit` recipe
    out: outputs/sweeps/vq-width-x-data           # one folder per point under out/points/
    engine: local                                 # local | slurm (submitit) | debug (in-process, for tests)
    workers: 2                                    # local: points run at once (threads are split between them)
    threads: 1                                    # torch threads per point (OMP_NUM_THREADS)
    overrides: {trainer.max_steps: 600}           # applied to every point
    grid:                                         # the cartesian product of these lists ...
      model.init_args.variant: [hma-vq-w32, hma-vq-w64, hma-vq-w128]
      data.init_args.max_episodes: [4, 12, 44]
    points:                                       # ... or / and an explicit list of override sets
      - {data.init_args.embodiments: [metaworld_sawyer]}
    seeds: [0, 1]                                 # every point once per seed (seed_everything)
    eval:                                         # the loss-only evaluation after training
      batches: 16                                 # validation batches (null: the whole val split)
      overrides: {data.init_args.embodiments: [metaworld_sawyer]}   # a fixed val set shared by all points
      sample_metrics: false                       # true (or N samples): also PSNR / delta-PSNR (slower)
      rollout:                                    # optional: hma_zoo.eval.rollout.evaluate on frame episodes
        data: data/sim-mix                        # episode shards (frames + proprio) the model's embodiments share
        max_windows: 16                           # windows evaluated (evaluate's max_windows); null: 32
        probe: null                               # state probe folder; null: <data>/probe if it exists
        rollout: false                            # true: also autoregressive rollouts (rollout_* keys; slower)
        steps: null                               # MaskGIT/MAR steps per frame (null: evaluate's default, 2)
    slurm: {partition: gpu, timeout_min: 120, gpus_per_node: 1, cpus_per_task: 8, array_parallelism: 16}

``eval.rollout`` runs the project's evaluator (:func:`hma_zoo.eval.rollout.evaluate`) on the trained weights and
the point's tokenizer. Its keys mirror that function's arguments (:data:`ROLLOUT_KEYS`: ``data`` required; ``split``,
``max_windows``, ``batch_size``, ``window``, ``prompt_frames``, ``rollout``, ``horizon_multiple``, ``steps``,
``temperature``, ``random_draws``, ``seed``, ``probe``, ``diffusion_steps``, ``sampler``; null or absent: the
evaluator's default). A relative ``data`` / ``probe`` is read from the working directory, else next to the sweep
file. The point's result (and ``results.csv``) then gains, all embodiments together, from the ``model`` rows:

* ``tf_psnr``, ``tf_delta_psnr``: teacher-forced PSNR and delta-PSNR (true minus random actions) on ``data``
  (``psnr`` / ``delta_psnr`` without prefix are the validation loop's ``sample_metrics``, on the training data);
* ``state_error_norm``: the probe's teacher-forced state error in train standard deviations (comparable across
  embodiments; fit it with ``hma-zoo sweep fit OUT --metric state_error_norm``), ``state_error_norm_floor`` the
  probe's own error on the real frames (its floor);
* ``state_error/<embodiment>``: the raw state error in that embodiment's state units (never averaged across
  embodiments: their units differ);
* with ``rollout: true`` also ``rollout_psnr``, ``rollout_delta_psnr``, ``rollout_state_error_norm`` and
  ``rollout_state_error/<embodiment>`` (the first window of an autoregressive rollout from ``prompt_frames``);
* ``eval_windows`` (windows scored) and ``eval_notes`` (why a metric is missing).

Without a probe (none given, no ``<data>/probe``) the state-error keys are simply absent and ``eval_notes`` says why
(fit one with ``hma-zoo probe fit --data DIR``).

Keys are dotted LightningCLI keys exactly as on the ``hma-zoo fit`` command line. A point's id is readable and
stable: the short names of what it overrides plus a hash of the overrides, so rerunning a sweep finds the points
that already finished (see :mod:`hma_zoo.sweep.point`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENGINES = ("local", "slurm", "debug")
_KNOWN_KEYS = {"name", "base", "out", "engine", "workers", "threads", "overrides", "grid", "points", "seeds", "eval",
               "slurm"}
_EVAL_KEYS = ("batches", "overrides", "sample_metrics", "rollout")
#: ``eval.rollout`` keys: arguments of :func:`hma_zoo.eval.rollout.evaluate` (``data`` is required)
ROLLOUT_KEYS = ("data", "split", "max_windows", "batch_size", "window", "prompt_frames", "rollout", "horizon_multiple",
                "steps", "temperature", "random_draws", "seed", "probe", "diffusion_steps", "sampler")


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its id and the LightningCLI overrides (dotted key -> value) it adds to the base recipe."""

    id: str
    overrides: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "overrides": self.overrides}


@dataclass
class EvalSpec:
    """The evaluation every point gets after training: validation loss on ``batches`` batches of the val split, with
    ``overrides`` applied to the data (e.g. one fixed set of embodiments for every point), and PSNR / delta-PSNR when
    ``sample_metrics`` (MaskGIT/diffusion sampling: much slower than the loss); with ``rollout`` (the
    ``eval.rollout`` mapping, keys :data:`ROLLOUT_KEYS`, paths resolved) also the evaluator's PSNR / delta-PSNR and
    state error on frame episodes (see the module docstring)."""

    batches: int | None = 16
    overrides: dict[str, Any] = field(default_factory=dict)
    sample_metrics: bool | int = False
    rollout: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The evaluation as a point's job description carries it (``run_point`` -> ``evaluate_point``)."""
        return {"batches": self.batches, "overrides": self.overrides, "sample_metrics": self.sample_metrics,
                "rollout": self.rollout}


@dataclass
class SweepSpec:
    """A parsed sweep file (see the module docstring); :meth:`points` expands it."""

    name: str
    base: str
    out: str
    engine: str = "local"
    workers: int = 1
    threads: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    point_list: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    eval: EvalSpec = field(default_factory=EvalSpec)
    slurm: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    @property
    def root(self) -> Path:
        return Path(self.out)

    def points(self) -> list[Point]:
        """Every point: (grid product, else one empty set) + the explicit list, times the seeds, with the sweep-wide
        overrides underneath. Duplicates (the same overrides twice) are kept once."""
        keys = list(self.grid)
        combos = [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]
        if not combos:
            combos = [] if self.point_list else [{}]
        combos += [dict(p) for p in self.point_list]
        seeds = self.seeds or [None]
        out: dict[str, Point] = {}
        for combo in combos:
            for seed in seeds:
                ov = {**self.overrides, **combo}
                if seed is not None:
                    ov["seed_everything"] = int(seed)
                pid = point_id(combo, seed)
                out.setdefault(pid, Point(pid, ov))
        return list(out.values())


def _short(key: str) -> str:
    """``model.init_args.variant`` -> ``variant``; ``data.init_args.max_episodes`` -> ``max_episodes``."""
    return key.rsplit(".", 1)[-1]


def _slug(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        text = f"{len(value)}x" if len(value) > 2 else "+".join(_slug(v) for v in value)
    elif isinstance(value, dict):
        text = f"{len(value)}keys"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:24] or "none"


def point_id(combo: dict[str, Any], seed: int | None) -> str:
    """A readable, stable folder name for a point: ``variant=hma-vq-w32,max_episodes=4,s0-1a2b3c4d``."""
    parts = [f"{_short(k)}={_slug(v)}" for k, v in combo.items()]
    if seed is not None:
        parts.append(f"s{seed}")
    digest = hashlib.sha1(json.dumps({"o": combo, "s": seed}, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return ",".join(parts + [digest]) if parts else digest


def load_sweep(path: str | Path, **changes: Any) -> SweepSpec:
    """Read and check a sweep file; ``changes`` (e.g. ``engine="slurm"``, ``workers=2``) override its top-level keys.

    Raises ``ValueError`` naming the bad key and the fix, ``FileNotFoundError`` for a missing file or base recipe.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a sweep file is a YAML mapping (name, base, grid, ...), got {type(raw).__name__}")
    raw.update({k: v for k, v in changes.items() if v is not None})
    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown sweep keys {sorted(unknown)}; known: {sorted(_KNOWN_KEYS)}")
    for key in ("base",):
        if key not in raw:
            raise ValueError(f"{path}: the sweep needs `{key}:` (the `hma-zoo fit` recipe every point starts from)")
    base = Path(raw["base"])
    if not base.is_absolute() and not base.is_file() and (path.parent / base).is_file():
        base = path.parent / base
    if not base.is_file():
        raise FileNotFoundError(f"{path}: base recipe {raw['base']} not found")
    engine = raw.get("engine", "local")
    if engine not in ENGINES:
        raise ValueError(f"{path}: engine {engine!r} is not one of {ENGINES}")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise ValueError(f"{path}: `grid:` maps dotted LightningCLI keys to non-empty lists, e.g. "
                         "`model.init_args.variant: [hma-vq-w32, hma-vq-w64]`")
    points = raw.get("points") or []
    if not isinstance(points, list) or any(not isinstance(p, dict) for p in points):
        raise ValueError(f"{path}: `points:` is a list of override mappings")
    for key in [*grid, *(k for p in points for k in p), *(raw.get("overrides") or {})]:
        if key.startswith("--") or " " in key:
            raise ValueError(f"{path}: write keys without dashes or spaces (`trainer.max_steps`), got {key!r}")
    ev = raw.get("eval") or {}
    if not isinstance(ev, dict):
        raise ValueError(f"{path}: `eval:` is a mapping ({', '.join(_EVAL_KEYS)})")
    unknown_eval = set(ev) - set(_EVAL_KEYS)
    if unknown_eval:
        raise ValueError(f"{path}: unknown eval keys {sorted(unknown_eval)}; known: {', '.join(_EVAL_KEYS)}")
    rollout = _rollout_spec(path, ev.get("rollout"))
    workers, threads = int(raw.get("workers", 1)), int(raw.get("threads", 1))
    if workers < 1 or threads < 1:
        raise ValueError(f"{path}: workers and threads must be >= 1, got {workers}, {threads}")
    name = str(raw.get("name") or path.stem)
    return SweepSpec(
        name=name, base=str(base), out=str(raw.get("out") or f"outputs/sweeps/{name}"), engine=engine,
        workers=workers, threads=threads, overrides=dict(raw.get("overrides") or {}), grid=grid, point_list=points,
        seeds=[int(s) for s in raw.get("seeds") or []],
        eval=EvalSpec(batches=ev.get("batches", 16), overrides=dict(ev.get("overrides") or {}),
                      sample_metrics=ev.get("sample_metrics", False), rollout=rollout),
        slurm=dict(raw.get("slurm") or {}), source=str(path),
    )


def _local_path(path: Path, value: str) -> str:
    """``value`` as an absolute path: from the working directory if it exists there, else next to the sweep file
    ``path`` if it exists there, else from the working directory (URLs are kept as they are)."""
    if "://" in value:
        return value
    p = Path(value)
    if not p.is_absolute() and not p.exists() and (path.parent / p).exists():
        p = path.parent / p
    return str(p.resolve())


def check_rollout_paths(data: str, probe: str | None, shown: tuple[Any, Any] | None = None) -> None:
    """Raise ``FileNotFoundError`` naming the ``eval.rollout`` key and the fix when the episode folder ``data`` is
    missing or ``probe`` is not a probe folder (URLs are not checked); ``shown``: the names as the user wrote them.
    Checked when the sweep file is read and again where the point is evaluated (another machine, later)."""
    shown_data, shown_probe = shown or (data, probe)
    if "://" not in data and not Path(data).is_dir():
        raise FileNotFoundError(f"eval.rollout.data {shown_data!r} not found; build it with `hma-zoo data build` or "
                                "point the sweep file's `eval.rollout.data:` at an existing dataset folder")
    if probe is not None and "://" not in str(probe) and not (Path(probe) / "config.json").is_file():
        raise FileNotFoundError(f"eval.rollout.probe {shown_probe!r} is not a probe folder; fit one with "
                                f"`hma-zoo probe fit --data {shown_data}` (it writes <data>/probe, found there when "
                                "`probe:` is null)")


def _rollout_spec(path: Path, raw: Any) -> dict[str, Any] | None:
    """Check ``eval.rollout`` of the sweep file ``path``; returns its keys (nulls dropped, ``data`` / ``probe``
    absolute) or ``None`` when the section is absent. Raises ``ValueError`` / ``FileNotFoundError`` naming the key."""
    if raw is None or raw is False:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: `eval.rollout:` is a mapping, e.g. `{{data: data/sim-mix, max_windows: 16}}`")
    unknown = set(raw) - set(ROLLOUT_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown eval.rollout keys {sorted(unknown)}; known: {', '.join(ROLLOUT_KEYS)}")
    if not raw.get("data"):
        raise ValueError(f"{path}: `eval.rollout:` needs `data:` (a folder of episode shards with frames, e.g. "
                         "`data: data/sim-mix`)")
    out = {k: v for k, v in raw.items() if v is not None}
    out["data"] = _local_path(path, str(raw["data"]))
    if out.get("probe") is not None:
        out["probe"] = _local_path(path, str(raw["probe"]))
    try:
        check_rollout_paths(out["data"], out.get("probe"), shown=(raw["data"], raw.get("probe")))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: {err} (relative paths: the working directory, then next to the sweep "
                                "file)") from err
    if out.get("split", "val") not in ("val", "train"):
        raise ValueError(f"{path}: eval.rollout.split is `val` or `train`, got {out['split']!r}")
    return out
