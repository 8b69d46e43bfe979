"""hma_zoo.video: mp4 / GIF round trips and comparison strips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hma_zoo.video import read_video, save_video, side_by_side, stack_rows, write_gif, write_mp4


def _clip(t: int = 6, h: int = 32, w: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.zeros((t, h, w, 3), dtype=np.uint8)
    for i in range(t):  # a bright square moving right on a smooth background: easy for h264
        base[i] = np.linspace(30, 90, w, dtype=np.uint8)[None, :, None]
        base[i, 8:16, 4 + 4 * i : 12 + 4 * i] = (220, 40, 40)
    return base + rng.integers(0, 2, base.shape, dtype=np.uint8)


def test_mp4_round_trip(tmp_path) -> None:
    clip = _clip()
    path = write_mp4(tmp_path / "a.mp4", torch.from_numpy(clip), fps=8)
    back = read_video(path)
    assert back.shape == clip.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - clip.astype(int)).mean() < 6  # lossy but close


def test_mp4_pads_odd_sizes(tmp_path) -> None:
    clip = _clip(h=31, w=47)
    back = read_video(write_mp4(tmp_path / "odd.mp4", clip))
    assert back.shape == (6, 32, 48, 3)


def test_gif_round_trip_and_scale(tmp_path) -> None:
    clip = np.zeros((4, 8, 8, 3), np.uint8)
    for i in range(4):  # distinct frames (PIL merges identical consecutive frames, adding their durations)
        clip[i, i : i + 2] = (200, 60 * i, 30)
    back = read_video(write_gif(tmp_path / "a.gif", clip))
    assert back.shape == clip.shape
    assert np.array_equal(back, clip)  # 4 colours fit the palette: exact
    assert read_video(write_gif(tmp_path / "b.gif", clip, scale=3)).shape == (4, 24, 24, 3)


def test_save_video_by_suffix(tmp_path) -> None:
    clip = _clip(t=3)
    assert read_video(save_video(tmp_path / "x.gif", clip)).shape == clip.shape
    assert read_video(save_video(tmp_path / "x.mp4", clip)).shape == clip.shape
    with pytest.raises(ValueError, match="suffix"):
        save_video(tmp_path / "x.avi", clip)
    with pytest.raises(TypeError, match="uint8"):
        save_video(tmp_path / "y.gif", clip.astype(np.float32))


def test_side_by_side_and_rows() -> None:
    a = np.zeros((3, 4, 5, 3), np.uint8)
    b = np.full((3, 4, 5, 3), 7, np.uint8)
    strip = side_by_side(a, b, gap=2)
    assert strip.shape == (3, 4, 12, 3)
    assert (strip[:, :, :5] == 0).all() and (strip[:, :, 5:7] == 255).all() and (strip[:, :, 7:] == 7).all()
    grid = stack_rows([strip, strip], gap=1)
    assert grid.shape == (3, 9, 12, 3)
    with pytest.raises(ValueError, match="same"):
        side_by_side(a, np.zeros((2, 4, 5, 3), np.uint8))
