"""Importer: a folder of per-episode files with configurable key names.

An episode is one of:

* an ``.npz`` file (``np.savez``), keys ``frames_key``, ``actions_key`` (and optional proprio / reward / success /
  last-frame keys);
* an ``.hdf5`` / ``.h5`` file whose datasets are found at those keys (``/``-separated paths allowed,
  e.g. ``obs/agentview_image``);
* a sub-folder holding ``<key>.npy`` files (pickled arrays are refused);
* with ``robomimic=True``: every ``data/demo_*`` group of every HDF5 file (robomimic layout: ``obs/<image key>``,
  ``actions``); ``frames_key`` defaults to ``obs/agentview_image``.

Time: the files hold one frame every ``source_stride`` control steps (default 1: one frame per control step) and
one action row per control step, so ``T`` frames need ``(T-1)*source_stride`` actions (none after the last frame)
or ``T*source_stride``; other counts are refused (they mean the actions do not line up with the frames). A final
observation stored apart (``last_frame_key``: ``T+1`` frames for ``T`` actions) is appended to the frames.
``stride`` then keeps every ``stride``-th frame and all actions (the stored stride is ``source_stride * stride``);
actions after the last kept frame that do not fill a whole chunk are dropped.

Frames must be uint8 ``[F, H, W, 3]`` (``[F, 3, H, W]`` is transposed); other dtypes need ``frame_scale``
(e.g. ``255`` for floats in [0, 1], ``1/257`` for uint16), and values that do not land in 0..255 are refused,
never wrapped or clipped. Frames are resized to ``image_size`` when needed.

If the source folder holds an ``info.json`` (or ``meta/info.json``) with ``fps`` (the rate of the stored frames) or
``control_hz``, they must agree with ``control_hz`` and ``source_stride``.

Every refusal is an :class:`~hma_zoo.data.schema.ImporterError` naming the file, the problem and the option that
fixes it; a refused import leaves no shard behind.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import zlib
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
from hma_zoo.data.shards import MANIFEST, DatasetWriter

log = logging.getLogger(__name__)

_LAST_FRAME_NAMES = ("last_frame", "final_frame", "last_obs", "final_obs", "last_observation", "final_observation")


def to_uint8_frames(frames: np.ndarray, image_size: tuple[int, int], where: str = "",
                    scale: float | None = None) -> np.ndarray:
    """Frames ``[F, H, W, 3]`` (``[F, 3, H, W]`` is transposed) -> uint8 frames of ``image_size`` (bilinear).

    uint8 frames are taken as they are. Any other dtype needs ``scale``: values are multiplied by it and rounded,
    and must then lie in 0..255 (refused otherwise: never wrapped or clipped). Raises :class:`ImporterError` naming
    ``where``.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ImporterError(f"{where}: frames must be [F, H, W, 3], got shape {frames.shape}")
    if frames.shape[-1] != 3 and frames.shape[1] == 3:
        frames = frames.transpose(0, 2, 3, 1)
    if frames.shape[-1] != 3:
        raise ImporterError(f"{where}: frames must be RGB [F, H, W, 3] (or [F, 3, H, W]), got shape {frames.shape}")
    if scale is not None or frames.dtype != np.uint8:
        frames = _scaled(frames, where, scale)
    if tuple(frames.shape[1:3]) != tuple(image_size):
        from PIL import Image

        h, w = image_size
        frames = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])
    return np.ascontiguousarray(frames)


def _scaled(frames: np.ndarray, where: str, scale: float | None) -> np.ndarray:
    if not (np.issubdtype(frames.dtype, np.integer) or np.issubdtype(frames.dtype, np.floating)):
        raise ImporterError(f"{where}: frames have dtype {frames.dtype}; store them as uint8 RGB")
    lo, hi = (float(frames.min()), float(frames.max())) if frames.size else (0.0, 0.0)
    if scale is None:
        if np.issubdtype(frames.dtype, np.floating) and hi <= 1.0:
            hint = "--frame-scale 255 for values in [0, 1]"
        elif frames.dtype == np.uint16:
            hint = "--frame-scale 1/257 for the full uint16 range"
        else:
            hint = f"--frame-scale S with {hi:g} * S <= 255"
        raise ImporterError(f"{where}: frames are {frames.dtype} (values {lo:g}..{hi:g}), not uint8; pass "
                            f"--frame-scale S (frame_scale=S) to multiply them by S before rounding to uint8, e.g. "
                            f"{hint}")
    if not math.isfinite(lo) or not math.isfinite(hi):
        raise ImporterError(f"{where}: frames contain NaN or inf; repair them before importing")
    out = np.rint(frames.astype(np.float64) * scale)
    if out.size and (out.min() < 0 or out.max() > 255):
        raise ImporterError(f"{where}: with --frame-scale {scale:g} the frame values {lo:g}..{hi:g} become "
                            f"{out.min():g}..{out.max():g}, outside 0..255; pass a scale with max * scale <= 255")
    return out.astype(np.uint8)


def check_counts(num_frames: int, num_actions: int, source_stride: int, where: str) -> None:
    """Refuse (:class:`ImporterError`) unless ``num_actions`` is ``(F-1)*source_stride`` or ``F*source_stride``."""
    fits = ((num_frames - 1) * source_stride, num_frames * source_stride)
    if num_frames < 1 or num_actions not in fits:
        per = "one frame per control step" if source_stride == 1 else \
            f"one frame every {source_stride} control steps (--source-stride {source_stride})"
        raise ImporterError(
            f"{where}: {num_actions} actions do not fit {num_frames} frames: with {per}, {num_frames} frames take "
            f"{fits[0]} or {fits[1]} actions (one row per control step, none or one chunk after the last frame). "
            "Check that actions and frames line up; if the files store one frame every N control steps pass "
            "--source-stride N; if a final frame is stored apart pass --last-frame-key KEY")


def subsample(frames: np.ndarray, actions: np.ndarray, stride: int, extra: dict[str, Any],
              source_stride: int = 1) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Keep every ``stride``-th frame and the actions of whole chunks (see the schema's length rule).

    Input: frames one every ``source_stride`` control steps, actions one per control step (counts checked by
    :func:`check_counts`). The stored stride is ``source_stride * stride``. ``extra``: ``proprio`` (per frame) is
    subsampled with the frames; ``reward`` / ``success`` (per action) are cut with the actions.
    """
    kept = frames[::stride]
    f, step = kept.shape[0], source_stride * stride
    k = f * step if actions.shape[0] >= f * step else (f - 1) * step
    if actions.shape[0] < k:
        raise ImporterError(f"{actions.shape[0]} actions are too few for {f} frames at stride {step}")
    out = {name: (v[::stride] if name == "proprio" else v[:k]) for name, v in extra.items() if v is not None}
    return kept, actions[:k].astype(np.float32), out


def _get(container: Any, key: str | None) -> np.ndarray | None:
    if key is None:
        return None
    try:
        return np.asarray(container[key])
    except (KeyError, ValueError):
        return None


def _keys_of(container: Any) -> list[str]:
    try:
        return list(container.keys())
    except AttributeError:
        return []


def _read_npz(path: Path, keys: dict[str, str | None]) -> tuple[dict[str, np.ndarray | None], list[str]]:
    """The arrays ``keys`` of an ``.npz`` and the names it holds. Each member is read whole, so its zip CRC32 is
    verified (``np.load`` stops reading a member where its .npy header says the array ends, so a damaged header
    could shorten an array unnoticed); damage is an :class:`ImporterError` naming the file."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
            out: dict[str, np.ndarray | None] = {}
            for field_name, key in keys.items():
                if key is None or key not in members:
                    out[field_name] = None
                    continue
                data = zf.read(members[key])
                buf = io.BytesIO(data)
                arr = np.load(buf, allow_pickle=False)
                if buf.tell() != len(data):
                    raise ValueError(f"member {members[key]!r} holds {len(data) - buf.tell()} bytes after its array")
                out[field_name] = arr
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError, NotImplementedError) as exc:
        raise ImporterError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}); re-create it with "
                            "numpy.savez") from exc
    return out, sorted(members)


def iter_raw_episodes(src: str | os.PathLike, frames_key: str, actions_key: str, proprio_key: str | None,
                      reward_key: str | None, robomimic: bool, success_key: str | None = None,
                      last_frame_key: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(episode name, {"frames", "actions", "proprio", "reward", "success", "last_frame", "keys", "path"})`` for
    every episode under ``src``, sorted (``keys``: the entries the file holds)."""
    src = Path(src)
    entries = sorted(src.iterdir()) if src.is_dir() else [src]
    keys = {"frames": frames_key, "actions": actions_key, "proprio": proprio_key, "reward": reward_key,
            "success": success_key, "last_frame": last_frame_key}
    skipped = []
    for path in entries:
        suffix = path.suffix.lower()
        if suffix in (".hdf5", ".h5"):
            import h5py

            try:
                f = h5py.File(path, "r")
            except OSError as exc:
                raise ImporterError(f"{path}: not a readable HDF5 file ({exc})") from exc
            with f:
                if robomimic:
                    if "data" not in f:
                        raise ImporterError(f"{path}: no 'data' group, so not a robomimic file; drop --robomimic")
                    demos = sorted(f["data"].keys(), key=lambda s: int(s.split("_")[-1]) if s[-1].isdigit() else s)
                    for demo in demos:
                        g = f["data"][demo]
                        yield f"{path.stem}_{demo}", {**{k: _get(g, v) for k, v in keys.items()},
                                                      "keys": _keys_of(g), "path": f"{path}:data/{demo}"}
                else:
                    yield path.stem, {**{k: _get(f, v) for k, v in keys.items()}, "keys": _keys_of(f),
                                      "path": str(path)}
        elif suffix == ".npz":
            raw, names = _read_npz(path, keys)
            yield path.stem, {**raw, "keys": names, "path": str(path)}
        elif path.is_dir():
            if path.name == "meta" and (path / "info.json").exists():
                continue
            try:
                raw = {k: (np.load(path / f"{v}.npy", allow_pickle=False)
                           if v is not None and (path / f"{v}.npy").exists() else None) for k, v in keys.items()}
            except (OSError, ValueError) as exc:
                raise ImporterError(f"{path}: a .npy file cannot be read ({exc})") from exc
            yield path.name, {**raw, "keys": sorted(p.stem for p in path.glob("*.npy")), "path": str(path)}
        elif path.name not in ("info.json",):
            skipped.append(path.name)
    if skipped:
        log.warning("%s: ignored %d entries that are not episodes (.npz, .hdf5/.h5, folders of .npy): %s", src,
                    len(skipped), ", ".join(skipped[:10]))


def check_info_json(src: Path, control_hz: float, source_stride: int) -> None:
    """Refuse when ``src/info.json`` (or ``src/meta/info.json``) declares an ``fps`` (rate of the stored frames) or
    ``control_hz`` other than the options say."""
    if not src.is_dir():
        return
    frame_hz = control_hz / source_stride
    for path in (src / "info.json", src / "meta" / "info.json"):
        if not path.is_file():
            continue
        try:
            info = json.loads(path.read_text())
        except ValueError as exc:
            raise ImporterError(f"{path}: not valid JSON ({exc}); repair it or remove it") from exc
        if not isinstance(info, dict):
            continue
        for key, want, fix in (("fps", frame_hz, f"--control-hz {control_hz:g} with --source-stride {source_stride}"
                                                  f" stores frames at {frame_hz:g} Hz"),
                               ("control_hz", control_hz, f"--control-hz is {control_hz:g}")):
            if key in info:
                try:
                    got = float(info[key])
                except (TypeError, ValueError):
                    raise ImporterError(f"{path}: {key} {info[key]!r} is not a number") from None
                if not math.isclose(got, want, rel_tol=1e-6):
                    raise ImporterError(f"{path} says {key} {got:g} but {fix}; fix --control-hz (and "
                                        f"--source-stride) or the {key} in {path}")


def prepare_out(out: Path, overwrite: bool) -> bool:
    """Clear ``out`` for a new dataset; returns whether it existed (so an aborted import can remove it)."""
    if (out / MANIFEST).exists():
        if not overwrite:
            raise FileExistsError(f"{out} already holds a dataset ({out / MANIFEST}); pass --overwrite "
                                  "(overwrite=True) to replace it, or choose another --out")
        shutil.rmtree(out)
    return out.exists()


def abort_import(writer: DatasetWriter | None, out: Path, existed: bool) -> None:
    """Remove what a failed import wrote: its shards, and ``out`` itself if the import created it and it is empty."""
    if writer is not None:
        writer.abort()
    if not existed and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def _check_finite(arr: np.ndarray, name: str, where: str) -> None:
    if not np.isfinite(arr).all():
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ImporterError(f"{where}: {name} contain NaN or inf (first at index {first}); repair or drop the episode")


def _episode_arrays(raw: dict[str, Any], where: str, keys: dict[str, str | None], source_stride: int,
                    image_size: tuple[int, int], frame_scale: float | None) -> dict[str, Any]:
    """Check one raw episode's arrays against each other and return them ready for :func:`subsample`."""
    for name in ("frames", "actions"):
        if raw[name] is None:
            raise ImporterError(f"{where}: no {name} under key {keys[name]!r} (it holds {raw['keys']}); pass "
                                f"--{name}-key with the right name")
    if keys["last_frame"] is not None and raw["last_frame"] is None:
        raise ImporterError(f"{where}: no last frame under key {keys['last_frame']!r} (it holds {raw['keys']}); fix "
                            "--last-frame-key or leave it out")
    if keys["last_frame"] is None:
        stray = [k for k in raw["keys"] if k.rsplit("/", 1)[-1] in _LAST_FRAME_NAMES]
        if stray:
            raise ImporterError(f"{where}: holds {stray[0]!r}, a final observation that would be dropped; pass "
                                f"--last-frame-key {stray[0]} to append it as the last frame (T+1 frames for T "
                                "actions)")
    frames = np.asarray(raw["frames"])
    if raw["last_frame"] is not None:
        last = np.asarray(raw["last_frame"])
        last = last[None] if last.ndim == frames.ndim - 1 else last
        if last.shape[1:] != frames.shape[1:] or last.dtype != frames.dtype:
            raise ImporterError(f"{where}: the last frame {keys['last_frame']!r} has shape {last.shape[1:]} / dtype "
                                f"{last.dtype} but the frames are {frames.shape[1:]} / {frames.dtype}")
        frames = np.concatenate([frames, last])
    actions = np.asarray(raw["actions"])
    if actions.ndim == 1:
        actions = actions[:, None]
    if actions.ndim != 2 or not np.issubdtype(actions.dtype, np.number) or np.issubdtype(actions.dtype,
                                                                                           np.complexfloating):
        raise ImporterError(f"{where}: actions must be numbers [K, A], got {actions.dtype} {actions.shape}")
    actions = actions.astype(np.float32)
    if actions.shape[1] < 1:
        raise ImporterError(f"{where}: actions have no columns (shape {actions.shape}); check --actions-key")
    _check_finite(actions, "actions", where)
    if frames.ndim != 4:
        raise ImporterError(f"{where}: frames must be [F, H, W, 3], got shape {frames.shape}")
    check_counts(frames.shape[0], actions.shape[0], source_stride, where)
    extra: dict[str, Any] = {}
    if raw["proprio"] is not None:
        proprio = np.asarray(raw["proprio"], np.float32)
        proprio = proprio[:, None] if proprio.ndim == 1 else proprio
        if proprio.shape[0] != frames.shape[0]:
            raise ImporterError(f"{where}: proprio {keys['proprio']!r} has {proprio.shape[0]} rows for "
                                f"{frames.shape[0]} frames; it needs one row per frame")
        _check_finite(proprio, "proprio", where)
        extra["proprio"] = proprio
    if raw["reward"] is not None:
        reward = _per_action(np.asarray(raw["reward"], np.float32), "reward", keys, actions.shape[0], where)
        _check_finite(reward, "reward", where)
        extra["reward"] = reward
    if raw["success"] is not None:
        success = _per_action(np.asarray(raw["success"]), "success", keys, actions.shape[0], where)
        if success.dtype != bool and not np.isin(success, (0, 1)).all():
            raise ImporterError(f"{where}: success {keys['success']!r} holds values other than 0 or 1 "
                                f"({np.unique(success)[:5].tolist()}); store a per-step success flag")
        extra["success"] = success.astype(bool)
    frames = to_uint8_frames(frames, image_size, where, frame_scale)
    return {"frames": frames, "actions": actions, "extra": extra}


def _per_action(values: np.ndarray, name: str, keys: dict[str, Any], n_actions: int, where: str) -> np.ndarray:
    """``values`` flattened to one entry per action (control step); an ImporterError names the key otherwise."""
    flat = values.reshape(-1)
    if flat.shape[0] != n_actions:
        raise ImporterError(f"{where}: {name} {keys[name]!r} has {flat.shape[0]} entries for {n_actions} actions; "
                            "it needs one per action (control step)")
    return flat


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
    source_stride: int = 1,
    success_key: str | None = None,
    last_frame_key: str | None = None,
    frame_scale: float | None = None,
) -> dict[str, Any]:
    """Import every episode under ``src`` into a dataset at ``out``; returns the manifest (see module docstring).

    Args:
        src: a folder of episode files / folders, or one HDF5 / npz file.
        out: the dataset folder to write.
        embodiment: embodiment name.
        control_hz: control frequency (actions per second).
        stride: keep every ``stride``-th source frame (all actions are kept).
        frames_key, actions_key, proprio_key, reward_key, success_key: the keys of the arrays in each episode
            (reward and success: one entry per action; proprio: one row per frame).
        image_size: ``(H, W)`` of the stored frames.
        robomimic: read ``data/demo_*`` groups of HDF5 files.
        val_fraction: share of episodes in the val split, in ``[0, 1)``.
        encoding: ``"npy"`` or ``"mp4"`` frames.
        overwrite: replace a dataset already at ``out``.
        action_names: names of the action dimensions.
        source_stride: control steps per frame in the source files (1: one frame per control step).
        last_frame_key: key of a final observation stored apart from the frames (appended to them).
        frame_scale: multiply non-uint8 frames by this before rounding to uint8 (e.g. 255 for floats in [0, 1]).

    Raises:
        ImporterError: input that cannot be imported correctly (the message names the file and the fix); nothing
            is written.
        FileExistsError: ``out`` holds a dataset and ``overwrite`` is false.
    """
    from rich.progress import Progress

    stride = check_positive_int(stride, "--stride", "keep every N-th frame")
    source_stride = check_positive_int(source_stride, "--source-stride", "control steps per frame in the files")
    val_fraction = check_val_fraction(val_fraction)
    if frame_scale is not None and not (math.isfinite(frame_scale) and frame_scale > 0):
        raise ImporterError(f"--frame-scale must be a positive number, got {frame_scale!r}")
    if not (math.isfinite(control_hz) and control_hz > 0):
        raise ImporterError(f"--control-hz must be a positive number, got {control_hz!r}")
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src} not found: pass --src a folder of episode files or one .hdf5 / .npz file")
    check_info_json(src, control_hz, source_stride)
    frames_key = frames_key or ("obs/agentview_image" if robomimic else "frames")
    keys = {"frames": frames_key, "actions": actions_key, "proprio": proprio_key, "reward": reward_key,
            "success": success_key, "last_frame": last_frame_key}
    out = Path(out)
    existed = prepare_out(out, overwrite)
    writer = None
    n = 0
    found = {name: 0 for name in ("proprio", "reward", "success") if keys[name] is not None}
    try:
        with Progress() as bar:
            task = bar.add_task(f"importing {src}", total=None)
            for i, (name, raw) in enumerate(iter_raw_episodes(src, frames_key, actions_key, proprio_key, reward_key,
                                                              robomimic, success_key, last_frame_key)):
                where = f"{raw['path']} (episode {name!r})"
                arrays = _episode_arrays(raw, where, keys, source_stride, image_size, frame_scale)
                if writer is None:
                    info = EmbodimentInfo(embodiment, arrays["actions"].shape[1], control_hz,
                                          control_hz / (stride * source_stride), action_names=action_names,
                                          source=f"import:{src.name}")
                    writer = DatasetWriter(out, [info], image_size=image_size, encoding=encoding)
                elif arrays["actions"].shape[1] != writer.embodiments[embodiment].action_dim:
                    raise ImporterError(f"{where}: actions have {arrays['actions'].shape[1]} columns but the episodes "
                                        f"before have {writer.embodiments[embodiment].action_dim}; one embodiment has "
                                        "one action width")
                frames, actions, extra = subsample(arrays["frames"], arrays["actions"], stride, arrays["extra"],
                                                   source_stride)
                ep_id = "".join(c if c.isalnum() or c in "_-" else "_" for c in f"{embodiment}_{name}")
                writer.add(Episode(ep_id, embodiment, actions, frames=frames, meta={"source_file": name}, **extra),
                           split=split_for_index(i, val_fraction))
                n += 1
                bar.advance(task)
                for name in found:
                    found[name] += raw[name] is not None
        if writer is None:
            raise ImporterError(f"no episodes (.npz, .hdf5/.h5, folders of .npy) found under {src}")
        for name, count in found.items():
            option = "--proprio-key" if name == "proprio" else f"--{name}-key"
            if count == 0:
                raise ImporterError(f"{src}: no episode has a {name} array under key {keys[name]!r} ({option}); fix "
                                    f"{option} or leave it out")
            if count < n:
                log.warning("%s: %d of %d episodes have no %s under key %r; they are imported without it", src,
                            n - count, n, name, keys[name])
        manifest = writer.close(extra={"name": embodiment, "source": str(src)})
    except BaseException:
        abort_import(writer, out, existed)
        raise
    log.info("imported %d episodes from %s", n, src)
    return manifest
