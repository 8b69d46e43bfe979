"""Build datasets from simulators: named mixtures, parallel worker processes, deterministic seeds.

A build splits every :class:`~hma_zoo.data.sources.base.SourceSpec` into chunks of episodes. Chunks of one
simulator family run in a pool of worker processes (``spawn``; families one after another, never two families in
one process, since dm_control renders black frames beside a gymnasium EGL context). Each chunk writes its own
shards directly into the output folder; the main process merges the partial manifests. Episode ``i`` of an
embodiment always gets the seed :func:`~hma_zoo.data.sources.base.episode_seed` ``(seed, name, i)`` and the split
:func:`~hma_zoo.data.schema.split_for_index` ``(i)``, so the result does not depend on the number of workers.

Crash safety:

* workers die with the main process: on Linux each asks the kernel for ``SIGTERM`` when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``), so even ``SIGKILL`` of the main process leaves no worker writing into the folder;
* ``SIGTERM`` / ``SIGHUP`` / ``SIGINT`` to the main process (or any error) terminate the workers at once, remove
  their partial ``*.tar.tmp`` shards and raise :class:`BuildInterruptedError` (the command exits ``128 + signal``);
* every finished chunk leaves its partial manifest in ``<out>/.build/``, beside the build's settings; a folder
  without ``manifest.json`` is an interrupted build: ``resume=True`` (``--resume``) builds only the missing chunks,
  ``overwrite=True`` (``--overwrite``) deletes the build's files (``manifest.json``, ``train/``, ``val/``, ``.build/``,
  temporary files; nothing else) and starts again. A rerun with neither says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
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
_STATE = ".build"  # per-chunk partial manifests and the build's settings, while a build is unfinished


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent_pid: int | None) -> None:
    """Linux: have the kernel send this process SIGTERM when its parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
                log.debug("prctl(PR_SET_PDEATHSIG) failed with errno %d", ctypes.get_errno())
        except (OSError, AttributeError) as exc:  # no libc prctl: rely on the parent's signal handlers
            log.debug("prctl unavailable: %s", exc)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the death signal was armed


def _init_worker(parent_pid: int | None = None) -> None:
    _die_with_parent(parent_pid)
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    os.environ.setdefault("LP_NUM_THREADS", "1")
    logging.getLogger("gymnasium").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that die with this one (see :func:`_die_with_parent`)."""
    import multiprocessing as mp

    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(os.getpid(),))


def _run_chunk(spec_dict: dict[str, Any], indices: list[int], out_dir: str, image_size: tuple[int, int],
               encoding: str, seed: int, val_fraction: float, chunk_id: int) -> dict[str, Any]:
    """Generate episodes ``indices`` of one spec and write them to their own shards; record the partial manifest in
    ``<out_dir>/.build/`` (for ``resume``) and return it."""
    from hma_zoo.data.schema import split_for_index
    from hma_zoo.data.shards import DatasetWriter

    spec = SourceSpec(**spec_dict)
    if spec.name not in _GENERATORS:
        _GENERATORS[spec.name] = make_generator(spec, image_size)
    gen = _GENERATORS[spec.name]
    writer = DatasetWriter(out_dir, [gen.info], image_size=image_size, encoding=encoding,
                           episodes_per_shard=max(len(indices), 1), shard_prefix=_chunk_prefix(chunk_id))
    for i in indices:
        writer.add(gen.episode(i, episode_seed(seed, spec.name, i)), split=split_for_index(i, val_fraction))
    partial = json.loads(json.dumps(writer.finish()))  # the form a resumed build reads back (lists, not tuples)
    partial["chunk"] = chunk_id
    _write_json(Path(out_dir) / _STATE / f"{_chunk_prefix(chunk_id)[:-1]}.json", partial)
    return partial


def _chunk_prefix(chunk_id: int) -> str:
    return f"c{chunk_id:04d}-"


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def generate_episodes(spec: SourceSpec, indices: Sequence[int], image_size: tuple[int, int] = (64, 64),
                      seed: int = 0) -> list[Any]:
    """Generate episodes in this process (for tests and notebooks); returns :class:`Episode` objects."""
    gen = make_generator(spec, image_size)
    return [gen.episode(i, episode_seed(seed, spec.name, i)) for i in indices]


# ---------------------------------------------------------------------------------------------- main side
class BuildInterruptedError(RuntimeError):
    """A build stopped by a signal. Its workers were stopped and their partial shards removed; ``signum`` is the
    signal, and the command exits with ``128 + signum``."""

    def __init__(self, signum: int, out: str | os.PathLike) -> None:
        self.signum = int(signum)
        super().__init__(f"the build into {out} was interrupted by {signal.Signals(signum).name}; its workers were "
                         "stopped and their partial shards removed. Rerun the same command with --resume to build "
                         "only the missing chunks, or with --overwrite to start again")


_BUILD_FILES = ("manifest.json", "manifest.json.tmp", "train", "val", _STATE)


def _remove_build_files(out: Path) -> None:
    for name in _BUILD_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _remove_tmp(out: Path) -> int:
    """Delete partial files (``*.tmp``) a stopped build left; returns how many."""
    tmp = [p for d in ("train", "val", _STATE) if (out / d).is_dir() for p in (out / d).glob("*.tmp")]
    tmp += [p for p in (out / "manifest.json.tmp",) if p.exists()]
    for p in tmp:
        p.unlink(missing_ok=True)
    return len(tmp)


def _finished_chunks(out: Path) -> dict[int, dict[str, Any]]:
    """Partial manifests of the chunks an interrupted build finished whose shards are all still there."""
    done: dict[int, dict[str, Any]] = {}
    for path in sorted((out / _STATE).glob("c[0-9]*.json")):
        try:
            partial = json.loads(path.read_text())
            chunk_id = int(path.stem[1:])
        except ValueError:
            continue
        if all((out / s["path"]).is_file() for s in partial.get("shards", [])):
            done[chunk_id] = partial
    return done


def prepare_build_dir(out: str | os.PathLike, overwrite: bool = False, resume: bool = False,
                      config: dict[str, Any] | None = None) -> dict[int, dict[str, Any]]:
    """Make ``out`` ready for a build of ``config`` (the build's settings); returns the finished chunks to keep.

    * a dataset (``manifest.json``) is replaced only with ``overwrite``;
    * an interrupted build (``train/``, ``val/`` or ``.build/`` without ``manifest.json``) is resumed with
      ``resume`` (the settings must be the same; partial ``*.tmp`` files and the shards of unfinished chunks are
      removed, ``{chunk id: partial manifest}`` of the finished ones is returned), or deleted with ``overwrite``;
      with neither, ``FileExistsError`` says which option does what;
    * ``overwrite`` deletes only the build's own files (``manifest.json``, ``train/``, ``val/``, ``.build/``,
      ``manifest.json.tmp``), never other files in ``out``.
    """
    out = Path(out)
    has_manifest = (out / "manifest.json").exists()
    leftovers = [n for n in _BUILD_FILES if (out / n).exists()]
    finished: dict[int, dict[str, Any]] = {}
    if has_manifest and not overwrite:
        how = "it is complete, so there is nothing to resume; " if resume else ""
        raise FileExistsError(f"{out} already holds a dataset ({out / 'manifest.json'}); {how}pass --overwrite "
                              "(overwrite=True) to replace it, or choose another --out")
    if leftovers and not has_manifest and not overwrite:
        if not resume:
            shards = sum(1 for d in ("train", "val") if (out / d).is_dir() for _ in (out / d).glob("*.tar"))
            tmp = sum(1 for d in ("train", "val") if (out / d).is_dir() for _ in (out / d).glob("*.tmp"))
            chunks = len(list((out / _STATE).glob("c[0-9]*.json"))) if (out / _STATE).is_dir() else 0
            raise FileExistsError(
                f"{out} holds the output of a build that did not finish: no manifest.json, {shards} shards, {tmp} "
                f"partial *.tmp files, {chunks} finished chunks recorded in {out / _STATE}. Rerun the same command "
                "with --resume (resume=True) to build only the missing chunks, or with --overwrite (overwrite=True) "
                "to delete them and start again")
        saved = out / _STATE / "config.json"
        try:
            before = json.loads(saved.read_text())
        except (OSError, ValueError):
            raise FileExistsError(f"cannot resume the build in {out}: {saved} is missing or unreadable (the build "
                                  "was started by an older hma_zoo, or its files were removed); pass --overwrite to "
                                  "start again") from None
        if config is not None and before != json.loads(json.dumps(config)):
            changed = sorted(k for k in set(before) | set(config) if before.get(k) != json.loads(json.dumps(
                config.get(k))))
            raise FileExistsError(f"cannot resume the build in {out}: it was started with other settings "
                                  f"({', '.join(changed)} differ, see {saved}); rerun with the same options, or "
                                  "pass --overwrite to start again")
        _remove_tmp(out)
        finished = _finished_chunks(out)
        keep = {s["path"] for p in finished.values() for s in p["shards"]}
        for d in ("train", "val"):
            for shard in (out / d).glob("*.tar") if (out / d).is_dir() else []:
                if f"{d}/{shard.name}" not in keep:
                    shard.unlink()  # a shard of a chunk that did not finish
        log.info("resuming the build in %s: %d chunks already finished", out, len(finished))
        return finished
    if overwrite:
        _remove_build_files(out)
    out.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (out / _STATE).mkdir(exist_ok=True)
        _write_json(out / _STATE / "config.json", config)
    return finished


@contextlib.contextmanager
def _signals_raise(out: Path) -> Iterator[None]:
    """While a build runs (main thread only): SIGTERM, SIGHUP and SIGINT raise :class:`BuildInterruptedError`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise BuildInterruptedError(signum, out)

    previous = {}
    for name in ("SIGTERM", "SIGHUP", "SIGINT"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's workers now (not after their current chunk) and wait for them to exit."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)


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
    resume: bool = False,
) -> dict[str, Any]:
    """Generate every spec into ``out_dir`` with ``workers`` processes per simulator family; returns the manifest.

    Args:
        specs: what to generate (see :func:`mixture_specs`).
        out_dir: dataset folder; refused if it already holds a manifest unless ``overwrite``, or the output of an
            interrupted build unless ``resume`` or ``overwrite`` (see :func:`prepare_build_dir`).
        workers: worker processes (each runs one simulator family at a time).
        image_size: ``(H, W)`` of rendered frames.
        encoding: ``"npy"`` or ``"mp4"`` frames.
        seed: base seed; episode seeds are derived from it, the embodiment name and the episode index.
        val_fraction: share of episodes (by index, per embodiment) in the val split, in ``[0, 1)``.
        chunk_size: episodes per task (and per shard).
        overwrite: replace what ``out_dir`` holds from an earlier build (only the build's own files).
        resume: finish an interrupted build with the same settings: only the chunks that did not finish are built.

    Raises:
        BuildInterruptedError: on SIGTERM / SIGHUP / SIGINT, after stopping the workers and removing partial shards.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hma_zoo.data.schema import check_positive_int, check_val_fraction
    from hma_zoo.data.shards import write_manifest

    val_fraction = check_val_fraction(val_fraction)
    check_positive_int(chunk_size, "chunk_size")
    check_positive_int(workers, "--workers")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"embodiment names must be unique across specs, got {names}")
    out = Path(out_dir)
    config = {"specs": [s.to_dict() for s in specs], "image_size": list(image_size), "encoding": encoding,
              "seed": seed, "val_fraction": val_fraction, "chunk_size": chunk_size}
    finished = prepare_build_dir(out, overwrite=overwrite, resume=resume, config=config)
    t0 = time.perf_counter()
    tasks_by_family: dict[str, list[tuple[SourceSpec, list[int], int]]] = {}
    chunk_id = 0
    for spec in specs:
        for start in range(0, spec.episodes, chunk_size):
            idx = list(range(start, min(start + chunk_size, spec.episodes)))
            tasks_by_family.setdefault(spec.family, []).append((spec, idx, chunk_id))
            chunk_id += 1
    total = sum(s.episodes for s in specs)
    partials: list[dict[str, Any]] = list(finished.values())
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar, _signals_raise(out):
        task = bar.add_task(f"building {name}", total=total)
        bar.advance(task, sum(len(t[1]) for ts in tasks_by_family.values() for t in ts if t[2] in finished))
        for family, tasks in tasks_by_family.items():
            todo = [t for t in tasks if t[2] not in finished]
            if not todo:
                continue
            bar.update(task, description=f"building {name} [{family}]")
            pool = worker_pool(max(1, min(workers, len(todo))))
            try:
                futures: dict[Future, int] = {}
                for spec, idx, cid in todo:
                    fut = pool.submit(_run_chunk, spec.to_dict(), idx, str(out), tuple(image_size), encoding,
                                      seed, val_fraction, cid)
                    futures[fut] = len(idx)
                for fut in as_completed(futures):
                    partials.append(fut.result())
                    bar.advance(task, futures[fut])
            except BaseException:
                _stop_pool(pool)
                removed = _remove_tmp(out)
                log.info("build stopped: workers terminated, %d partial files removed from %s", removed, out)
                raise
            pool.shutdown(wait=True)
    elapsed = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.rglob("*.tar"))
    extra = {"name": name, "build": {"seconds": round(elapsed, 1), "workers": workers, "seed": seed,
                                     "val_fraction": val_fraction, "bytes": size,
                                     "specs": [s.to_dict() for s in specs]}}
    if finished:
        extra["build"]["resumed_chunks"] = len(finished)
    # merged in chunk order: the action statistics (float sums) do not depend on which chunk finished first
    partials.sort(key=lambda p: p.get("chunk", 0))
    manifest = write_manifest(out, partials, extra=extra)
    shutil.rmtree(out / _STATE, ignore_errors=True)
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
