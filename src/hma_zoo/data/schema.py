"""What one episode and one embodiment look like on disk, and the checks every write goes through.

An :class:`Episode` holds one trajectory of one embodiment:

* ``frames``: uint8 ``[F, H, W, 3]`` video frames (episode shards), or ``tokens``: ``[F, h, w]`` integer ids /
  ``[F, h, w, c]`` float latents (token shards);
* ``actions``: float32 ``[K, A]``, one row per control step; frame ``i`` is the observation at control step
  ``i * stride``, so the actions executed between frame ``i`` and ``i + 1`` are rows ``[i*stride, (i+1)*stride)``.
  ``K`` must be ``(F - 1) * stride`` (no action after the last frame) or ``F * stride`` (one more chunk);
* optional ``proprio`` float32 ``[F, P]`` (state at each frame), ``reward`` float32 ``[K]`` and ``success``
  bool ``[K]`` (per control step).

An :class:`EmbodimentInfo` describes a robot: action dimension and names, control and frame frequencies (their
ratio is the stored ``stride``), camera and image size. :func:`validate_episode` refuses NaN/inf, wrong shapes
or dtypes, mismatched lengths and unknown embodiments with an :class:`EpisodeError` naming the episode and the
field.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

FORMAT_VERSION = 1


class EpisodeError(ValueError):
    """An episode (or one of its fields) is invalid; the message names the episode, the field and a fix."""

    def __init__(self, episode_id: str, field_name: str, problem: str) -> None:
        self.episode_id = episode_id
        self.field_name = field_name
        super().__init__(f"episode {episode_id!r}, field {field_name!r}: {problem}")


class ImporterError(ValueError):
    """An importer refuses its input: a layout or version it cannot read correctly, counts that do not fit, values
    it would have to change silently. The message names the file, the problem and the fix; nothing is written."""


@dataclass(frozen=True)
class EmbodimentInfo:
    """A robot as recorded in a dataset.

    Args:
        name: unique embodiment name (``[A-Za-z0-9_.-]``), e.g. ``"dmc_cheetah"``.
        action_dim: dimension of one control-step action.
        control_hz: control frequency (actions per second).
        frame_hz: stored video frequency; ``control_hz / frame_hz`` must be a positive integer, the ``stride``.
        action_names: optional names of the action dimensions (length ``action_dim``).
        camera: camera name (free text).
        source: where the data came from (simulator id, importer).
    """

    name: str
    action_dim: int
    control_hz: float
    frame_hz: float
    action_names: tuple[str, ...] = ()
    camera: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "action_names", tuple(str(n) for n in self.action_names))
        if not self.name or not all(c.isalnum() or c in "_.-" for c in self.name):
            raise ValueError(f"embodiment name {self.name!r} must be non-empty and use only letters, digits, _ . -")
        if int(self.action_dim) < 1:
            raise ValueError(f"embodiment {self.name!r}: action_dim must be >= 1, got {self.action_dim}")
        object.__setattr__(self, "action_dim", int(self.action_dim))
        if self.control_hz <= 0 or self.frame_hz <= 0:
            raise ValueError(f"embodiment {self.name!r}: control_hz and frame_hz must be positive")
        ratio = self.control_hz / self.frame_hz
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(
                f"embodiment {self.name!r}: control_hz {self.control_hz} / frame_hz {self.frame_hz} = {ratio} is not "
                "a positive integer; record one frame every N control steps"
            )
        if self.action_names and len(self.action_names) != self.action_dim:
            raise ValueError(
                f"embodiment {self.name!r}: {len(self.action_names)} action_names for action_dim {self.action_dim}"
            )

    @property
    def stride(self) -> int:
        """Control steps per stored frame."""
        return round(self.control_hz / self.frame_hz)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbodimentInfo:
        keys = {"name", "action_dim", "control_hz", "frame_hz", "action_names", "camera", "source"}
        return cls(**{k: v for k, v in d.items() if k in keys})


@dataclass
class Episode:
    """One trajectory of one embodiment (see the module docstring for shapes)."""

    episode_id: str
    embodiment: str
    actions: np.ndarray
    frames: np.ndarray | None = None
    tokens: np.ndarray | None = None
    proprio: np.ndarray | None = None
    reward: np.ndarray | None = None
    success: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        visual = self.frames if self.frames is not None else self.tokens
        return 0 if visual is None else int(visual.shape[0])


def _check_finite(ep_id: str, name: str, arr: np.ndarray) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise EpisodeError(ep_id, name, f"contains NaN or inf (first at index {tuple(int(i) for i in bad)}); "
                           "drop or repair the episode before writing")


def _check_array(ep_id: str, name: str, arr: Any, ndim: int, dtypes: tuple[type, ...]) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise EpisodeError(ep_id, name, f"must be a numpy array, got {type(arr).__name__}")
    if arr.ndim != ndim:
        raise EpisodeError(ep_id, name, f"must have {ndim} dimensions, got shape {arr.shape}")
    if not any(np.issubdtype(arr.dtype, d) for d in dtypes):
        want = " or ".join(d.__name__ for d in dtypes)
        raise EpisodeError(ep_id, name, f"has dtype {arr.dtype}, expected {want}; convert it with .astype()")
    _check_finite(ep_id, name, arr)
    return arr


def validate_episode(
    ep: Episode,
    embodiments: dict[str, EmbodimentInfo],
    image_size: tuple[int, int] | None = None,
    token_shape: tuple[int, ...] | None = None,
) -> None:
    """Refuse a bad episode with an :class:`EpisodeError` naming the episode and the field.

    Args:
        ep: the episode.
        embodiments: the embodiments the dataset declares; ``ep.embodiment`` must be one of them.
        image_size: expected ``(H, W)`` of ``frames`` (checked when given).
        token_shape: expected per-frame shape of ``tokens`` (checked when given).
    """
    eid = str(ep.episode_id)
    if not eid or "." in eid or "/" in eid:
        raise EpisodeError(eid, "episode_id", "must be non-empty and contain no '.' or '/' (it is a tar key)")
    if ep.embodiment not in embodiments:
        raise EpisodeError(eid, "embodiment", f"unknown embodiment {ep.embodiment!r}; the dataset declares "
                           f"{sorted(embodiments)}. Declare it when creating the writer")
    info = embodiments[ep.embodiment]
    if (ep.frames is None) == (ep.tokens is None):
        raise EpisodeError(eid, "frames", "an episode needs exactly one of frames (episode shards) or tokens")
    if ep.frames is not None:
        frames = _check_array(eid, "frames", ep.frames, 4, (np.uint8,))
        if frames.shape[-1] != 3:
            raise EpisodeError(eid, "frames", f"must be [F, H, W, 3] RGB, got shape {frames.shape}")
        if image_size is not None and tuple(frames.shape[1:3]) != tuple(image_size):
            raise EpisodeError(eid, "frames", f"are {tuple(frames.shape[1:3])} but the dataset is {tuple(image_size)};"
                               " resize the frames or write a separate dataset")
        n_frames = frames.shape[0]
    else:
        tokens = ep.tokens
        if not isinstance(tokens, np.ndarray) or tokens.ndim not in (3, 4):
            raise EpisodeError(eid, "tokens", "must be a numpy array [F, h, w] (ids) or [F, h, w, c] (latents)")
        _check_array(eid, "tokens", tokens, tokens.ndim, (np.integer, np.floating))
        if token_shape is not None and tuple(tokens.shape[1:]) != tuple(token_shape):
            raise EpisodeError(eid, "tokens", f"per-frame shape {tuple(tokens.shape[1:])} != dataset {token_shape}")
        n_frames = tokens.shape[0]
    if n_frames < 1:
        raise EpisodeError(eid, "frames", "episode has no frames")
    actions = _check_array(eid, "actions", ep.actions, 2, (np.floating,))
    if actions.shape[1] != info.action_dim:
        raise EpisodeError(eid, "actions", f"has {actions.shape[1]} columns but embodiment {info.name!r} has "
                           f"action_dim {info.action_dim}")
    s = info.stride
    if actions.shape[0] not in ((n_frames - 1) * s, n_frames * s):
        raise EpisodeError(eid, "actions", f"has {actions.shape[0]} rows but {n_frames} frames at stride {s} need "
                           f"{(n_frames - 1) * s} or {n_frames * s} (one row per control step)")
    if ep.proprio is not None:
        proprio = _check_array(eid, "proprio", ep.proprio, 2, (np.floating,))
        if proprio.shape[0] != n_frames:
            raise EpisodeError(eid, "proprio", f"has {proprio.shape[0]} rows, expected one per frame ({n_frames})")
    for name in ("reward", "success"):
        arr = getattr(ep, name)
        if arr is None:
            continue
        dtypes = (np.floating,) if name == "reward" else (np.bool_, np.integer)
        arr = _check_array(eid, name, arr, 1, dtypes)
        if arr.shape[0] != actions.shape[0]:
            raise EpisodeError(eid, name, f"has {arr.shape[0]} entries, expected one per action ({actions.shape[0]})")
    try:
        json.dumps(ep.meta)
    except (TypeError, ValueError) as exc:
        raise EpisodeError(eid, "meta", f"is not JSON-serialisable: {exc}") from exc


@dataclass
class ActionStats:
    """Running per-dimension statistics of actions (count, mean, M2, min, max); mergeable across workers."""

    dim: int
    count: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    min: np.ndarray | None = None
    max: np.ndarray | None = None

    def update(self, actions: np.ndarray) -> None:
        """Add rows of ``actions`` ``[K, dim]``."""
        if actions.shape[0] == 0:
            return
        a = actions.astype(np.float64)
        other = ActionStats(self.dim, a.shape[0], a.mean(0), ((a - a.mean(0)) ** 2).sum(0), a.min(0), a.max(0))
        self.merge(other)

    def merge(self, o: ActionStats) -> None:
        """Combine with another accumulator (Chan et al. parallel variance)."""
        if o.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2, self.min, self.max = o.count, o.mean, o.m2, o.min, o.max
            return
        n = self.count + o.count
        delta = o.mean - self.mean
        self.mean = self.mean + delta * o.count / n
        self.m2 = self.m2 + o.m2 + delta**2 * self.count * o.count / n
        self.min = np.minimum(self.min, o.min)
        self.max = np.maximum(self.max, o.max)
        self.count = n

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.count, 1))

    def to_dict(self) -> dict[str, Any]:
        if self.count == 0:
            zeros = [0.0] * self.dim
            return {"count": 0, "mean": zeros, "std": [1.0] * self.dim, "min": zeros, "max": zeros, "m2": zeros}
        return {"count": int(self.count), "mean": self.mean.tolist(), "std": self.std.tolist(),
                "min": self.min.tolist(), "max": self.max.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_dict(cls, dim: int, d: dict[str, Any]) -> ActionStats:
        if not d.get("count"):
            return cls(dim)
        arr = {k: np.asarray(d[k], dtype=np.float64) for k in ("mean", "min", "max")}
        m2 = np.asarray(d["m2"], dtype=np.float64) if "m2" in d else np.asarray(d["std"]) ** 2 * d["count"]
        return cls(dim, int(d["count"]), arr["mean"], m2, arr["min"], arr["max"])


def split_for_index(index: int, val_fraction: float) -> str:
    """Deterministic train/val assignment by an episode's index within its embodiment.

    Every ``round(1 / val_fraction)``-th episode (indices ``period-1, 2*period-1, ...``) goes to ``"val"``, so an
    embodiment with at least ``period`` episodes always has validation data. ``val_fraction=0`` keeps all in train.
    """
    check_val_fraction(val_fraction)
    if val_fraction <= 0:
        return "train"
    period = max(2, round(1.0 / val_fraction))
    return "val" if index % period == period - 1 else "train"


def check_val_fraction(val_fraction: float, option: str = "--val-fraction") -> float:
    """``val_fraction`` as a float in ``[0, 1)``, else an :class:`ImporterError` naming ``option``."""
    try:
        value = float(val_fraction)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value < 1.0:  # also refuses NaN
        raise ImporterError(f"{option} {val_fraction!r} is outside [0, 1): it is the share of episodes put in the val "
                            "split, e.g. 0.1 (0 keeps every episode in train)")
    return value


def check_positive_int(value: int, option: str, meaning: str = "") -> int:
    """``value`` as an int >= 1, else an :class:`ImporterError` naming ``option`` (and what it means)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ImporterError(f"{option} must be a whole number >= 1, got {value!r}" + (f" ({meaning})" if meaning
                                                                                      else ""))
    return int(value)
