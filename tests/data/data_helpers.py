"""Small synthetic episodes for the data tests (no simulator)."""

from __future__ import annotations

import io
import json
import tarfile
import zlib

import numpy as np

from hma_zoo.data.codec import npy_bytes
from hma_zoo.data.schema import EmbodimentInfo, Episode

ARM = EmbodimentInfo("arm", action_dim=2, control_hz=10.0, frame_hz=5.0, action_names=("x", "y"))  # stride 2
CART = EmbodimentInfo("cart", action_dim=1, control_hz=4.0, frame_hz=4.0)  # stride 1


def make_episode(ep_id: str, emb: EmbodimentInfo, num_frames: int, seed: int = 0, extra_chunk: bool = False,
                 size: int = 8) -> Episode:
    """Episode whose frame i is filled with value (i % 250) and whose action row k is (k, k + 0.5, ...)."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((num_frames, size, size, 3), np.uint8)
    frames += (np.arange(num_frames) % 250).astype(np.uint8)[:, None, None, None]
    frames[:, 0, 0, 0] = rng.integers(0, 255, num_frames)
    k = (num_frames - 1 + int(extra_chunk)) * emb.stride
    actions = (np.arange(k)[:, None] + 0.5 * np.arange(emb.action_dim)[None]).astype(np.float32)
    return Episode(ep_id, emb.name, actions, frames=frames, proprio=rng.normal(size=(num_frames, 3)).astype(np.float32),
                   reward=rng.normal(size=k).astype(np.float32), success=np.zeros(k, bool), meta={"seed": seed})


def lerobot_info(version: str, fps: float = 10, size: int = 16, layout: str | None = None) -> dict:
    """A LeRobot ``meta/info.json`` (2-D action and state, one camera) of ``version``; ``layout`` ("v2"/"v3",
    default: the version's own) chooses the path templates."""
    layout = layout or version[:2]
    info = {
        "codebase_version": version, "robot_type": "so100", "fps": fps, "chunks_size": 1000,
        "features": {
            "action": {"dtype": "float32", "shape": [2], "names": ["a", "b"]},
            "observation.state": {"dtype": "float32", "shape": [2]},
            "observation.images.top": {"dtype": "video", "shape": [size, size, 3]},
        },
    }
    if layout == "v2":
        info["data_path"] = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
        info["video_path"] = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    else:
        info["data_path"] = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
        info["video_path"] = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    return info


def lerobot_frames(n: int, shade: int, size: int = 16) -> np.ndarray:
    """``n`` flat frames of growing brightness (robust to lossy H.264)."""
    f = np.zeros((n, size, size, 3), np.uint8)
    f[:] = (np.arange(n) * 20 + shade)[:, None, None, None].clip(0, 255)
    return f


def make_lerobot(root, version: str, lengths: list[int], size: int = 16, fps: float = 10,
                 per_file: int | None = None, layout: str | None = None,
                 frames: dict[int, np.ndarray] | None = None, tasks: list[str] | None = None) -> tuple[dict, dict]:
    """Write a LeRobot dataset (v2.x: one parquet + mp4 per episode; v3.0: ``per_file`` episodes per parquet + mp4,
    default all) under ``root``; ``layout`` writes the other version's layout under this label. ``tasks``: one task
    string per episode, written as LeRobot does (``meta/tasks.jsonl`` / ``meta/tasks.parquet`` with the task as a
    pandas index, a ``task_index`` column, the episode index's ``tasks``). Returns ``(actions, frames)`` by episode
    index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hma_zoo.data.codec import mp4_bytes
    from hma_zoo.data.lerobot_export import write_task_table

    layout = layout or version[:2]
    root.joinpath("meta").mkdir(parents=True)
    root.joinpath("meta", "info.json").write_text(json.dumps(lerobot_info(version, fps, size, layout)))
    actions = {i: np.arange(n * 2, dtype=np.float32).reshape(n, 2) + 100 * i for i, n in enumerate(lengths)}
    frames = frames or {i: lerobot_frames(n, 10 + 5 * i, size) for i, n in enumerate(lengths)}
    cam = "observation.images.top"
    table = list(dict.fromkeys(tasks or []))  # task_index -> task
    task_cols = (lambda idx: {"task_index": [table.index(tasks[i]) for i in idx for _ in range(lengths[i])]}) \
        if tasks else (lambda idx: {})
    listed = (lambda i: {"tasks": [tasks[i]]}) if tasks else (lambda i: {})
    if layout == "v2":
        if tasks:
            root.joinpath("meta", "tasks.jsonl").write_text(
                "\n".join(json.dumps({"task_index": j, "task": t}) for j, t in enumerate(table)))
        root.joinpath("meta", "episodes.jsonl").write_text(
            "\n".join(json.dumps({"episode_index": i, "length": n, **listed(i)}) for i, n in enumerate(lengths)))
        for i, n in enumerate(lengths):
            d = root / "data" / "chunk-000"
            d.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"action": actions[i].tolist(), "observation.state": actions[i].tolist(),
                                     "episode_index": [i] * n, "frame_index": list(range(n)), **task_cols([i])}),
                           d / f"episode_{i:06d}.parquet")
            v = root / "videos" / "chunk-000" / cam
            v.mkdir(parents=True, exist_ok=True)
            (v / f"episode_{i:06d}.mp4").write_bytes(mp4_bytes(frames[i], fps=fps))
        return actions, frames
    per_file = per_file or len(lengths)
    rows: dict[str, list] = {k: [] for k in ("episode_index", "length", "data/chunk_index", "data/file_index",
                                             f"videos/{cam}/chunk_index", f"videos/{cam}/file_index",
                                             f"videos/{cam}/from_timestamp", f"videos/{cam}/to_timestamp")}
    for file_index, first in enumerate(range(0, len(lengths), per_file)):
        idx = list(range(first, min(first + per_file, len(lengths))))
        d = root / "data" / "chunk-000"
        d.mkdir(parents=True, exist_ok=True)
        all_a = np.concatenate([actions[i] for i in idx])
        pq.write_table(pa.table({"action": all_a.tolist(), "observation.state": all_a.tolist(),
                                 "episode_index": [i for i in idx for _ in range(lengths[i])], **task_cols(idx)}),
                       d / f"file-{file_index:03d}.parquet")
        v = root / "videos" / cam / "chunk-000"
        v.mkdir(parents=True, exist_ok=True)
        (v / f"file-{file_index:03d}.mp4").write_bytes(mp4_bytes(np.concatenate([frames[i] for i in idx]), fps=fps))
        t = 0.0
        for i in idx:
            for k, val in (("episode_index", i), ("length", lengths[i]), ("data/chunk_index", 0),
                           ("data/file_index", file_index), (f"videos/{cam}/chunk_index", 0),
                           (f"videos/{cam}/file_index", file_index), (f"videos/{cam}/from_timestamp", t),
                           (f"videos/{cam}/to_timestamp", t + lengths[i] / fps)):
                rows[k].append(val)
            t += lengths[i] / fps
    e = root / "meta" / "episodes" / "chunk-000"
    e.mkdir(parents=True)
    if tasks:
        rows["tasks"] = [[tasks[i]] for i in range(len(lengths))]
        write_task_table(root / "meta" / "tasks.parquet", table)
    pq.write_table(pa.table(rows), e / "file-000.parquet")
    return actions, frames


THREE_IDS = ["a0", "a1", "a2"]


def three_episode_dataset(root):
    """Three arm episodes (6 frames, 8x8, stride 2, action_dim 2) in one train shard; returns (manifest, shard)."""
    from hma_zoo.data.shards import DatasetWriter, load_manifest

    with DatasetWriter(root, [ARM], image_size=(8, 8)) as w:
        for i, eid in enumerate(THREE_IDS):
            w.add(make_episode(eid, ARM, 6, seed=i))
    manifest = load_manifest(root)
    (shard,) = manifest["shards"]
    return manifest, shard


def rewrite_sample(path, key, arrays=None, record=None):
    """Replace members of sample ``key`` and fix their CRCs in its record and the record's CRC (a buggy writer: the
    CRCs pass)."""
    with tarfile.open(path) as tar:
        items = [(ti, tar.extractfile(ti).read()) for ti in tar]
    data = {ti.name: d for ti, d in items}
    rec = json.loads(data[f"{key}.json"])
    for suffix, arr in (arrays or {}).items():
        data[f"{key}.{suffix}"] = npy_bytes(arr)
        rec["members"][suffix] = zlib.crc32(data[f"{key}.{suffix}"])
    rec.update(record or {})
    data[f"{key}.json"] = json.dumps(rec).encode()
    data[f"{key}.json.crc"] = str(zlib.crc32(data[f"{key}.json"])).encode()
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for ti, _ in items:
            ti.size = len(data[ti.name])
            tar.addfile(ti, io.BytesIO(data[ti.name]))
