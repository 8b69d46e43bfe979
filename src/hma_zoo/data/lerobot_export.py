"""Export one embodiment of an episode dataset as a LeRobot v3.0 dataset folder (the reverse of ``import-lerobot``).

What is written (LeRobot's dataset format ``codebase_version: "v3.0"``)::

    meta/info.json       codebase_version, robot_type, fps, totals, splits, the data_path / video_path templates,
                         features (dtype, shape, names; the video feature with its codec info)
    meta/stats.json      per feature: min, max, mean, std, count (and q01, q10, q50, q90, q99 for non-video
                         features); video statistics per channel, shape [3, 1, 1], on pixel values in [0, 1]
    meta/tasks.parquet   one row per task string: task_index, and the task as the table's pandas index
    meta/episodes/chunk-000/file-000.parquet
                         one row per episode: episode_index, tasks, length, data/chunk_index, data/file_index,
                         dataset_from_index, dataset_to_index, videos/<key>/{chunk_index, file_index, from_timestamp,
                         to_timestamp}, meta/episodes/{chunk_index, file_index}, stats/<feature>/<stat>, and the
                         hma_zoo/* columns below
    meta/hma_zoo.json    what LeRobot's layout has no field for: the embodiment (control rate, stride, action names,
                         source), the source dataset and split, and the dataset's generation record
    data/chunk-XXX/file-YYY.parquet       one row per frame: action, observation.state, next.reward, next.success,
                                          timestamp, frame_index, episode_index, index, task_index
    videos/<key>/chunk-XXX/file-YYY.mp4   H.264 frames of many episodes back to back, frame i at time i / fps

Files move on to the next ``file-YYY`` once they pass ``data_file_mb`` / ``video_file_mb`` (LeRobot's 100 / 200 MB
defaults), and to the next ``chunk-XXX`` after 1000 files.

**Time.** LeRobot keeps one action per frame; our episodes keep one action row per control step, with stored frame
``i`` at control step ``i * stride``. The export's frame rate is ``fps`` (default: the dataset's frame rate; a
divisor of it keeps every ``k``-th frame), and each row's ``action`` holds the ``c = k * stride`` control steps that
follow its frame, flattened (``c * A`` values named ``<name>@<step>``; with ``c = 1`` it is the plain action).
``next.reward`` / ``next.success`` hold those steps' rewards and success flags. An episode without actions after
its last frame (``K = (F - 1) * stride``) gets a padded last row (the last action repeated, reward 0, success
repeated); ``hma_zoo/num_actions`` says how many control steps are real, and ``import-lerobot`` drops the padding.

**Tasks and provenance.** Each episode's task string is its ``meta["task"]`` (e.g. a Meta-World task, or a task kept
by ``import-lerobot``), else the embodiment's source, else its name. The episode index's ``hma_zoo/episode_id``,
``hma_zoo/split``, ``hma_zoo/generated`` and ``hma_zoo/meta`` (the episode's whole ``meta`` as JSON: seed, task,
and for ``hma-zoo generate`` rollouts the model, action source, prompt episode ...) carry where each episode came
from, and ``meta/hma_zoo.json`` the dataset-level record; LeRobot loads extra episode columns unchanged.

Token datasets are refused: LeRobot stores video, so export the frame dataset they were tokenised from.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
CHUNKS_SIZE = 1000
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
SPLITS = ("train", "val", "all")


class ExportError(ValueError):
    """A dataset cannot be exported as asked; the message names the dataset, the problem and the option that fixes
    it. Nothing is left in the output folder."""


# ----------------------------------------------------------------------------------------------------- small parts
def write_task_table(path: Path, tasks: list[str]) -> None:
    """Write ``meta/tasks.parquet`` as LeRobot does through pandas: a column ``task_index`` and the task strings as
    the DataFrame index (column ``task``, declared in the file's ``pandas`` metadata, whose format pandas documents
    in "Storing pandas DataFrame objects in Apache Parquet format"), so ``pandas.read_parquet`` returns LeRobot's
    task table without pandas being needed here."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hma_zoo import __version__

    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                     "metadata": None},
                    {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
                     "metadata": None}],
        "creator": {"library": "hma_zoo", "version": __version__}, "pandas_version": "2.2.0"}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)}), path)


def _stats(x: np.ndarray, quantiles: bool = True) -> dict[str, list]:
    """LeRobot feature statistics of ``x`` ``[N, w]``: per-dimension min, max, mean, std, ``count = [N]`` and,
    with ``quantiles``, q01 ... q99."""
    x = x.astype(np.float64).reshape(len(x), -1)
    out = {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(), "std": x.std(0).tolist(),
           "count": [len(x)]}
    if quantiles:
        for q in QUANTILES:
            out[f"q{round(q * 100):02d}"] = np.quantile(x, q, axis=0).tolist()
    return out


def _video_stats(frames: np.ndarray) -> dict[str, Any]:
    """Per-channel statistics of uint8 frames ``[F, H, W, 3]`` on values in [0, 1], shaped ``[3, 1, 1]`` like
    LeRobot's image statistics; ``count = [F]``. ``sum`` / ``sumsq`` (per channel, per pixel) let episodes be merged."""
    x = frames.reshape(-1, 3).astype(np.float64) / 255.0
    mean, sq = x.mean(0), (x**2).mean(0)
    std = np.sqrt(np.maximum(sq - mean**2, 0))
    return {"min": _channels(x.min(0)), "max": _channels(x.max(0)), "mean": _channels(mean), "std": _channels(std),
            "count": [len(frames)], "_pixels": len(x), "_mean": mean, "_sq": sq}


def _channels(v: np.ndarray) -> list:
    """``[3]`` -> nested lists ``[3, 1, 1]`` (LeRobot's shape of per-channel image statistics)."""
    return [[[float(c)]] for c in v]


def _merge_video_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Dataset statistics from per-episode :func:`_video_stats` (pixel-weighted mean and second moment)."""
    n = np.array([p["_pixels"] for p in parts], np.float64)[:, None]
    mean = (np.stack([p["_mean"] for p in parts]) * n).sum(0) / n.sum()
    sq = (np.stack([p["_sq"] for p in parts]) * n).sum(0) / n.sum()
    lo = np.min([np.asarray(p["min"]) for p in parts], axis=0)
    hi = np.max([np.asarray(p["max"]) for p in parts], axis=0)
    return {"min": lo.tolist(), "max": hi.tolist(), "mean": _channels(mean),
            "std": _channels(np.sqrt(np.maximum(sq - mean**2, 0))), "count": [int(sum(p["count"][0] for p in parts))]}


def _public(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if not k.startswith("_")}


def _arrow_column(values: np.ndarray, width: int) -> Any:
    """A parquet column: scalars for a feature of shape ``[1]`` (LeRobot reads those as plain values), else a
    fixed-size list of ``width``."""
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return flat if width == 1 else pa.FixedSizeListArray.from_arrays(flat, width)


def _number(x: float) -> int | float:
    return int(round(x)) if abs(x - round(x)) < 1e-9 else float(x)


class _Video:
    """One mp4 being written: H.264 frames appended episode after episode, frame ``i`` at time ``i / fps``."""

    def __init__(self, path: Path, fps: Fraction, height: int, width: int, crf: int, pix_fmt: str) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.frames = path, 0
        self._container = av.open(str(path), mode="w")
        self._stream = self._container.add_stream("libx264", rate=fps)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
        # a key frame every 2 frames, as LeRobot encodes, so that seeking to any frame by its timestamp is cheap
        self._stream.options = {"crf": str(crf), "g": "2", "preset": "veryfast"}

    def add(self, frames: np.ndarray) -> None:
        import av

        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = self.frames
            self.frames += 1
            for packet in self._stream.encode(vf):
                self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


class _Files:
    """The ``chunk-XXX/file-YYY`` being written for one kind of file; moves on when that file passes ``limit_mb``."""

    def __init__(self, limit_mb: float) -> None:
        self.chunk, self.file, self.limit = 0, 0, limit_mb * 2**20

    def full(self, path: Path) -> bool:
        return path.is_file() and path.stat().st_size >= self.limit

    def advance(self) -> None:
        self.file += 1
        if self.file == CHUNKS_SIZE:
            self.chunk, self.file = self.chunk + 1, 0


# ----------------------------------------------------------------------------------------------------- planning
def _plan(manifest: dict[str, Any], data: str, embodiment: str | None, split: str,
          fps: float | None) -> tuple[str, dict[str, Any], list[dict[str, Any]], int, float]:
    """Which embodiment, shards (train before val), frame step ``k`` and output fps; refuses what cannot be
    exported."""
    if manifest.get("kind") == "tokens":
        src = manifest.get("source_dataset")
        raise ExportError(f"{data} is a token dataset (frames already tokenised); LeRobot stores video, so export the "
                          f"frame dataset it was tokenised from{f' ({src})' if src else ''} instead")
    embs = manifest.get("embodiments") or {}
    if embodiment is None:
        if len(embs) != 1:
            raise ExportError(f"{data} holds {len(embs)} embodiments {sorted(embs)}; a LeRobot dataset has one action "
                              "space and one frame rate, so pass --embodiment NAME (one export per embodiment)")
        embodiment = next(iter(embs))
    if embodiment not in embs:
        raise ExportError(f"{data} has no embodiment {embodiment!r}; it has {sorted(embs)}: pass one of them to "
                          "--embodiment")
    if split not in SPLITS:
        raise ExportError(f"--split {split!r} is not one of {list(SPLITS)}")
    order = ["train", "val"] if split == "all" else [split]
    shards = [s for sp in order for s in manifest["shards"] if s["embodiment"] == embodiment and s["split"] == sp]
    if not any(s["episodes"] for s in shards):
        raise ExportError(f"{data}: no {'' if split == 'all' else split + ' '}episodes of {embodiment!r} to export; "
                          "choose another --split")
    frame_hz = float(embs[embodiment]["frame_hz"])
    out_fps = frame_hz if fps is None else float(fps)
    k = frame_hz / out_fps if out_fps > 0 else 0.0
    if not out_fps > 0 or abs(k - round(k)) > 1e-6 or round(k) < 1:
        raise ExportError(f"--fps {fps} is not the frame rate of {embodiment!r} ({frame_hz:g} Hz) divided by a whole "
                          f"number; use {frame_hz:g} (every frame) or e.g. {frame_hz / 2:g} (every 2nd frame)")
    return embodiment, embs[embodiment], shards, int(round(k)), out_fps


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse an output folder that holds something, unless ``overwrite`` and it is a LeRobot dataset."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace the LeRobot dataset there, "
                              "or choose another --out")
    if not (out / "meta" / "info.json").is_file():
        raise FileExistsError(f"{out} is not a LeRobot dataset (no meta/info.json), so --overwrite will not delete "
                              "it; choose another --out")


def _task(meta: dict[str, Any], emb: dict[str, Any], name: str) -> str:
    task = meta.get("task")
    if isinstance(task, str) and task.strip():
        return task
    return str(emb.get("source") or name)


def _video_key(camera: str) -> str:
    if camera.startswith("observation.images."):
        return camera
    clean = "".join(c if c.isalnum() or c in "_-" else "_" for c in camera) or "main"
    return f"observation.images.{clean}"


# ----------------------------------------------------------------------------------------------------- episodes
def _episode_rows(ep: Any, k: int, stride: int) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Frames ``[F', H, W, 3]`` (every ``k``-th), per-row feature arrays ``[F', w]`` and the number of real control
    steps, for one episode (see the module docstring for the time rule and the padding)."""
    frames = ep.frames[::k]
    f, c = len(frames), k * stride
    total = ep.actions.shape[0]
    real = f * c if total >= f * c else (f - 1) * c
    pad = f * c - real

    def padded(x: np.ndarray, fill: str) -> np.ndarray:
        x = x[:real]
        if not pad:
            return x
        if fill == "zero" or real == 0:
            tail = np.zeros((pad, *x.shape[1:]), x.dtype)
        else:
            tail = np.repeat(x[-1:], pad, axis=0)
        return np.concatenate([x, tail])

    cols = {"action": padded(ep.actions.astype(np.float32), "last").reshape(f, -1)}
    if ep.proprio is not None:
        cols["observation.state"] = ep.proprio[::k].astype(np.float32).reshape(f, -1)
    if ep.reward is not None:
        cols["next.reward"] = padded(ep.reward.astype(np.float32), "zero").reshape(f, c)
    if ep.success is not None:
        cols["next.success"] = padded(ep.success.astype(bool), "last").reshape(f, c)
    return frames, cols, real


def _features(first: dict[str, np.ndarray], emb: dict[str, Any], c: int, video_key: str, size: tuple[int, int],
              fps: int | float, pix_fmt: str) -> dict[str, dict[str, Any]]:
    """LeRobot's ``features`` table for the columns of the first episode (the others must have the same)."""
    dim = int(emb["action_dim"])
    names = list(emb.get("action_names") or []) or [f"a{i}" for i in range(dim)]
    action_names = names if c == 1 else [f"{n}@{j}" for j in range(c) for n in names]
    feats: dict[str, dict[str, Any]] = {"action": {"dtype": "float32", "shape": [c * dim], "names": action_names}}
    if "observation.state" in first:
        feats["observation.state"] = {"dtype": "float32", "shape": [first["observation.state"].shape[1]],
                                      "names": None}
    if "next.reward" in first:
        feats["next.reward"] = {"dtype": "float32", "shape": [c], "names": None}
    if "next.success" in first:
        feats["next.success"] = {"dtype": "bool", "shape": [c], "names": None}
    h, w = size
    feats[video_key] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                        "info": {"video.height": h, "video.width": w, "video.codec": "h264", "video.pix_fmt": pix_fmt,
                                 "video.is_depth_map": False, "video.fps": fps, "video.channels": 3,
                                 "has_audio": False}}
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                       ("index", "int64"), ("task_index", "int64")):
        feats[key] = {"dtype": dtype, "shape": [1], "names": None}
    return feats


def _check_columns(cols: dict[str, np.ndarray], feats: dict[str, dict[str, Any]], where: str) -> None:
    for key in ("observation.state", "next.reward", "next.success"):
        if (key in cols) != (key in feats):
            have, first = ("has", "has not") if key in cols else ("has no", "has")
            raise ExportError(f"{where} {have} {key} but the first exported episode {first}; LeRobot needs the "
                              "same columns in every row: export episodes that agree (e.g. one --split, or a dataset "
                              "without the odd episodes)")
        if key in cols and cols[key].shape[1] != feats[key]["shape"][0]:
            raise ExportError(f"{where}: {key} has {cols[key].shape[1]} values per row but the first exported episode "
                              f"has {feats[key]['shape'][0]}; export episodes that agree")


# ----------------------------------------------------------------------------------------------------- export
def export_lerobot(
    data: str,
    out: str | Path,
    fps: float | None = None,
    embodiment: str | None = None,
    split: str = "all",
    overwrite: bool = False,
    crf: int = 18,
    pix_fmt: str = "yuv420p",
    data_file_mb: float = 100,
    video_file_mb: float = 200,
) -> dict[str, Any]:
    """Write one embodiment of the episode dataset ``data`` as a LeRobot v3.0 dataset folder ``out``.

    Args:
        data: an episode dataset (folder or URL prefix with ``manifest.json``), generated rollouts included.
        out: the new LeRobot dataset folder (must be empty or absent; ``overwrite`` replaces a LeRobot dataset).
        fps: frames per second of the export: the embodiment's frame rate (default) or that divided by a whole
            number ``k`` (every ``k``-th frame is kept; each row then holds ``k * stride`` control steps).
        embodiment: which embodiment (required when the dataset has several).
        split: ``"train"``, ``"val"`` or ``"all"`` (train episodes first; ``info.json`` lists both splits).
        overwrite: replace a LeRobot dataset already in ``out``.
        crf, pix_fmt: H.264 quality (lower is better) and pixel format (``yuv420p`` as LeRobot, or ``yuv444p``
            for full-resolution colour; odd frame sides always use ``yuv444p``).
        data_file_mb, video_file_mb: size after which a parquet / mp4 file is closed and the next one begun.

    Returns:
        A summary: ``out``, ``episodes``, ``frames``, ``tasks``, ``fps``, ``video_key``, ``control_steps_per_row``,
        ``seconds``. The folder is written next to ``out`` first and renamed when complete, so a failed export
        leaves nothing; ``import-lerobot`` reads it back (see ``tests/data/test_lerobot_export.py``).
    """
    from hma_zoo.data.shards import load_manifest

    t0 = time.perf_counter()
    manifest = load_manifest(data)
    name, emb, shards, k, out_fps = _plan(manifest, str(data), embodiment, split, fps)
    if pix_fmt not in ("yuv420p", "yuv444p"):
        raise ExportError(f"--pix-fmt {pix_fmt!r} is not yuv420p or yuv444p")
    out = Path(out)
    _prepare_out(out, overwrite)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        summary = _write(manifest, str(data), tmp, name, emb, shards, k, out_fps, split, crf, pix_fmt,
                         data_file_mb, video_file_mb)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.update(out=str(out), seconds=time.perf_counter() - t0)
    log.info("exported %d episodes (%d frames) of %s to %s", summary["episodes"], summary["frames"], name, out)
    return summary


class _Writer:
    """Appends episodes to the data parquet and the mp4 being written (moving on to new files at their size limits)
    and collects the episode index, tasks and statistics that :meth:`finish` writes under ``meta/``."""

    def __init__(self, root: Path, name: str, emb: dict[str, Any], k: int, fps: float, image_size: tuple[int, int],
                 crf: int, pix_fmt: str, data_file_mb: float, video_file_mb: float) -> None:
        self.root, self.name, self.emb, self.k = root, name, emb, k
        self.stride = int(emb["stride"])
        self.c = k * self.stride
        self.video_key = _video_key(str(emb.get("camera") or "main"))
        self.size = image_size
        self.pix_fmt = pix_fmt if image_size[0] % 2 == 0 and image_size[1] % 2 == 0 else "yuv444p"
        self.crf, self.fps, self.rate = crf, fps, Fraction(fps).limit_denominator(1000)
        self.data_files, self.video_files = _Files(data_file_mb), _Files(video_file_mb)
        self.feats: dict[str, dict[str, Any]] | None = None
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict[str, Any]] = []
        self.columns: dict[str, list[np.ndarray]] = {}
        self.video_parts: list[dict[str, Any]] = []
        self.counts = {"train": 0, "val": 0}
        self.frames = 0
        self._parquet: Any = None
        self._video: _Video | None = None

    def add(self, ep: Any, split: str, where: str) -> None:
        """Append one of our episodes (frames, actions, optional proprio / reward / success) as LeRobot rows."""
        meta = ep.meta.get("meta") or {}
        frames, cols, real = _episode_rows(ep, self.k, self.stride)
        f, i = len(frames), len(self.episodes)
        if self.feats is None:
            self.feats = _features(cols, self.emb, self.c, self.video_key, self.size, _number(self.fps), self.pix_fmt)
        _check_columns(cols, self.feats, where)
        task = _task(meta, self.emb, self.name)
        t = self.tasks.setdefault(task, len(self.tasks))
        cols.update(timestamp=(np.arange(f) / self.fps).astype(np.float32), frame_index=np.arange(f, dtype=np.int64),
                    episode_index=np.full(f, i, np.int64), task_index=np.full(f, t, np.int64),
                    index=np.arange(self.frames, self.frames + f, dtype=np.int64))
        cols = {key: cols[key].reshape(f, -1) for key in self.feats if key in cols}  # features order
        row = {"episode_index": i, "tasks": [task], "length": f, **self._add_data(cols), **self._add_video(frames),
               "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        vstats = _video_stats(frames)
        self.video_parts.append(vstats)
        for key, st in {**{key: _stats(v) for key, v in cols.items()}, self.video_key: _public(vstats)}.items():
            row.update({f"stats/{key}/{stat}": value for stat, value in st.items()})
        row.update({"hma_zoo/episode_id": ep.episode_id, "hma_zoo/split": split, "hma_zoo/num_actions": real,
                    "hma_zoo/generated": bool(meta.get("generated", False)),
                    "hma_zoo/meta": json.dumps(meta, sort_keys=True)})
        self.episodes.append(row)
        for key, v in cols.items():
            self.columns.setdefault(key, []).append(v)
        self.counts[split] += 1
        self.frames += f

    def _add_data(self, cols: dict[str, np.ndarray]) -> dict[str, Any]:
        """Write the rows as one row group of the current data parquet; returns the episode-index fields."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = self.data_files
        path = self.root / DATA_PATH.format(chunk_index=files.chunk, file_index=files.file)
        table = pa.table({key: _arrow_column(v, v.shape[1]) for key, v in cols.items()})
        if self._parquet is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._parquet = pq.ParquetWriter(str(path), table.schema)
        self._parquet.write_table(table)
        f = len(next(iter(cols.values())))
        fields = {"data/chunk_index": files.chunk, "data/file_index": files.file,
                  "dataset_from_index": self.frames, "dataset_to_index": self.frames + f}
        if files.full(path):  # the next episode begins a new file
            self._parquet.close()
            self._parquet = None
            files.advance()
        return fields

    def _add_video(self, frames: np.ndarray) -> dict[str, Any]:
        """Append the frames to the current mp4; returns the episode-index fields (its time span in the file)."""
        files, key = self.video_files, self.video_key
        if self._video is None:
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=files.chunk, file_index=files.file)
            self._video = _Video(path, self.rate, *self.size, self.crf, self.pix_fmt)
        start = self._video.frames
        self._video.add(frames)
        fields = {f"videos/{key}/chunk_index": files.chunk, f"videos/{key}/file_index": files.file,
                  f"videos/{key}/from_timestamp": float(start / self.rate),
                  f"videos/{key}/to_timestamp": float((start + len(frames)) / self.rate)}
        if files.full(self._video.path):
            self._video.close()
            self._video = None
            files.advance()
        return fields

    def close(self) -> None:
        """Close the open parquet and mp4 (also after a failure)."""
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._video is not None:
            self._video.close()
            self._video = None

    def finish(self, record: dict[str, Any], data_file_mb: float, video_file_mb: float) -> None:
        """Write ``meta/``: the episode index, tasks, statistics, ``info.json`` and ``hma_zoo.json``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.close()
        assert self.feats is not None
        meta = self.root / "meta"
        path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episodes), path)
        write_task_table(meta / "tasks.parquet", list(self.tasks))
        stats = {key: _stats(np.concatenate(v)) for key, v in self.columns.items()}
        stats[self.video_key] = _merge_video_stats(self.video_parts)
        (meta / "stats.json").write_text(json.dumps(stats, indent=1))
        n, n_train = len(self.episodes), self.counts["train"]
        splits = {sp: f"{lo}:{hi}" for sp, lo, hi in (("train", 0, n_train), ("val", n_train, n)) if hi > lo}
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": self.name, "total_episodes": n,
                "total_frames": self.frames, "total_tasks": len(self.tasks), "chunks_size": CHUNKS_SIZE,
                "data_files_size_in_mb": _number(data_file_mb), "video_files_size_in_mb": _number(video_file_mb),
                "fps": _number(self.fps), "splits": splits, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
                "features": self.feats}
        (meta / "info.json").write_text(json.dumps(info, indent=4))
        (meta / "hma_zoo.json").write_text(json.dumps(record, indent=1))


def _write(manifest: dict[str, Any], data: str, root: Path, name: str, emb: dict[str, Any],
           shards: list[dict[str, Any]], k: int, fps: float, split: str, crf: int, pix_fmt: str,
           data_file_mb: float, video_file_mb: float) -> dict[str, Any]:
    """Write the LeRobot folder ``root`` (see :func:`export_lerobot`)."""
    from rich.progress import Progress

    from hma_zoo import __version__
    from hma_zoo.data.shards import ShardExpectation, iter_episodes, join

    size = tuple(int(s) for s in manifest["image_size"])
    writer = _Writer(root, name, emb, k, fps, size, crf, pix_fmt, data_file_mb, video_file_mb)  # type: ignore[arg-type]
    try:
        with Progress(transient=True) as bar:
            job = bar.add_task(f"export {name} to LeRobot", total=sum(len(s["episodes"]) for s in shards))
            for shard in shards:
                expect = ShardExpectation.from_manifest(manifest, shard)
                for ep in iter_episodes(join(data, shard["path"]), expect=expect):
                    writer.add(ep, shard["split"], f"{data} episode {ep.episode_id!r}")
                    bar.advance(job)
    finally:
        writer.close()
    kept = {key: v for key, v in emb.items() if key not in ("counts", "action_stats", "stats_split")}
    record = {"format_version": 1, "exported_by": f"hma_zoo {__version__}", "source_dataset": data,
              "dataset_name": manifest.get("name"), "split": split, "embodiment": dict(kept, name=name),
              "frame_step": k, "control_steps_per_row": writer.c, "action_dim": int(emb["action_dim"]),
              "video_key": writer.video_key, "generated": manifest.get("generated")}
    writer.finish(record, data_file_mb, video_file_mb)
    return {"episodes": len(writer.episodes), "frames": writer.frames, "tasks": len(writer.tasks),
            "fps": _number(fps), "video_key": writer.video_key, "control_steps_per_row": writer.c}
