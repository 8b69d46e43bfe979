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
``next.reward`` (optional);
frames come from the first ``video`` feature or ``camera``. Frames are resized to ``image_size``; ``stride`` keeps
every ``stride``-th frame (actions stay at ``fps``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hma_zoo.data.codec import mp4_load
from hma_zoo.data.schema import EmbodimentInfo, Episode, split_for_index
from hma_zoo.data.shards import MANIFEST, DatasetWriter
from hma_zoo.data.sources.files import subsample, to_uint8_frames

log = logging.getLogger(__name__)


def _column(table: Any, name: str) -> np.ndarray | None:
    if name not in table.column_names:
        return None
    values = table.column(name).to_pylist()
    return np.asarray(values, np.float32)


def _decode_timed(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames of an mp4 with their presentation times in seconds."""
    import av

    frames, times = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time))
    return np.stack(frames), np.asarray(times)


def _episodes_v2(root: Path, info: dict[str, Any], camera: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (root / "meta" / "episodes.jsonl").read_text().splitlines() if line.strip()]
    chunks = int(info.get("chunks_size", 1000))
    out = []
    for r in rows:
        idx = int(r["episode_index"])
        fmt = {"episode_chunk": idx // chunks, "episode_index": idx, "video_key": camera}
        out.append({"index": idx, "data": root / info["data_path"].format(**fmt),
                    "video": root / info["video_path"].format(**fmt), "from": None, "to": None,
                    "length": r.get("length")})
    return out


def _episodes_v3(root: Path, info: dict[str, Any], camera: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    out = []
    for f in sorted((root / "meta" / "episodes").rglob("*.parquet")):
        for r in pq.read_table(f).to_pylist():
            data = info["data_path"].format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
            video = info["video_path"].format(video_key=camera, chunk_index=r[f"videos/{camera}/chunk_index"],
                                              file_index=r[f"videos/{camera}/file_index"])
            out.append({"index": int(r["episode_index"]), "data": root / data, "video": root / video,
                        "from": float(r[f"videos/{camera}/from_timestamp"]),
                        "to": float(r[f"videos/{camera}/to_timestamp"]), "length": r.get("length")})
    return sorted(out, key=lambda e: e["index"])


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

    ``state_key``: the per-frame state column stored as ``proprio`` (what the state probe regresses)."""
    import pyarrow.parquet as pq
    from rich.progress import Progress

    root = Path(src)
    info_path = root / "meta" / "info.json"
    if not info_path.exists():
        raise FileNotFoundError(f"{info_path} not found: is {src} a LeRobot dataset folder (v2.x or v3.0)?")
    info = json.loads(info_path.read_text())
    version = str(info.get("codebase_version", ""))
    videos = [k for k, f in info["features"].items() if f.get("dtype") == "video"]
    camera = camera or (videos[0] if videos else None)
    if camera not in videos:
        raise KeyError(f"{src}: camera {camera!r} is not a video feature; video features: {videos}")
    if "action" not in info["features"]:
        raise KeyError(f"{src}: no 'action' feature; features are {sorted(info['features'])}")
    if state_key != "observation.state" and state_key not in info["features"]:
        raise KeyError(f"{src}: state column {state_key!r} is not a feature; features are {sorted(info['features'])}")
    if version.startswith("v2"):
        episodes = _episodes_v2(root, info, camera)
    elif version.startswith("v3"):
        episodes = _episodes_v3(root, info, camera)
    else:
        raise ValueError(f"{src}: LeRobot codebase_version {version!r} is not supported (v2.0, v2.1, v3.0 are)")
    fps = float(info["fps"])
    name = embodiment or str(info.get("robot_type") or root.name)
    name = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)
    action_dim = int(np.prod(info["features"]["action"]["shape"]))
    names = info["features"]["action"].get("names")
    names = tuple(names) if isinstance(names, list) and len(names) == action_dim else ()
    out = Path(out)
    if (out / MANIFEST).exists():
        if not overwrite:
            raise FileExistsError(f"{out} already holds a dataset; pass overwrite=True (--overwrite)")
        shutil.rmtree(out)
    emb = EmbodimentInfo(name, action_dim, fps, fps / stride, action_names=names, camera=camera,
                         source=f"lerobot:{version}:{root.name}")
    writer = DatasetWriter(out, [emb], image_size=image_size, encoding=encoding)
    tables: dict[Path, Any] = {}
    videos_cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
    with Progress() as bar:
        task = bar.add_task(f"importing {root.name} ({version})", total=len(episodes))
        for i, ep in enumerate(episodes):
            if ep["data"] not in tables:
                tables = {ep["data"]: pq.read_table(ep["data"])}  # keep one file in memory
            table = tables[ep["data"]]
            if "episode_index" in table.column_names:
                mask = np.asarray(table.column("episode_index").to_pylist()) == ep["index"]
                table = table.filter(mask)
            actions = _column(table, "action").reshape(table.num_rows, action_dim)
            if ep["from"] is None:
                frames = mp4_load(str(ep["video"]))
            else:
                if ep["video"] not in videos_cache:
                    videos_cache = {ep["video"]: _decode_timed(ep["video"])}
                all_frames, times = videos_cache[ep["video"]]
                half = 0.5 / fps
                frames = all_frames[(times >= ep["from"] - half) & (times < ep["to"] - half)]
            n = min(len(frames), table.num_rows)
            if n < len(frames) or n < table.num_rows:
                log.warning("episode %d: %d video frames vs %d parquet rows; keeping %d", ep["index"], len(frames),
                            table.num_rows, n)
            proprio = _column(table, state_key)
            reward = _column(table, "next.reward")
            extra = {"proprio": None if proprio is None else proprio.reshape(table.num_rows, -1)[:n],
                     "reward": None if reward is None else reward.reshape(-1)[:n]}
            frames = to_uint8_frames(frames[:n], image_size, f"{src} episode {ep['index']}")
            frames, acts, extra = subsample(frames, actions[:n], stride, extra)
            writer.add(Episode(f"{name}_{ep['index']:06d}", name, acts, frames=frames,
                               meta={"episode_index": ep["index"]}, **extra), split=split_for_index(i, val_fraction))
            bar.advance(task)
    log.info("imported %d LeRobot episodes from %s", len(episodes), src)
    return writer.close(extra={"name": name, "source": str(src), "lerobot_version": version})
