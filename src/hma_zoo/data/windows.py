"""Windows of ``T`` frames and their action chunks (the batch contract's ``actions`` / ``action_valid``).

Stored frame ``f`` of an episode is the observation at control step ``f * s0`` (``s0`` = stored stride). A loader
may subsample stored frames by ``frame_skip`` ``k``, so one model frame spans ``stride = s0 * k`` control steps.
A window starting at stored frame ``f0`` holds frames ``f0, f0 + k, ..., f0 + (T-1)k``; its action row ``t`` is the
flattened chunk of control steps ``[(f0 + t k) s0, (f0 + (t+1) k) s0)`` (the ``stride`` actions executed after
frame ``t``), zero-padded on the right to ``A_max``; ``action_valid[t]`` is False when the episode has no such
complete chunk (after its last action). Windows never cross episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowSpec:
    """How windows are cut for one embodiment.

    Args:
        window: frames per window ``T``.
        action_dim: dimension of one control-step action.
        stored_stride: control steps per stored frame (from the manifest).
        frame_skip: stored frames per model frame (``>= 1``).
        hop: model frames between consecutive window starts (default ``window``: non-overlapping windows,
            as in the paper's ``filter_overlaps``).
    """

    window: int
    action_dim: int
    stored_stride: int = 1
    frame_skip: int = 1
    hop: int | None = None

    def __post_init__(self) -> None:
        if self.window < 1 or self.frame_skip < 1 or self.stored_stride < 1 or (self.hop is not None and self.hop < 1):
            raise ValueError(f"WindowSpec needs window, frame_skip, stored_stride, hop >= 1, got {self}")

    @property
    def stride(self) -> int:
        """Control steps per model frame."""
        return self.stored_stride * self.frame_skip

    @property
    def chunk_dim(self) -> int:
        return self.stride * self.action_dim

    @property
    def step(self) -> int:
        """Stored frames between window starts."""
        return (self.hop or self.window) * self.frame_skip


def num_windows(num_frames: int, spec: WindowSpec, offset: int = 0) -> int:
    """How many windows fit in an episode of ``num_frames`` stored frames, starting at stored frame ``offset``."""
    span = (spec.window - 1) * spec.frame_skip
    if num_frames - 1 - offset < span:
        return 0
    return (num_frames - 1 - offset - span) // spec.step + 1


def window_starts(num_frames: int, spec: WindowSpec, offset: int = 0) -> np.ndarray:
    """Stored-frame indices at which windows start (``offset`` shifts the grid; ``0 <= offset < spec.step``)."""
    return offset + spec.step * np.arange(num_windows(num_frames, spec, offset))


def extract_window(visual: np.ndarray, actions: np.ndarray, start: int, spec: WindowSpec,
                   a_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut one window.

    Args:
        visual: frames ``[F, H, W, 3]`` or tokens ``[F, ...]`` of the episode.
        actions: ``[K, action_dim]`` control-step actions of the episode.
        start: stored frame index of the window's first frame.
        spec: the embodiment's :class:`WindowSpec`.
        a_max: padded width of the action rows (``>= spec.chunk_dim``).

    Returns:
        ``visual [T, ...]``, ``actions float32 [T, a_max]``, ``action_valid bool [T]``.
    """
    T, k, s0 = spec.window, spec.frame_skip, spec.stored_stride
    idx = start + k * np.arange(T)
    if idx[-1] >= visual.shape[0]:
        raise IndexError(f"window at {start} needs frame {idx[-1]} but the episode has {visual.shape[0]}")
    if a_max < spec.chunk_dim:
        raise ValueError(f"a_max {a_max} is smaller than this embodiment's chunk {spec.chunk_dim}")
    out = np.zeros((T, a_max), np.float32)
    valid = np.zeros(T, bool)
    first = idx[0] * s0
    n_full = min(T, max(0, (actions.shape[0] - first) // spec.stride))
    if n_full:
        chunk = actions[first:first + n_full * spec.stride].reshape(n_full, spec.chunk_dim)
        out[:n_full, : spec.chunk_dim] = chunk
        valid[:n_full] = True
    return visual[idx], out, valid
