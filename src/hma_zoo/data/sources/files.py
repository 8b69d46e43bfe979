"""Importer: a folder of per-episode files with configurable key names.

An episode is one of:

* an ``.npz`` file (``np.savez``), keys ``frames_key``, ``actions_key`` (and optional proprio / reward keys);
* an ``.hdf5`` / ``.h5`` file whose datasets are found at those keys (``/``-separated paths allowed,
  e.g. ``obs/agentview_image``);
* a sub-folder holding ``<key>.npy`` files (pickled arrays are refused);
* with ``robomimic=True``: every ``data/demo_*`` group of every HDF5 file (robomimic layout: ``obs/<image key>``,
  ``actions``); ``frames_key`` defaults to ``obs/agentview_image``.

Source frames are assumed to be one per control step (``[F, H, W, 3]``, uint8 or float in [0, 1]); ``stride``
keeps every ``stride``-th frame and all actions. Frames are resized to ``image_size`` when needed.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hma_zoo.data.schema import EmbodimentInfo, Episode, split_for_index
from hma_zoo.data.shards import MANIFEST, DatasetWriter

log = logging.getLogger(__name__)


def to_uint8_frames(frames: np.ndarray, image_size: tuple[int, int], where: str = "") -> np.ndarray:
    """Frames ``[F, H, W, 3]`` (uint8 or float in [0, 1]; ``[F, 3, H, W]`` is transposed) -> uint8 ``image_size``."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"{where}: frames must be [F, H, W, 3], got shape {frames.shape}")
    if frames.shape[-1] != 3 and frames.shape[1] == 3:
        frames = frames.transpose(0, 2, 3, 1)
    if np.issubdtype(frames.dtype, np.floating):
        frames = np.clip(frames * 255.0 if frames.max() <= 1.0 else frames, 0, 255).round().astype(np.uint8)
    frames = frames.astype(np.uint8)
    if tuple(frames.shape[1:3]) != tuple(image_size):
        from PIL import Image

        h, w = image_size
        frames = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])
    return np.ascontiguousarray(frames)


def subsample(frames: np.ndarray, actions: np.ndarray, stride: int, extra: dict[str, Any]) -> tuple:
    """Keep every ``stride``-th frame; cut actions to a whole number of chunks (see the schema's length rule)."""
    kept = frames[::stride]
    f = kept.shape[0]
    k = f * stride if actions.shape[0] >= f * stride else (f - 1) * stride
    if actions.shape[0] < k:
        raise ValueError(f"{actions.shape[0]} actions are too few for {f} frames at stride {stride}")
    out = {name: (v[::stride] if name == "proprio" else v[:k]) for name, v in extra.items() if v is not None}
    return kept, actions[:k].astype(np.float32), out


def _get(container: Any, key: str) -> np.ndarray | None:
    if key is None:
        return None
    try:
        return np.asarray(container[key])
    except (KeyError, ValueError):
        return None


def iter_raw_episodes(src: str | os.PathLike, frames_key: str, actions_key: str, proprio_key: str | None,
                      reward_key: str | None, robomimic: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(episode name, {"frames", "actions", "proprio", "reward"})`` for every episode under ``src``, sorted."""
    src = Path(src)
    entries = sorted(src.iterdir()) if src.is_dir() else [src]
    keys = {"frames": frames_key, "actions": actions_key, "proprio": proprio_key, "reward": reward_key}
    for path in entries:
        suffix = path.suffix.lower()
        if suffix in (".hdf5", ".h5"):
            import h5py

            with h5py.File(path, "r") as f:
                if robomimic:
                    demos = sorted(f["data"].keys(), key=lambda s: int(s.split("_")[-1]) if s[-1].isdigit() else s)
                    for demo in demos:
                        g = f["data"][demo]
                        yield f"{path.stem}_{demo}", {k: _get(g, v) for k, v in keys.items()}
                else:
                    yield path.stem, {k: _get(f, v) for k, v in keys.items()}
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                yield path.stem, {k: (z[v] if v is not None and v in z else None) for k, v in keys.items()}
        elif path.is_dir():
            yield path.name, {k: (np.load(path / f"{v}.npy", allow_pickle=False)
                                  if v is not None and (path / f"{v}.npy").exists() else None)
                              for k, v in keys.items()}


def import_folder(
    src: str | os.PathLike,
    out: str | os.PathLike,
    embodiment: str,
    control_hz: float,
    stride: int = 1,
    frames_key: str | None = None,
    actions_key: str = "actions",
    proprio_key: str | None = None,
    reward_key: str | None = None,
    image_size: tuple[int, int] = (64, 64),
    robomimic: bool = False,
    val_fraction: float = 0.1,
    encoding: str = "npy",
    overwrite: bool = False,
    action_names: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Import every episode under ``src`` into a dataset at ``out``; returns the manifest (see module docstring)."""
    from rich.progress import Progress

    frames_key = frames_key or ("obs/agentview_image" if robomimic else "frames")
    out = Path(out)
    if (out / MANIFEST).exists():
        if not overwrite:
            raise FileExistsError(f"{out} already holds a dataset; pass overwrite=True (--overwrite)")
        shutil.rmtree(out)
    writer = None
    n = 0
    with Progress() as bar:
        task = bar.add_task(f"importing {src}", total=None)
        for i, (name, raw) in enumerate(iter_raw_episodes(src, frames_key, actions_key, proprio_key, reward_key,
                                                          robomimic)):
            where = f"{src}: episode {name!r}"
            for key, k in (("frames", frames_key), ("actions", actions_key)):
                if raw[key] is None:
                    raise KeyError(f"{where}: no {key} under key {k!r}; pass --{key}-key with the right name")
            actions = np.asarray(raw["actions"], np.float32)
            if actions.ndim == 1:
                actions = actions[:, None]
            if writer is None:
                info = EmbodimentInfo(embodiment, actions.shape[1], control_hz, control_hz / stride,
                                      action_names=action_names, source=f"import:{Path(src).name}")
                writer = DatasetWriter(out, [info], image_size=image_size, encoding=encoding)
            frames = to_uint8_frames(raw["frames"], image_size, where)
            extra = {"proprio": None if raw["proprio"] is None else np.asarray(raw["proprio"], np.float32),
                     "reward": None if raw["reward"] is None else np.asarray(raw["reward"], np.float32).ravel()}
            if extra["proprio"] is not None and extra["proprio"].ndim == 1:
                extra["proprio"] = extra["proprio"][:, None]
            frames, actions, extra = subsample(frames, actions, stride, extra)
            ep_id = "".join(c if c.isalnum() or c in "_-" else "_" for c in f"{embodiment}_{name}")
            writer.add(Episode(ep_id, embodiment, actions, frames=frames, meta={"source_file": name}, **extra),
                       split=split_for_index(i, val_fraction))
            n += 1
            bar.advance(task)
    if writer is None:
        raise FileNotFoundError(f"no episodes (.npz, .hdf5/.h5, folders of .npy) found under {src}")
    log.info("imported %d episodes from %s", n, src)
    return writer.close(extra={"name": embodiment, "source": str(src)})
