"""Build datasets from simulators: named mixtures, parallel worker processes, deterministic seeds.

A build splits every :class:`~hma_zoo.data.sources.base.SourceSpec` into chunks of episodes. Chunks of one
simulator family run in a pool of worker processes (``spawn``; families one after another, never two families in
one process, since dm_control renders black frames beside a gymnasium EGL context). Each chunk writes its own
shards directly into the output folder; the main process merges the partial manifests. Episode ``i`` of an
embodiment always gets the seed :func:`~hma_zoo.data.sources.base.episode_seed` ``(seed, name, i)`` and the split
:func:`~hma_zoo.data.schema.split_for_index` ``(i)``, so the result does not depend on the number of workers.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from hma_zoo.data.sources.base import SourceSpec, episode_seed, make_generator

log = logging.getLogger(__name__)

_DMC = [
    ("dmc_cartpole", "cartpole", "swingup", 4),  # 1-D, 100 Hz control
    ("dmc_reacher", "reacher", "easy", 2),  # 2-D, 50 Hz
    ("dmc_finger", "finger", "spin", 2),  # 2-D, 50 Hz
    ("dmc_hopper", "hopper", "hop", 2),  # 4-D, 50 Hz
    ("dmc_manipulator", "manipulator", "bring_ball", 4),  # 5-D, 100 Hz
    ("dmc_cheetah", "cheetah", "run", 4),  # 6-D, 100 Hz
    ("dmc_walker", "walker", "walk", 2),  # 6-D, 40 Hz
]


def _sim_mix(episodes: int, frames: int) -> list[SourceSpec]:
    specs = [SourceSpec("dmc", n, episodes, (frames - 1) * s, s, {"domain": d, "task": t}) for n, d, t, s in _DMC]
    specs += [
        SourceSpec("gym", "gym_pusher", episodes, (frames - 1) * 2, 2, {"env_id": "Pusher-v5"}),  # 7-D, 20 Hz
        SourceSpec("gym", "gym_hopper", episodes, (frames - 1) * 2, 2,
                   {"env_id": "Hopper-v5", "make_kwargs": {"terminate_when_unhealthy": False}}),  # 3-D, 125 Hz
        SourceSpec("gym", "gym_reacher", episodes, (frames - 1) * 2, 2,
                   {"env_id": "Reacher-v5", "make_kwargs": {"max_episode_steps": 1000}}),  # 2-D, 50 Hz
        SourceSpec("pusht", "pusht", episodes, frames - 1, 1, {}),  # 2-D, 10 Hz
        SourceSpec("metaworld", "metaworld_sawyer", episodes, (frames - 1) * 4, 4, {}),  # 4-D, 80 Hz
    ]
    return specs


MIXTURES: dict[str, dict[str, Any]] = {
    "sim-mix": {
        "description": "12 embodiments (dm_control x7, gymnasium MuJoCo x3, gym-pusht, Meta-World), action dims "
                       "1-7, control 10-125 Hz, 64x64",
        "specs": lambda: _sim_mix(episodes=48, frames=40),
    },
    "sim-mix-mini": {
        "description": "4 embodiments (dmc_cartpole 1-D, pusht 2-D, metaworld_sawyer 4-D, dmc_cheetah 6-D), "
                       "30 episodes x 33 frames each (24 train / 6 val), 64x64; 33 frames let evaluation roll out "
                       "to 4x an 8-frame window; for the quickstart and tests",
        "val_fraction": 0.2,
        "specs": lambda: [
            SourceSpec("dmc", "dmc_cartpole", 30, 32 * 4, 4, {"domain": "cartpole", "task": "swingup"}),
            SourceSpec("dmc", "dmc_cheetah", 30, 32 * 4, 4, {"domain": "cheetah", "task": "run"}),
            SourceSpec("pusht", "pusht", 30, 32, 1, {}),
            SourceSpec("metaworld", "metaworld_sawyer", 30, 32 * 4, 4, {"tasks": ["reach-v3", "push-v3"]}),
        ],
    },
    "sim-mix-test": {
        "description": "tiny: 2 dm_control embodiments x 4 episodes x 9 frames (for tests)",
        "specs": lambda: [
            SourceSpec("dmc", "dmc_cartpole", 4, 8 * 2, 2, {"domain": "cartpole", "task": "swingup"}),
            SourceSpec("dmc", "dmc_reacher", 4, 8, 1, {"domain": "reacher", "task": "easy"}),
        ],
    },
}


def list_mixtures() -> dict[str, str]:
    """Named mixtures and their descriptions."""
    return {k: v["description"] for k, v in MIXTURES.items()}


def mixture_specs(name: str, episodes: int | None = None) -> list[SourceSpec]:
    """The :class:`SourceSpec` list of a named mixture (``episodes`` overrides the per-embodiment count)."""
    if name not in MIXTURES:
        raise KeyError(f"unknown mixture {name!r}; known: {sorted(MIXTURES)}")
    specs = MIXTURES[name]["specs"]()
    if episodes is not None:
        specs = [SourceSpec(s.family, s.name, episodes, s.steps, s.stride, s.params) for s in specs]
    return specs


# ---------------------------------------------------------------------------------------------- worker side
_GENERATORS: dict[str, Any] = {}


def _init_worker() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    os.environ.setdefault("LP_NUM_THREADS", "1")
    logging.getLogger("gymnasium").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")


def _run_chunk(spec_dict: dict[str, Any], indices: list[int], out_dir: str, image_size: tuple[int, int],
               encoding: str, seed: int, val_fraction: float, chunk_id: int) -> dict[str, Any]:
    """Generate episodes ``indices`` of one spec and write them to their own shards; return the partial manifest."""
    from hma_zoo.data.schema import split_for_index
    from hma_zoo.data.shards import DatasetWriter

    spec = SourceSpec(**spec_dict)
    if spec.name not in _GENERATORS:
        _GENERATORS[spec.name] = make_generator(spec, image_size)
    gen = _GENERATORS[spec.name]
    writer = DatasetWriter(out_dir, [gen.info], image_size=image_size, encoding=encoding,
                           episodes_per_shard=max(len(indices), 1), shard_prefix=f"c{chunk_id:04d}-")
    for i in indices:
        writer.add(gen.episode(i, episode_seed(seed, spec.name, i)), split=split_for_index(i, val_fraction))
    return writer.finish()


def generate_episodes(spec: SourceSpec, indices: Sequence[int], image_size: tuple[int, int] = (64, 64),
                      seed: int = 0) -> list[Any]:
    """Generate episodes in this process (for tests and notebooks); returns :class:`Episode` objects."""
    gen = make_generator(spec, image_size)
    return [gen.episode(i, episode_seed(seed, spec.name, i)) for i in indices]


# ---------------------------------------------------------------------------------------------- main side
def build_dataset(
    specs: Sequence[SourceSpec],
    out_dir: str | os.PathLike,
    workers: int = 2,
    image_size: tuple[int, int] = (64, 64),
    encoding: str = "npy",
    seed: int = 0,
    val_fraction: float = 0.1,
    chunk_size: int = 12,
    overwrite: bool = False,
    name: str = "custom",
    progress: bool = True,
) -> dict[str, Any]:
    """Generate every spec into ``out_dir`` with ``workers`` processes per simulator family; returns the manifest.

    Args:
        specs: what to generate (see :func:`mixture_specs`).
        out_dir: dataset folder; refused if it already holds a manifest unless ``overwrite``.
        workers: worker processes (each runs one simulator family at a time).
        image_size: ``(H, W)`` of rendered frames.
        encoding: ``"npy"`` or ``"mp4"`` frames.
        seed: base seed; episode seeds are derived from it, the embodiment name and the episode index.
        val_fraction: share of episodes (by index, per embodiment) in the val split.
        chunk_size: episodes per task (and per shard).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hma_zoo.data.shards import MANIFEST, write_manifest

    out = Path(out_dir)
    if (out / MANIFEST).exists() or (out / "train").exists():
        if not overwrite:
            raise FileExistsError(f"{out} already holds a dataset; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"embodiment names must be unique across specs, got {names}")
    t0 = time.perf_counter()
    tasks_by_family: dict[str, list[tuple[SourceSpec, list[int]]]] = {}
    for spec in specs:
        for start in range(0, spec.episodes, chunk_size):
            idx = list(range(start, min(start + chunk_size, spec.episodes)))
            tasks_by_family.setdefault(spec.family, []).append((spec, idx))
    total = sum(s.episodes for s in specs)
    partials: list[dict[str, Any]] = []
    chunk_id = 0
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(f"building {name}", total=total)
        for family, tasks in tasks_by_family.items():
            bar.update(task, description=f"building {name} [{family}]")
            n_proc = max(1, min(workers, len(tasks)))
            import multiprocessing as mp

            with ProcessPoolExecutor(n_proc, mp_context=mp.get_context("spawn"), initializer=_init_worker) as pool:
                futures = {}
                for spec, idx in tasks:
                    fut = pool.submit(_run_chunk, spec.to_dict(), idx, str(out), tuple(image_size), encoding,
                                      seed, val_fraction, chunk_id)
                    futures[fut] = len(idx)
                    chunk_id += 1
                for fut in as_completed(futures):
                    partials.append(fut.result())
                    bar.advance(task, futures[fut])
    elapsed = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.rglob("*.tar"))
    extra = {"name": name, "build": {"seconds": round(elapsed, 1), "workers": workers, "seed": seed,
                                     "val_fraction": val_fraction, "bytes": size,
                                     "specs": [s.to_dict() for s in specs]}}
    manifest = write_manifest(out, partials, extra=extra)
    log.info("built %s: %d episodes, %.1f MB in %.1f s -> %s", name, total, size / 1e6, elapsed, out)
    return manifest


def build_mixture(name: str, out_dir: str | os.PathLike, workers: int = 2, episodes: int | None = None,
                  **kwargs: Any) -> dict[str, Any]:
    """Build the named mixture (``sim-mix``, ``sim-mix-mini``, ``sim-mix-test``) into ``out_dir``; the mixture's own
    ``val_fraction`` applies unless one is passed."""
    kwargs.setdefault("val_fraction", mixture_val_fraction(name))
    return build_dataset(mixture_specs(name, episodes), out_dir, workers=workers, name=name, **kwargs)


def mixture_val_fraction(name: str) -> float:
    """The share of episodes a named mixture puts in its val split (0.1 unless the mixture says otherwise)."""
    if name not in MIXTURES:
        raise KeyError(f"unknown mixture {name!r}; known: {sorted(MIXTURES)}")
    return float(MIXTURES[name].get("val_fraction", 0.1))
