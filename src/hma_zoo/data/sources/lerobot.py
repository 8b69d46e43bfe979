"""Importer: LeRobot datasets on disk (parquet + mp4), layouts v2.x and v3.0 as documented by LeRobot.

* v2.0 / v2.1: ``meta/info.json`` (``fps``, ``features``, ``data_path``, ``video_path``, ``chunks_size``),
  ``meta/episodes.jsonl`` (``episode_index``, ``length``), one parquet and one mp4 per episode:
  ``data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet`` and
  ``videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4``.
* v3.0: ``meta/episodes/chunk-*/file-*.parquet`` (one row per episode: ``episode_index``, ``length``,
  ``data/chunk_index``, ``data/file_index``, ``videos/{key}/chunk_index``, ``videos/{key}/file_index``,
  ``videos/{key}/from_timestamp``, ``videos/{key}/to_timestamp``); many episodes per data parquet
  (rows selected by ``episode_index``) and per mp4 (frames selected by timestamp).

Columns used: ``action`` (required), ``observation.state`` (proprio, optional; another column with ``state_key``),
``next.reward`` and ``next.success`` (optional), ``task_index`` (optional);
frames come from the first ``video`` feature or ``camera``. Task strings (``meta/tasks.parquet`` in v3.0,
``meta/tasks.jsonl`` in v2.x, looked up by each row's ``task_index``; else the episode index's ``tasks``) are kept in
the episode's ``meta["task"]`` (and ``meta["tasks"]`` when an episode has several).

A dataset written by :func:`hma_zoo.data.lerobot_export.export_lerobot` carries ``meta/hma_zoo.json`` and
``hma_zoo/*`` columns in its episode index; they restore what LeRobot's one-action-per-frame layout cannot hold:
one action row per control step (a row of ``c * A`` values is ``c`` control steps), the number of real control steps
(the padded last row is dropped) and the original episode ``meta`` (its generation provenance included).

Frames are resized to ``image_size``; ``stride`` keeps every ``stride``-th frame (actions stay at ``fps``).

Refused with an :class:`~hma_zoo.data.schema.ImporterError` naming the path and what was expected, before anything
is written: a ``codebase_version`` whose layout the folder does not have (v2.x needs ``meta/episodes.jsonl``, v3.0
``meta/episodes/*.parquet``, and the ``data_path`` / ``video_path`` templates of that version), an empty or
incomplete episode index, a parquet or mp4 file the index refers to that is missing. Video is decoded one frame at a
time and resized as it goes (:class:`VideoSegments`), episode by episode, so memory does not grow with the size of
a v3.0 mp4; an episode whose timestamps select no frame is refused. A refused or failed import removes the shards
it wrote.
"""

from __future__ import annotations

import json
import logging
import math
import os
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hma_zoo.data.schema import (
    EmbodimentInfo,
    Episode,
    ImporterError,
    check_positive_int,
    check_val_fraction,
    split_for_index,
)
from hma_zoo.data.shards import DatasetWriter
from hma_zoo.data.sources.files import abort_import, prepare_out, subsample, to_uint8_frames

log = logging.getLogger(__name__)


def _column(table: Any, name: str, dtype: Any = np.float32) -> np.ndarray | None:
    if name not in table.column_names:
        return None
    values = table.column(name).to_pylist()
    return np.asarray(values, dtype)


def _tasks(root: Path, layout: str) -> dict[int, str]:
    """``task_index -> task`` from ``meta/tasks.parquet`` (v3.0; the task is the pandas index LeRobot writes, stored
    as the column ``task``) or ``meta/tasks.jsonl`` (v2.x); empty when the file is absent."""
    if layout == "v3":
        import pyarrow.parquet as pq

        path = root / "meta" / "tasks.parquet"
        if not path.is_file():
            return {}
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any parquet failure names the file
            raise ImporterError(f"{path}: not a readable parquet file ({exc}); re-download meta/") from exc
        cols = table.column_names
        text = next((c for c in ("task", "__index_level_0__") if c in cols), None)
        if "task_index" not in cols or text is None:
            raise ImporterError(f"{path}: a LeRobot task table has the columns task_index and task; this one has "
                                f"{cols}. Re-download meta/")
        return {int(i): str(t) for i, t in zip(table.column("task_index").to_pylist(), table.column(text).to_pylist())}
    path = root / "meta" / "tasks.jsonl"
    if not path.is_file():
        return {}
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            out[int(r["task_index"])] = str(r["task"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ImporterError(f"{path}, line {n}: not a JSON object with 'task_index' and 'task' ({exc}); repair "
                                "or re-download the file") from exc
    return out


def _episode_tasks(table: Any, tasks: dict[int, str], listed: Any, where: str) -> list[str]:
    """The task strings of one episode, in order of first appearance: its rows' ``task_index`` looked up in
    ``tasks``, else the ``tasks`` list of the episode index (``listed``)."""
    if "task_index" in table.column_names and tasks:
        indices = list(dict.fromkeys(int(i) for i in table.column("task_index").to_pylist()))
        unknown = [i for i in indices if i not in tasks]
        if unknown:
            raise ImporterError(f"{where}: task_index {unknown} not in the task table (it has {sorted(tasks)}); "
                                "re-download meta/")
        return [tasks[i] for i in indices]
    return [str(t) for t in listed] if isinstance(listed, (list, tuple)) else []


def _exported(root: Path, action_width: int) -> dict[str, Any] | None:
    """``meta/hma_zoo.json`` of a dataset written by ``hma-zoo data export-lerobot``, checked against the action
    width; None for any other LeRobot dataset."""
    path = root / "meta" / "hma_zoo.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
        steps, dim = int(info["control_steps_per_row"]), int(info["action_dim"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ImporterError(f"{path}: not an hma_zoo export record ({exc}); delete it to import the folder as a "
                            "plain LeRobot dataset") from exc
    if steps < 1 or steps * dim != action_width:
        raise ImporterError(f"{path}: says each row holds {steps} control steps of {dim} actions, but the action "
                            f"feature has {action_width} values; delete the file to import one action per row")
    return info


class VideoSegments:
    """Frames of one mp4 cut into time segments, decoded one frame at a time and resized as they come.

    Only one full-resolution frame is in memory at once (plus the resized frames of the segment being cut), so a v3.0
    file holding hundreds of episodes never has to fit in memory. Segments are read in order; asking for one that
    starts before the end of the previous one reopens the file.

    Args:
        path: the mp4 file.
        image_size: ``(H, W)`` every frame is resized to (bilinear, as :func:`to_uint8_frames`).
    """

    def __init__(self, path: Path, image_size: tuple[int, int]) -> None:
        self.path, self.image_size = Path(path), tuple(image_size)
        self._container: Any = None
        self._frames: Iterator[tuple[float, Any]] | None = None
        self._pending: tuple[float, Any] | None = None
        self._position = -math.inf

    def _open(self) -> None:
        import av

        self.close()
        try:
            self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as exc:
            raise ImporterError(f"{self.path}: not a readable video ({exc}); re-download the file") from exc
        stream.thread_type = "AUTO"
        self._frames = ((self._time(f, stream), f) for f in self._container.decode(stream))
        self._position = -math.inf

    def _time(self, frame: Any, stream: Any) -> float:
        if frame.time is not None:
            return float(frame.time)
        if frame.pts is not None and stream.time_base is not None:
            return float(frame.pts * stream.time_base)
        raise ImporterError(f"{self.path}: a video frame has no timestamp, so episodes cannot be cut from it by "
                            "from_timestamp / to_timestamp; re-encode the video with timestamps")

    def segment(self, start: float = -math.inf, stop: float = math.inf) -> np.ndarray:
        """uint8 ``[F, H, W, 3]`` frames whose presentation time ``t`` is in ``[start, stop)``, resized."""
        if self._frames is None or start < self._position:
            self._open()
        out = []
        try:
            while True:
                item, self._pending = self._pending or next(self._frames, None), None
                if item is None:
                    break
                t, frame = item
                if t < start:
                    continue
                if t >= stop:
                    self._pending = item
                    break
                out.append(to_uint8_frames(frame.to_ndarray(format="rgb24")[None], self.image_size, str(self.path))[0])
        except ImporterError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder failure names the file
            raise ImporterError(f"{self.path}: cannot decode the video ({type(exc).__name__}: {exc}); "
                                "re-download or re-encode the file") from exc
        self._position = stop
        if not out:
            return np.zeros((0, *self.image_size, 3), np.uint8)
        return np.stack(out)

    def close(self) -> None:
        """Close the file (reopened by the next :meth:`segment`)."""
        if self._container is not None:
            self._container.close()
        self._container, self._frames, self._pending = None, None, None


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


_LAYOUTS = {
    "v2": {"index": "meta/episodes.jsonl", "fields": {"episode_index"}, "versions": "v2.0 / v2.1"},
    "v3": {"index": "meta/episodes/", "fields": {"chunk_index", "file_index"}, "versions": "v3.0"},
}


def _check_layout(root: Path, info: dict[str, Any], version: str) -> str:
    """``"v2"`` or ``"v3"``: the layout the version label names, refused unless the folder has that layout."""
    info_path = root / "meta" / "info.json"
    if version.startswith("v2"):
        label = "v2"
    elif version.startswith("v3"):
        label = "v3"
    else:
        raise ImporterError(f"{info_path}: LeRobot codebase_version {version!r} is not supported (v2.0, v2.1, v3.0 "
                            "are); convert the dataset with LeRobot's conversion script")
    other = "v3" if label == "v2" else "v2"
    has = {"v2": (root / "meta" / "episodes.jsonl").is_file(), "v3": (root / "meta" / "episodes").is_dir()}
    want = _LAYOUTS[label]
    if not has[label]:
        if has[other]:
            raise ImporterError(
                f"{root}: {info_path} says codebase_version {version!r}, whose layout lists episodes in "
                f"{root / want['index']}, but the folder has the {_LAYOUTS[other]['versions']} layout "
                f"({root / _LAYOUTS[other]['index']}) instead; fix codebase_version in {info_path} or convert the "
                "dataset")
        raise ImporterError(
            f"{root / want['index']} not found: a LeRobot {version} dataset lists its episodes there (layout "
            f"{want['versions']}), so the folder is incomplete; download the whole dataset, meta/ included")
    for key in ("data_path", "video_path"):
        template = info.get(key)
        if not isinstance(template, str):
            raise ImporterError(f"{info_path}: no {key!r} template (a LeRobot {version} info.json has one)")
        if not want["fields"] <= _fields(template):
            raise ImporterError(
                f"{info_path}: {key} {template!r} is not a {want['versions']} template (it needs "
                f"{sorted('{' + f + '}' for f in want['fields'])}); the codebase_version {version!r} does not match "
                "the layout: fix the label or convert the dataset")
    return label


def _episodes_v2(root: Path, info: dict[str, Any], camera: str) -> list[dict[str, Any]]:
    path = root / "meta" / "episodes.jsonl"
    chunks = int(info.get("chunks_size", 1000))
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            idx = int(r["episode_index"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ImporterError(f"{path}, line {n}: not a JSON object with an integer 'episode_index' ({exc}); "
                                "repair or re-download the file") from exc
        fmt = {"episode_chunk": idx // chunks, "episode_index": idx, "video_key": camera}
        out.append({"index": idx, "data": root / info["data_path"].format(**fmt),
                    "video": root / info["video_path"].format(**fmt), "from": None, "to": None,
                    "length": r.get("length"), "tasks": r.get("tasks")})
    return sorted(out, key=lambda e: e["index"])


def _episodes_v3(root: Path, info: dict[str, Any], camera: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    files = sorted((root / "meta" / "episodes").rglob("*.parquet"))
    if not files:
        raise ImporterError(f"{root / 'meta' / 'episodes'}: no episode index (*.parquet) in it, though "
                            "codebase_version v3.0 lists its episodes there; download the whole dataset, meta/ "
                            "included")
    key = f"videos/{camera}"
    need = ["episode_index", "data/chunk_index", "data/file_index", f"{key}/chunk_index", f"{key}/file_index",
            f"{key}/from_timestamp", f"{key}/to_timestamp"]
    out = []
    for f in files:
        try:
            table = pq.read_table(f)
        except Exception as exc:  # noqa: BLE001 - any parquet failure names the file
            raise ImporterError(f"{f}: not a readable parquet file ({exc}); re-download it") from exc
        missing = [c for c in need if c not in table.column_names]
        if missing:
            raise ImporterError(f"{f}: the v3.0 episode index lacks the columns {missing} (for camera {camera!r}); "
                                f"it has {sorted(table.column_names)}. Pick another --camera or re-download meta/")
        for r in table.to_pylist():
            data = info["data_path"].format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
            video = info["video_path"].format(video_key=camera, chunk_index=r[f"{key}/chunk_index"],
                                              file_index=r[f"{key}/file_index"])
            try:
                meta = json.loads(r["hma_zoo/meta"]) if r.get("hma_zoo/meta") else {}
            except ValueError as exc:
                raise ImporterError(f"{f}: episode {r['episode_index']}: hma_zoo/meta is not JSON ({exc}); "
                                    "re-download meta/") from exc
            out.append({"index": int(r["episode_index"]), "data": root / data, "video": root / video,
                        "from": float(r[f"{key}/from_timestamp"]), "to": float(r[f"{key}/to_timestamp"]),
                        "length": r.get("length"), "tasks": r.get("tasks"), "meta": meta,
                        "num_actions": r.get("hma_zoo/num_actions"), "episode_id": r.get("hma_zoo/episode_id")})
    return sorted(out, key=lambda e: e["index"])


def _check_files(root: Path, episodes: list[dict[str, Any]]) -> None:
    """Refuse before writing anything when an episode's parquet or mp4 is missing."""
    missing = sorted({str(p) for ep in episodes for p in (ep["data"], ep["video"]) if not p.is_file()})
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ImporterError(f"{root}: {len(missing)} files the episode index refers to are missing: {shown}; "
                            "download the whole dataset (data/ and videos/)")


def import_lerobot(
    src: str | os.PathLike,
    out: str | os.PathLike,
    embodiment: str | None = None,
    camera: str | None = None,
    stride: int = 1,
    image_size: tuple[int, int] = (64, 64),
    val_fraction: float = 0.1,
    encoding: str = "npy",
    overwrite: bool = False,
    state_key: str = "observation.state",
) -> dict[str, Any]:
    """Import a LeRobot v2.x / v3.0 dataset folder into a dataset at ``out``; returns the manifest.

    ``state_key``: the per-frame state column stored as ``proprio`` (what the state probe regresses). Task strings go
    to each episode's ``meta["task"]`` (see the module docstring); a folder written by ``export-lerobot`` gets its
    control-step actions, stride and episode meta back.

    The folder's layout must be the one its ``codebase_version`` names (v2.x: ``meta/episodes.jsonl``; v3.0:
    ``meta/episodes/*.parquet``), list at least one episode, and hold every parquet / mp4 file its episode index
    refers to; otherwise an :class:`~hma_zoo.data.schema.ImporterError` names the path and what was expected, and
    nothing is written. Video is decoded one frame at a time and resized as it goes (:class:`VideoSegments`).
    """
    import pyarrow.parquet as pq
    from rich.progress import Progress

    stride = check_positive_int(stride, "--stride", "keep every N-th frame")
    val_fraction = check_val_fraction(val_fraction)
    root = Path(src)
    info_path = root / "meta" / "info.json"
    if not info_path.exists():
        raise FileNotFoundError(f"{info_path} not found: is {src} a LeRobot dataset folder (v2.x or v3.0)?")
    try:
        info = json.loads(info_path.read_text())
    except ValueError as exc:
        raise ImporterError(f"{info_path}: not valid JSON ({exc}); re-download meta/info.json") from exc
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict) or "fps" not in info:
        raise ImporterError(f"{info_path}: a LeRobot info.json has 'fps' and a 'features' table; this one has "
                            f"{sorted(info) if isinstance(info, dict) else type(info).__name__}")
    version = str(info.get("codebase_version", ""))
    videos = [k for k, f in info["features"].items() if isinstance(f, dict) and f.get("dtype") == "video"]
    camera = camera or (videos[0] if videos else None)
    if camera not in videos:
        raise KeyError(f"{src}: camera {camera!r} is not a video feature; video features: {videos}")
    if "action" not in info["features"]:
        raise KeyError(f"{src}: no 'action' feature; features are {sorted(info['features'])}")
    if state_key != "observation.state" and state_key not in info["features"]:
        raise KeyError(f"{src}: state column {state_key!r} is not a feature; features are {sorted(info['features'])}")
    layout = _check_layout(root, info, version)
    episodes = _episodes_v2(root, info, camera) if layout == "v2" else _episodes_v3(root, info, camera)
    if not episodes:
        raise ImporterError(f"{root / _LAYOUTS[layout]['index']}: lists no episodes; nothing to import")
    _check_files(root, episodes)
    fps = float(info["fps"])
    name = embodiment or str(info.get("robot_type") or root.name)
    name = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)
    width = int(np.prod(info["features"]["action"]["shape"]))
    exported = _exported(root, width)
    steps = int(exported["control_steps_per_row"]) if exported else 1  # control steps per LeRobot row
    action_dim = width // steps
    names = (exported.get("embodiment") or {}).get("action_names") if exported else \
        info["features"]["action"].get("names")
    names = tuple(names) if isinstance(names, list) and len(names) == action_dim else ()
    tasks = _tasks(root, layout)
    out = Path(out)
    existed = prepare_out(out, overwrite)
    emb = EmbodimentInfo(name, action_dim, fps * steps, fps / stride, action_names=names, camera=camera,
                         source=f"lerobot:{version}:{root.name}")
    writer = DatasetWriter(out, [emb], image_size=image_size, encoding=encoding)
    tables: dict[Path, Any] = {}
    reader: VideoSegments | None = None
    half = 0.5 / fps
    try:
        with Progress() as bar:
            task = bar.add_task(f"importing {root.name} ({version})", total=len(episodes))
            for i, ep in enumerate(episodes):
                where = f"{src} episode {ep['index']}"
                if ep["data"] not in tables:
                    tables = {ep["data"]: pq.read_table(ep["data"])}  # keep one file in memory
                table = tables[ep["data"]]
                if "episode_index" in table.column_names:
                    mask = np.asarray(table.column("episode_index").to_pylist()) == ep["index"]
                    table = table.filter(mask)
                if table.num_rows == 0:
                    raise ImporterError(f"{ep['data']}: no rows of episode {ep['index']}, which the episode index "
                                        "lists; re-download the dataset")
                actions = _column(table, "action").reshape(table.num_rows * steps, action_dim)
                if reader is None or reader.path != ep["video"]:
                    if reader is not None:
                        reader.close()
                    reader = VideoSegments(ep["video"], image_size)
                if ep["from"] is None:
                    frames = reader.segment()
                    reader.close()
                else:
                    frames = reader.segment(ep["from"] - half, ep["to"] - half)
                if len(frames) == 0:
                    raise ImporterError(f"{ep['video']}: no frame of episode {ep['index']} between from_timestamp "
                                        f"{ep['from']} and to_timestamp {ep['to']}; check meta/episodes against "
                                        "the video")
                n = min(len(frames), table.num_rows)
                if n < len(frames) or n < table.num_rows:
                    log.warning("%s: %d video frames vs %d parquet rows; keeping %d", where, len(frames),
                                table.num_rows, n)
                k = min(n * steps, int(ep.get("num_actions") or n * steps))  # an export's padded last row is cut
                proprio = _column(table, state_key)
                reward = _column(table, "next.reward")
                success = _column(table, "next.success", bool)
                extra = {"proprio": None if proprio is None else proprio.reshape(table.num_rows, -1)[:n],
                         "reward": None if reward is None else reward.reshape(-1)[:k],
                         "success": None if success is None else success.reshape(-1)[:k]}
                frames, acts, extra = subsample(frames[:n], actions[:k], stride, extra, source_stride=steps)
                meta = dict(ep.get("meta") or {}, episode_index=ep["index"])
                ep_tasks = _episode_tasks(table, tasks, ep.get("tasks"), where)
                if ep_tasks:
                    meta["task"] = ep_tasks[0]
                if len(ep_tasks) > 1:
                    meta["tasks"] = ep_tasks
                if ep.get("episode_id"):
                    meta["source_episode_id"] = ep["episode_id"]
                writer.add(Episode(f"{name}_{ep['index']:06d}", name, acts, frames=frames, meta=meta, **extra),
                           split=split_for_index(i, val_fraction))
                bar.advance(task)
        manifest = writer.close(extra={"name": name, "source": str(src), "lerobot_version": version})
    except BaseException:
        abort_import(writer, out, existed)
        raise
    finally:
        if reader is not None:
            reader.close()
    log.info("imported %d LeRobot episodes from %s", len(episodes), src)
    return manifest
