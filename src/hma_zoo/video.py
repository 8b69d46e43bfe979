"""Write and read short videos: mp4 through PyAV (libx264) and GIF through PIL; side-by-side comparison strips.

PyAV is called directly: ``imageio`` with its pyav plugin is about 8x slower once torch is imported (measured, see
``ENVIRONMENT.md``). Frames are uint8 ``[T, H, W, 3]`` (numpy or torch).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch


def _as_frames(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` numpy array from numpy / torch input, with a clear error otherwise."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim == 3 and frames.shape[-1] == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"video frames must be [T, H, W, 3], got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise TypeError(f"video frames must be uint8, got {frames.dtype}; convert with .clip(0, 255).astype(uint8)")
    if frames.shape[0] == 0:
        raise ValueError("cannot write a video with no frames")
    return np.ascontiguousarray(frames)


def write_mp4(path: str | os.PathLike, frames: np.ndarray | torch.Tensor, fps: float = 10.0, crf: int = 18) -> Path:
    """Encode uint8 ``[T, H, W, 3]`` frames as H.264 (libx264, yuv420p) mp4. Odd sides are padded by one pixel
    (yuv420p needs even sizes). Returns the path."""
    import av

    arr = _as_frames(frames)
    h, w = arr.shape[1:3]
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = arr.shape[2], arr.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in arr:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_gif(path: str | os.PathLike, frames: np.ndarray | torch.Tensor, fps: float = 10.0, scale: int = 1) -> Path:
    """Write uint8 ``[T, H, W, 3]`` frames as a looping GIF (PIL), optionally upscaled ``scale`` x (nearest).

    GIF holds at most 256 colours per frame (PIL quantises), and PIL stores identical consecutive frames once with
    their durations added (playback timing is kept; a reader sees fewer frames).
    """
    from PIL import Image

    arr = _as_frames(frames)
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in arr]
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(int(round(1000 / fps)), 20), loop=0)
    return path


def save_video(path: str | os.PathLike, frames: np.ndarray | torch.Tensor, fps: float = 10.0) -> Path:
    """Write ``frames`` as mp4 or GIF depending on the suffix of ``path`` (``.mp4`` / ``.gif``)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".mp4":
        return write_mp4(path, frames, fps)
    if suffix == ".gif":
        return write_gif(path, frames, fps)
    raise ValueError(f"unsupported video suffix {suffix!r} in {path}; use .mp4 or .gif")


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Decode an mp4 (PyAV) or GIF (PIL) into uint8 ``[T, H, W, 3]`` (for checks and tests)."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        from PIL import Image, ImageSequence

        with Image.open(path) as im:
            return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def side_by_side(*videos: np.ndarray | torch.Tensor, gap: int = 2, gap_value: int = 255) -> np.ndarray:
    """Place videos of equal ``[T, H, W, 3]`` shape left to right (e.g. ground truth | prediction) with a
    ``gap``-pixel separator; returns uint8 ``[T, H, k*W + (k-1)*gap, 3]``."""
    arrs = [_as_frames(v) for v in videos]
    t, h = arrs[0].shape[:2]
    for a in arrs[1:]:
        if a.shape[:2] != (t, h):
            raise ValueError(f"videos to place side by side need the same [T, H]; got {[x.shape for x in arrs]}")
    sep = np.full((t, h, gap, 3), gap_value, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for i, a in enumerate(arrs):
        if i:
            parts.append(sep)
        parts.append(a)
    return np.concatenate(parts, axis=2)


def stack_rows(rows: Sequence[np.ndarray | torch.Tensor], gap: int = 2, gap_value: int = 255) -> np.ndarray:
    """Stack videos of equal ``[T, ., W, 3]`` top to bottom with a separator (several comparison strips in one GIF)."""
    arrs = [_as_frames(r) for r in rows]
    t, w = arrs[0].shape[0], arrs[0].shape[2]
    sep = np.full((t, gap, w, 3), gap_value, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for i, a in enumerate(arrs):
        if a.shape[0] != t or a.shape[2] != w:
            raise ValueError(f"rows need the same T and W; got {[x.shape for x in arrs]}")
        if i:
            parts.append(sep)
        parts.append(a)
    return np.concatenate(parts, axis=1)
