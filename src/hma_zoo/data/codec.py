"""Byte encodings of shard members: ``.npy`` arrays and PyAV ``.mp4`` video.

PyAV is called directly (not through imageio, which is ~8x slower once torch is imported, see ENVIRONMENT.md).
"""

from __future__ import annotations

import io

import numpy as np


def npy_bytes(arr: np.ndarray) -> bytes:
    """Serialise an array to ``.npy`` bytes (no pickling)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_load(data: bytes) -> np.ndarray:
    """Inverse of :func:`npy_bytes`; refuses pickled object arrays."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def mp4_bytes(frames: np.ndarray, fps: float = 10.0, crf: int = 18, pix_fmt: str = "yuv444p") -> bytes:
    """Encode uint8 frames ``[F, H, W, 3]`` (even ``H`` and ``W``) as H.264 in an mp4 container.

    ``yuv444p`` keeps colour at full resolution (mean absolute error ~3 on 64x64 dm_control frames at crf 18).
    """
    from fractions import Fraction

    import av

    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"mp4 encoding needs even frame sides, got {frames.shape[1:3]}; use encoding='npy'")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = pix_fmt
        stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "fastdecode"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def mp4_load(data: bytes | str, max_frames: int | None = None) -> np.ndarray:
    """Decode an mp4 (bytes or a file path) to uint8 ``[F, H, W, 3]``."""
    import av

    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    out = []
    with av.open(source, mode="r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            out.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(out) >= max_frames:
                break
    if not out:
        raise ValueError("video has no decodable frames")
    return np.stack(out)
