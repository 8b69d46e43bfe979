"""Action-following state probe: a per-embodiment image regressor from video frames to the stored ``proprio`` state.

A world model follows its actions when the object the actions move ends up where the real one would. The probe
makes that measurable: it is trained on the *real* frames of a dataset to read the low-dimensional state
(``Episode.proprio``, e.g. the Push-T agent position or the Sawyer hand position) back from the pixels. Applied to
*generated* frames, its error against the true state is the ``state_error`` metric of ``hma-zoo evaluate``. The
probe's own error on real validation frames is its *floor*: a world model cannot score below it, and a score near
it means the generated frames put the state where the real frames do.

Design (see docs/evaluation_probe.md):

* one timm backbone trained from scratch (nothing is downloaded) whose classifier has ``sum(widths)`` outputs;
  each embodiment reads its own slice of them, i.e. one shared trunk with one linear head per embodiment;
* outputs are in normalised units (per-dim train mean/std); the loss is their MSE;
* ``context=2`` feeds frame ``t-1`` and frame ``t`` channel-concatenated (frame 0 uses itself twice), so
  velocities are observable; ``context=1`` feeds frame ``t`` alone;
* training reads all train-split frames into memory once (uint8) and samples minibatches that mix embodiments
  (each embodiment equally likely); it stops on the step count.

Command line::

    hma-zoo probe fit --data data/sim-mix-mini [--out DIR] [--steps 1500] [--dims pusht:0,1] [--threads 1]
    hma-zoo probe show data/sim-mix-mini/probe
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hma_zoo import hub
from hma_zoo.data.loader import build_components
from hma_zoo.data.shards import is_url, iter_episodes, load_manifest

log = logging.getLogger(__name__)

KIND = "state_probe"
STD_MIN = 1e-6
HOLDOUT_FRACTION = 0.1
DEFAULT_DIR = "probe"

# Names of the proprio entries the sim-mix sources of this repo store (used when the width matches exactly).
_CHEETAH = ("rootz", "rooty", "bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")
_SAWYER_CURR = ("hand_x", "hand_y", "hand_z", "gripper", "obj0_x", "obj0_y", "obj0_z", "obj0_q0", "obj0_q1",
                "obj0_q2", "obj0_q3", "obj1_x", "obj1_y", "obj1_z", "obj1_q0", "obj1_q1", "obj1_q2", "obj1_q3")
KNOWN_STATE_NAMES: dict[str, tuple[str, ...]] = {
    "pusht": ("agent_x", "agent_y"),
    "dmc_cartpole": ("cart_x", "pole_cos", "pole_sin", "cart_vel", "pole_angvel"),
    "dmc_cheetah": _CHEETAH + ("v_rootx",) + tuple("v_" + n for n in _CHEETAH),
    "metaworld_sawyer": _SAWYER_CURR + tuple("prev_" + n for n in _SAWYER_CURR) + ("goal_x", "goal_y", "goal_z"),
}

# The state the actions move, for the sources of this repo (used when no --dims is given and the width matches the
# names above): the Push-T agent, the cart-pole's and cheetah's joint positions (velocities and the unobserved root x
# left out), the Sawyer hand. Any other embodiment regresses all its non-constant proprio dims.
KNOWN_CONTROLLED_DIMS: dict[str, tuple[int, ...]] = {
    "pusht": (0, 1),
    "dmc_cartpole": (0, 1, 2),
    "dmc_cheetah": tuple(range(8)),
    "metaworld_sawyer": (0, 1, 2),
}


class ProbeInputError(ValueError):
    """Bad input to :func:`fit_probe` (missing data, unknown embodiment, bad dims); the message names the fix."""


# ------------------------------------------------------------------------------------------------------ targets
@dataclass(frozen=True)
class ProbeTarget:
    """The state one embodiment's head regresses.

    Args:
        name: embodiment name.
        dims: indices into the stored proprio vector that the probe regresses.
        mean: per selected dim, over the train split.
        std: per selected dim, over the train split (clamped to ``>= 1e-6``).
        state_names: optional names of the selected dims.
    """

    name: str
    dims: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    state_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(max(float(s), STD_MIN) for s in self.std))
        object.__setattr__(self, "state_names", tuple(str(n) for n in self.state_names))
        if not self.dims:
            raise ValueError(f"probe target {self.name!r}: needs at least one dim")
        if min(self.dims) < 0:
            raise ValueError(f"probe target {self.name!r}: dims must be >= 0, got {self.dims}")
        if len(self.mean) != len(self.dims) or len(self.std) != len(self.dims):
            raise ValueError(f"probe target {self.name!r}: {len(self.dims)} dims but {len(self.mean)} means and "
                             f"{len(self.std)} stds; give one of each per dim")
        if self.state_names and len(self.state_names) != len(self.dims):
            raise ValueError(f"probe target {self.name!r}: {len(self.state_names)} state_names for "
                             f"{len(self.dims)} dims")

    @property
    def width(self) -> int:
        """Number of regressed dims."""
        return len(self.dims)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (lists) for ``config.json``."""
        return {"name": self.name, "dims": list(self.dims), "mean": list(self.mean), "std": list(self.std),
                "state_names": list(self.state_names)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProbeTarget:
        """Inverse of :meth:`to_dict`."""
        return cls(d["name"], tuple(d["dims"]), tuple(d["mean"]), tuple(d["std"]), tuple(d.get("state_names", ())))


# ------------------------------------------------------------------------------------------------------ inputs
def _stack_to_input(stacked: Tensor, image_size: tuple[int, int]) -> Tensor:
    """uint8 ``[N, C, H, W, 3]`` (C context frames, oldest first) -> float ``[N, 3C, h, w]`` in ``[-1, 1]``."""
    n, c, h, w, _ = stacked.shape
    x = stacked.permute(0, 1, 4, 2, 3).reshape(n, 3 * c, h, w).float().div_(127.5).sub_(1.0)
    if (h, w) != tuple(image_size):
        x = F.interpolate(x, size=tuple(image_size), mode="bilinear", align_corners=False, antialias=True)
    return x


def context_frames(frames: Tensor, context: int) -> Tensor:
    """The context stack of every frame of a video: ``[B, T, H, W, 3]`` -> ``[B, T, context, H, W, 3]``.

    With ``context=2`` entry ``[:, t]`` is ``(frame t-1, frame t)`` and frame 0 uses itself twice;
    with ``context=1`` it is ``(frame t,)``.
    """
    if context == 1:
        return frames.unsqueeze(2)
    if context != 2:
        raise ValueError(f"context must be 1 or 2 frames, got {context}")
    prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    return torch.stack([prev, frames], dim=2)


def probe_inputs(frames: Tensor, context: int, image_size: tuple[int, int]) -> Tensor:
    """Network input of every frame of a batch of videos.

    Args:
        frames: uint8 ``[B, T, H, W, 3]``.
        context: 1 or 2 frames (see :func:`context_frames`).
        image_size: ``(h, w)`` the backbone sees; other sizes are resized (bilinear).

    Returns:
        float ``[B*T, 3*context, h, w]`` in ``[-1, 1]``; channels ``0:3`` are the oldest frame.
    """
    stacked = context_frames(frames, context)
    b, t = stacked.shape[:2]
    return _stack_to_input(stacked.reshape(b * t, *stacked.shape[2:]), image_size)


def _check_frames(frames: Tensor, names: Sequence[str]) -> None:
    if not isinstance(frames, Tensor) or frames.dtype != torch.uint8:
        got = frames.dtype if isinstance(frames, Tensor) else type(frames).__name__
        raise TypeError(f"the probe reads uint8 frames [B, T, H, W, 3], got {got}; convert float frames in [-1, 1] "
                        "with ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)")
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"the probe reads frames [B, T, H, W, 3] (a video per sample), got {tuple(frames.shape)}; "
                         "add a time axis with frames[:, None] for single images")
    if len(names) != frames.shape[0]:
        raise ValueError(f"{len(names)} embodiment names for a batch of {frames.shape[0]} videos; give one per video")


# ------------------------------------------------------------------------------------------------------ model
class StateProbe(nn.Module):
    """Frames -> low-dimensional state of their embodiment (see the module docstring for the design).

    Args:
        targets: one :class:`ProbeTarget` per embodiment.
        backbone: timm model name, built with ``pretrained=False`` (e.g. ``"test_resnet"``, ``"resnet18"``).
        image_size: ``(h, w)`` the backbone sees; frames of another size are resized (bilinear).
        context: frames per input: 1 (frame ``t``) or 2 (frames ``t-1`` and ``t``, so velocities are observable).

    The backbone's classifier has ``sum(target widths)`` outputs; embodiment ``k`` reads its own contiguous slice,
    which is one linear head per embodiment on shared features. Outputs are in normalised units.
    :attr:`meta` holds the metadata saved with the probe (the floor among it).
    """

    hub_kind = KIND

    def __init__(self, targets: Sequence[ProbeTarget], backbone: str = "test_resnet",
                 image_size: tuple[int, int] = (64, 64), context: int = 2) -> None:
        super().__init__()
        import timm

        targets = tuple(targets)
        if not targets:
            raise ValueError("StateProbe needs at least one ProbeTarget")
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ValueError(f"StateProbe targets must have distinct embodiment names, got {names}")
        if context not in (1, 2):
            raise ValueError(f"context must be 1 or 2 frames, got {context}")
        self.targets, self.backbone_name, self.context = targets, str(backbone), int(context)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.meta: dict[str, Any] = {}
        self._index = {t.name: k for k, t in enumerate(targets)}
        widths = [t.width for t in targets]
        self.p_max = max(widths)
        try:
            self.net = timm.create_model(self.backbone_name, pretrained=False, num_classes=sum(widths),
                                         in_chans=3 * self.context)
        except RuntimeError as exc:
            raise ValueError(f"unknown timm backbone {backbone!r} ({exc}); list names with timm.list_models()") from exc
        # Per-embodiment lookup tables [K, P_max] (derived from the config, so not saved with the weights).
        k, p = len(targets), self.p_max
        cols, dims = torch.zeros(k, p, dtype=torch.long), torch.zeros(k, p, dtype=torch.long)
        mean, std, mask = torch.zeros(k, p), torch.ones(k, p), torch.zeros(k, p, dtype=torch.bool)
        offset = 0
        for i, t in enumerate(targets):
            w = t.width
            cols[i, :w] = torch.arange(offset, offset + w)
            dims[i, :w] = torch.tensor(t.dims)
            mean[i, :w], std[i, :w], mask[i, :w] = torch.tensor(t.mean), torch.tensor(t.std), True
            offset += w
        for name, buf in (("_cols", cols), ("_dims", dims), ("_mean", mean), ("_std", std), ("_mask", mask)):
            self.register_buffer(name, buf, persistent=False)

    @property
    def embodiments(self) -> tuple[str, ...]:
        """Embodiment names the probe has a head for."""
        return tuple(t.name for t in self.targets)

    def config(self) -> dict[str, Any]:
        """JSON config that rebuilds this probe (``config.json``)."""
        return {"targets": [t.to_dict() for t in self.targets], "backbone": self.backbone_name,
                "image_size": list(self.image_size), "context": self.context}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> StateProbe:
        """Inverse of :meth:`config`."""
        return cls([ProbeTarget.from_dict(t) for t in config["targets"]], config["backbone"],
                   tuple(config["image_size"]), int(config["context"]))

    def head_index(self, names: Sequence[str]) -> Tensor:
        """Embodiment names -> head indices ``[B]`` (long); KeyError naming the known embodiments."""
        try:
            return torch.tensor([self._index[n] for n in names], dtype=torch.long, device=self._cols.device)
        except KeyError as exc:
            raise KeyError(f"the probe has no head for embodiment {exc.args[0]!r}; it knows {list(self.embodiments)}."
                           " Fit a probe on a dataset holding that embodiment (hma-zoo probe fit)") from None

    def forward(self, x: Tensor) -> Tensor:
        """Backbone on inputs ``[N, 3*context, h, w]`` (see :func:`probe_inputs`) -> all heads ``[N, sum widths]``."""
        return self.net(x)

    def select(self, out: Tensor, heads: Tensor) -> Tensor:
        """Each sample's own head: ``out [N, sum widths]``, ``heads [N]`` -> normalised ``[N, P_max]`` (0-padded)."""
        return out.gather(1, self._cols[heads]) * self._mask[heads]

    @torch.no_grad()
    def predict(self, frames: Tensor, names: list[str], chunk_frames: int = 512) -> Tensor:
        """State of every frame of a batch of videos, in raw (stored proprio) units.

        Args:
            frames: uint8 ``[B, T, H, W, 3]``, one video per sample (frame ``t-1`` is context of frame ``t``).
            names: embodiment of each video (``B`` names).
            chunk_frames: frames per backbone call (bounds memory).

        Returns:
            float ``[B, T, P_max]``: the selected dims of each embodiment, zero-padded past its width.
        """
        _check_frames(frames, names)
        heads = self.head_index(names)
        b, t = frames.shape[:2]
        device = self._cols.device
        was_training = self.training
        self.eval()
        try:
            per = max(1, chunk_frames // max(t, 1))
            out = []
            for i in range(0, b, per):
                x = probe_inputs(frames[i:i + per].to(device), self.context, self.image_size)
                h = heads[i:i + per].repeat_interleave(t)
                norm = self.select(self(x), h)
                out.append((norm * self._std[h] + self._mean[h]) * self._mask[h])
        finally:
            self.train(was_training)
        return torch.cat(out).reshape(b, t, self.p_max)

    def state_error(self, frames: Tensor, state: Tensor, names: list[str]) -> tuple[Tensor, Tensor]:
        """Per-frame error of the probe's reading of ``frames`` against the true state.

        Args:
            frames: uint8 ``[B, T, H, W, 3]`` (real or generated videos).
            state: true state ``[B, T, P_any]`` in the stored proprio layout (the full proprio vector, zero-padded
                past each embodiment's width); the probe selects its dims.
            names: embodiment of each video.

        Returns:
            ``(raw, normalised)``, each float ``[B, T]``: per frame the RMS over the selected dims of
            ``pred - true`` in raw units, and of ``(pred - true) / std``.
        """
        _check_frames(frames, names)
        if state.ndim != 3 or tuple(state.shape[:2]) != tuple(frames.shape[:2]):
            raise ValueError(f"state must be [B, T, P] matching frames {tuple(frames.shape[:2])}, got "
                             f"{tuple(state.shape)}")
        heads = self.head_index(names)
        need = max(max(self.targets[int(k)].dims) for k in heads) + 1
        if state.shape[-1] < need:
            raise ValueError(f"state has {state.shape[-1]} dims but the probe reads proprio dims up to {need - 1}; "
                             "pass the full stored proprio vector, zero-padded to the widest embodiment")
        pred = self.predict(frames, names)
        dims = self._dims[heads][:, None, :].expand(-1, state.shape[1], -1)
        true = state.to(pred.device, torch.float32).gather(-1, dims)
        mask = self._mask[heads][:, None, :]
        diff = (pred - true) * mask
        width = mask.sum(-1).float()
        raw = (diff.square().sum(-1) / width).sqrt()
        normalised = ((diff / self._std[heads][:, None, :]).square().sum(-1) / width).sqrt()
        return raw, normalised


def _build(config: dict[str, Any]) -> nn.Module:
    return StateProbe.from_config(config)


hub.register_kind(KIND, _build, lambda m: m.config())


def save_probe(probe: StateProbe, directory: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` (config + ``meta``, the floor among it) and ``model.safetensors`` to ``directory``.

    ``meta`` defaults to ``probe.meta``. Returns the folder.
    """
    return hub.save_pretrained(probe, directory, meta=probe.meta if meta is None else meta)


def load_probe(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> StateProbe:
    """Rebuild a probe saved by :func:`save_probe` (JSON + safetensors, never unpickles); ``probe.meta`` is its meta.

    Returns the probe in eval mode.
    """
    from safetensors.torch import load_file

    folder = Path(directory)
    if not (folder / hub.CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{folder} has no {hub.CONFIG_NAME}: is it a probe folder? Fit one with "
                                "`hma-zoo probe fit --data DATA`")
    payload = hub.read_config(folder)
    if payload["hma_zoo_kind"] != KIND:
        raise ValueError(f"{folder} holds a {payload['hma_zoo_kind']!r}, not a state probe ({KIND!r})")
    probe = StateProbe.from_config(payload["config"])
    probe.load_state_dict(load_file(str(folder / hub.WEIGHTS_NAME), device="cpu"))
    probe.meta = payload.get("meta", {})
    return probe.to(map_location).eval()


def probe_floor(probe: StateProbe) -> dict[str, dict[str, float]]:
    """The probe's own error on held-out real frames: ``{embodiment: {"raw", "normalised", "frames"}}``.

    ``raw`` / ``normalised`` are means over frames of the per-frame RMS (as :meth:`StateProbe.state_error`
    returns them). Empty when the probe was not fit by :func:`fit_probe`.
    """
    floor = probe.meta.get("floor", {}) if isinstance(getattr(probe, "meta", None), dict) else {}
    return {name: {"raw": float(f["raw"]), "normalised": float(f["normalised"]), "frames": float(f["frames"])}
            for name, f in floor.items()}


# ------------------------------------------------------------------------------------------------------ data
@dataclass
class _Frames:
    """One embodiment's frames in memory: ``frames`` uint8 ``[N, H, W, 3]``, ``prev`` int64 ``[N]`` (index of the
    previous frame of the same episode, itself at an episode's first frame), ``state`` float32 ``[N, P]`` and
    ``episodes`` (start, length) per episode."""

    frames: np.ndarray
    prev: np.ndarray
    state: np.ndarray
    episodes: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def concat(cls, eps: Sequence[tuple[np.ndarray, np.ndarray]]) -> _Frames:
        frames, prev, state, spans, n = [], [], [], [], 0
        for f, p in eps:
            k = f.shape[0]
            frames.append(f)
            state.append(p)
            prev.append(n + np.maximum(np.arange(k) - 1, 0))
            spans.append((n, k))
            n += k
        return cls(np.concatenate(frames), np.concatenate(prev), np.concatenate(state).astype(np.float32), spans)

    @property
    def size(self) -> int:
        return int(self.frames.shape[0])


def _read_split(manifest: dict[str, Any], split: str, names: list[str]) -> dict[str, list[tuple[np.ndarray, Any]]]:
    """``{embodiment: [(frames uint8 [F, H, W, 3], proprio float32 [F, P] or None), ...]}`` of one split."""
    out: dict[str, list[tuple[np.ndarray, Any]]] = {n: [] for n in names}
    for comp in build_components([manifest], split, window=1, frame_skip={}, hop=None, only=names):
        for url, eps in comp.shards:
            for ep in iter_episodes(url, keep={e for e, _ in eps}):
                out[comp.name].append((ep.frames, ep.proprio))
    return out


def parse_dims(specs: Sequence[str]) -> dict[str, list[int]]:
    """``["pusht:0,1", "metaworld_sawyer:0-2"]`` -> ``{"pusht": [0, 1], "metaworld_sawyer": [0, 1, 2]}``."""
    out: dict[str, list[int]] = {}
    for spec in specs:
        name, sep, rest = spec.partition(":")
        if not sep or not name or not rest:
            raise ProbeInputError(f"--dims {spec!r}: expected EMBODIMENT:DIMS, e.g. pusht:0,1 or metaworld_sawyer:0-2")
        dims: list[int] = []
        try:
            for part in rest.split(","):
                lo, dash, hi = part.partition("-")
                dims += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
        except ValueError:
            raise ProbeInputError(f"--dims {spec!r}: dims must be integers or ranges like 0-2, comma-separated, e.g. "
                                  "pusht:0,1") from None
        out.setdefault(name, []).extend(dims)
    return out


def _resolve_out(data: str, out_dir: str | os.PathLike | None) -> Path:
    if out_dir is not None:
        return Path(out_dir)
    if is_url(data):
        raise ProbeInputError(f"data {data!r} is a URL: pass out_dir (--out DIR) to say where the probe goes")
    return Path(data) / DEFAULT_DIR


def _targets_and_splits(
    manifest: dict[str, Any], names: list[str], dims: dict[str, list[int]],
) -> tuple[list[ProbeTarget], dict[str, _Frames], dict[str, _Frames], dict[str, str]]:
    """Read the data and choose, per embodiment with proprio: its target, train frames, floor frames, floor source."""
    train_raw, val_raw = _read_split(manifest, "train", names), _read_split(manifest, "val", names)
    targets, train, floor, source = [], {}, {}, {}
    for name in names:
        tr, va = train_raw[name], val_raw[name]
        missing = sum(p is None for _, p in tr + va)
        tr, va = [e for e in tr if e[1] is not None], [e for e in va if e[1] is not None]
        if not tr:
            log.warning("embodiment %r has no proprio in its train split: skipped (the probe needs a state to "
                        "regress)", name)
            continue
        if missing:
            log.warning("embodiment %r: %d episodes without proprio are skipped", name, missing)
        widths = {p.shape[1] for _, p in tr + va}
        if len(widths) != 1:
            raise ProbeInputError(f"embodiment {name!r}: episodes store proprio of different widths {sorted(widths)};"
                                  " re-import them with one state layout")
        if va:
            source[name] = "val"
        elif len(tr) >= 2:
            k = max(1, round(HOLDOUT_FRACTION * len(tr)))
            tr, va = tr[:-k], tr[-k:]
            source[name] = f"train (last {k} of {len(tr) + k} episodes held out: the dataset has no val split)"
            log.warning("embodiment %r has no val split: the floor uses its last %d train episodes, held out", name, k)
        else:
            va = tr
            source[name] = "train (in-sample: one episode, no val split; the floor is optimistic)"
            log.warning("embodiment %r has one episode and no val split: its floor is measured in-sample", name)
        train[name], floor[name] = _Frames.concat(tr), _Frames.concat(va)
        width = widths.pop()
        st = train[name].state.astype(np.float64)
        mean, std = st.mean(0), st.std(0)
        if name in dims:
            bad = [d for d in dims[name] if not 0 <= d < width]
            if bad:
                raise ProbeInputError(f"--dims {name}: dims {bad} are outside its proprio (width {width}, dims "
                                      f"0-{width - 1})")
            sel = list(dict.fromkeys(dims[name]))
        elif name in KNOWN_CONTROLLED_DIMS and len(KNOWN_STATE_NAMES.get(name, ())) == width:
            sel = [d for d in KNOWN_CONTROLLED_DIMS[name] if std[d] > STD_MIN]
            log.info("embodiment %r: regressing the state its actions move, %s (pass --dims to choose)", name,
                     [KNOWN_STATE_NAMES[name][d] for d in sel])
        else:
            sel = [d for d in range(width) if std[d] > STD_MIN]
            const = [d for d in range(width) if std[d] <= STD_MIN]
            if const:
                log.info("embodiment %r: proprio dims %s are constant on the train split and not regressed", name,
                         const)
            if not sel:
                log.warning("embodiment %r: every proprio dim is constant on the train split: skipped", name)
                del train[name], floor[name], source[name]
                continue
        known = KNOWN_STATE_NAMES.get(name, ())
        state_names = tuple(known[d] if len(known) == width else f"proprio[{d}]" for d in sel)
        targets.append(ProbeTarget(name, tuple(sel), tuple(mean[sel]), tuple(std[sel]), state_names))
    return targets, train, floor, source


def _batch(train: dict[str, _Frames], probe: StateProbe, names: list[str], batch_size: int,
           rng: np.random.Generator, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """A random minibatch mixing embodiments: inputs ``[B, 3C, h, w]``, head ids ``[B]``, normalised targets
    ``[B, P_max]`` (0-padded)."""
    which = rng.integers(len(names), size=batch_size)
    stacks, heads, targets = [], [], []
    for k in np.unique(which):
        name, n = names[k], int((which == k).sum())
        data, target = train[name], probe.targets[probe._index[name]]
        idx = rng.integers(data.size, size=n)
        ctx = [data.frames[data.prev[idx]], data.frames[idx]] if probe.context == 2 else [data.frames[idx]]
        stacks.append(np.stack(ctx, axis=1))
        y = np.zeros((n, probe.p_max), np.float32)
        y[:, :target.width] = (data.state[idx][:, list(target.dims)] - target.mean) / np.asarray(target.std)
        targets.append(y)
        heads.append(np.full(n, probe._index[name]))
    x = _stack_to_input(torch.from_numpy(np.concatenate(stacks)).to(device), probe.image_size)
    return x, torch.from_numpy(np.concatenate(heads)).to(device), torch.from_numpy(np.concatenate(targets)).to(device)


def measure_floor(probe: StateProbe, frames: dict[str, _Frames]) -> tuple[dict[str, dict[str, float]],
                                                                          dict[str, list[float]]]:
    """Mean per-frame RMS error (raw, normalised) of ``probe`` on each embodiment's episodes, and the per-dim raw
    RMS (over all frames)."""
    floor, per_dim = {}, {}
    for name, data in frames.items():
        target = probe.targets[probe._index[name]]
        raw_sum = norm_sum = 0.0
        sq = np.zeros(target.width)
        for start, n in data.episodes:
            video = torch.from_numpy(data.frames[start:start + n])[None]
            state = torch.from_numpy(data.state[start:start + n])[None]
            raw, norm = probe.state_error(video, state, [name])
            raw_sum, norm_sum = raw_sum + float(raw.sum()), norm_sum + float(norm.sum())
            pred = probe.predict(video, [name])[0, :, :target.width].cpu().numpy()
            sq += ((pred - data.state[start:start + n][:, list(target.dims)]) ** 2).sum(0)
        floor[name] = {"raw": raw_sum / data.size, "normalised": norm_sum / data.size, "frames": data.size}
        per_dim[name] = np.sqrt(sq / data.size).tolist()
    return floor, per_dim


def fit_probe(
    data: str,
    out_dir: str | os.PathLike | None = None,
    *,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 2e-3,
    backbone: str = "test_resnet",
    context: int = 2,
    dims: dict[str, list[int]] | None = None,
    embodiments: list[str] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    log_every: int = 100,
) -> StateProbe:
    """Train a state probe on the train split of an episode dataset, measure its floor, save it.

    Args:
        data: dataset folder (or URL prefix, then ``out_dir`` is required) with episode shards holding ``proprio``.
        out_dir: where the probe is saved (default ``<data>/probe``).
        steps: optimiser steps (training stops on this count, never on a clock).
        batch_size: frames per step (embodiments mixed, each equally likely).
        lr: AdamW peak learning rate (linear warm-up over 5% of the steps, cosine decay to 5%).
        backbone: timm model name, trained from scratch.
        context: 1 or 2 input frames.
        dims: ``{embodiment: proprio indices}``; default all proprio dims that vary on the train split.
        embodiments: only these embodiments (default all with proprio).
        seed: initialisation and sampling seed (the global torch RNG state is restored afterwards).
        device: training device (default CUDA when available, else CPU).
        log_every: steps between progress lines (loss, speed, ETA).

    Returns:
        The trained probe (CPU, eval mode); ``probe.meta["floor"]`` holds its error on the val split (or on held-out
        train episodes when there is none) per embodiment, as :func:`probe_floor` returns it.

    Raises:
        ProbeInputError: missing data, token shards, unknown embodiments, bad dims.
            No embodiment of the dataset stores ``proprio`` is one of them (a ValueError subclass).
    """
    data = str(data)
    if not is_url(data) and not Path(data).is_dir():
        raise ProbeInputError(f"data folder {data!r} does not exist; build one with `hma-zoo data build` or pass "
                              "the folder holding manifest.json")
    out = _resolve_out(data, out_dir)
    import timm

    if not timm.is_model(backbone):
        raise ProbeInputError(f"unknown timm backbone {backbone!r}; list the names with timm.list_models(), e.g. "
                              "test_resnet or resnet18")
    if steps < 1 or batch_size < 1:
        raise ProbeInputError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    try:
        manifest = load_manifest(data)
    except FileNotFoundError as exc:
        raise ProbeInputError(str(exc)) from exc
    if manifest["kind"] != "episodes":
        raise ProbeInputError(f"{data} holds {manifest['kind']} shards without frames; fit the probe on the episode "
                              "dataset the tokens were made from")
    known = sorted(manifest["embodiments"])
    names = list(embodiments) if embodiments else known
    dims = {k: list(v) for k, v in (dims or {}).items()}
    for label, asked in (("--embodiments", names), ("--dims", list(dims))):
        unknown = [n for n in asked if n not in known]
        if unknown:
            raise ProbeInputError(f"{label}: unknown embodiments {unknown}; {data} holds {known}")
    dims_ignored = [n for n in dims if n not in names]
    if dims_ignored:
        raise ProbeInputError(f"--dims names {dims_ignored}, which --embodiments leaves out ({names}); add them to "
                              "--embodiments or drop their --dims")

    t_read = time.perf_counter()
    targets, train, floor_frames, source = _targets_and_splits(manifest, names, dims)
    if not targets:
        raise ProbeInputError(
            f"dataset {data} has no `proprio` (state) for embodiments {names}, so there is nothing for the probe to "
            "regress. Import the state with the episodes: `hma-zoo data import-files --proprio-key KEY` (the key of "
            "the state array in your files) or a LeRobot dataset with an `observation.state` column")
    log.info("read %s in %.1f s: %s", data, time.perf_counter() - t_read,
             ", ".join(f"{n} {train[n].size} train / {floor_frames[n].size} floor frames" for n in train))

    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    image_size = tuple(int(s) for s in manifest["image_size"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = StateProbe(targets, backbone, image_size, context).to(dev)
        rng = np.random.default_rng(seed)
        opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-4)
        warm = max(1, steps // 20)

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        order = [t.name for t in targets]
        probe.train()
        t0, running = time.perf_counter(), []
        for step in range(steps):
            x, heads, y = _batch(train, probe, order, batch_size, rng, dev)
            pred = probe.select(probe(x), heads)
            mask = probe._mask[heads]
            loss = (((pred - y) ** 2).sum(1) / mask.sum(1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running.append(loss.item())
            if (step + 1) % log_every == 0 or step + 1 == steps:
                spent = time.perf_counter() - t0
                eta = spent / (step + 1) * (steps - step - 1)
                log.info("probe step %d/%d  loss %.4f  (%.3f s/step, ETA %.0f s)", step + 1, steps,
                         float(np.mean(running[-log_every:])), spent / (step + 1), eta)
        train_seconds = time.perf_counter() - t0
    probe.eval()
    floor, per_dim = measure_floor(probe, floor_frames)
    probe.meta = {
        "data": data, "dataset": manifest.get("name"), "steps": steps, "batch_size": batch_size, "lr": lr,
        "seed": seed, "backbone": backbone, "context": context, "image_size": list(image_size),
        "train_frames": {n: train[n].size for n in train}, "train_seconds": round(train_seconds, 1),
        "final_loss": float(np.mean(running[-min(len(running), 50):])),
        "floor": floor, "floor_source": source, "floor_raw_per_dim": per_dim,
        "floor_definition": "mean over frames of the per-frame RMS over the selected dims of (pred - true), raw "
                            "units and divided by the train std",
    }
    probe = probe.cpu()
    save_probe(probe, out)
    log.info("saved the probe to %s", out)
    return probe


# ------------------------------------------------------------------------------------------------------ CLI
def floor_table(config: dict[str, Any], meta: dict[str, Any]) -> str:
    """Markdown table of a saved probe's floor (from its ``config.json`` payload's config and meta)."""
    floor, source = meta.get("floor", {}), meta.get("floor_source", {})
    lines = ["| embodiment | frames | raw RMS | normalised RMS | floor split | state (dims) |",
             "|---|---:|---:|---:|---|---|"]
    for t in map(ProbeTarget.from_dict, config["targets"]):
        f = floor.get(t.name)
        names = ", ".join(t.state_names[:6]) + (f", ... ({t.width} dims)" if t.width > 6 else "")
        dims = _ranges(t.dims)
        cells = f"{int(f['frames'])} | {f['raw']:.4g} | {f['normalised']:.3f}" if f else "- | - | -"
        lines.append(f"| {t.name} | {cells} | {source.get(t.name, '-')} | {names} ({dims}) |")
    return "\n".join(lines)


def _ranges(dims: Sequence[int]) -> str:
    out, i = [], 0
    while i < len(dims):
        j = i
        while j + 1 < len(dims) and dims[j + 1] == dims[j] + 1:
            j += 1
        out.append(str(dims[i]) if i == j else f"{dims[i]}-{dims[j]}")
        i = j + 1
    return ",".join(out)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``hma-zoo probe``."""
    p = argparse.ArgumentParser(prog="hma-zoo probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="train a probe on a dataset's train split and report its floor on val")
    f.add_argument("--data", required=True, help="dataset folder (manifest.json + episode shards with proprio)")
    f.add_argument("--out", default=None, help=f"probe folder (default: DATA/{DEFAULT_DIR})")
    f.add_argument("--steps", type=int, default=1500, help="optimizer steps (default 1500)")
    f.add_argument("--batch-size", type=int, default=64, help="frames per step (default 64)")
    f.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (default 2e-3)")
    f.add_argument("--backbone", default="test_resnet", help="timm model name (trained from scratch)")
    f.add_argument("--context", type=int, default=2, choices=(1, 2), help="input frames (2: t-1 and t)")
    f.add_argument("--dims", action="append", default=[], metavar="EMB:DIMS",
                   help="proprio dims to regress, e.g. --dims pusht:0,1 --dims metaworld_sawyer:0-2 (default: all "
                        "that vary)")
    f.add_argument("--embodiments", nargs="+", default=None, help="only these embodiments")
    f.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    f.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches (default 0)")
    f.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    s = sub.add_parser("show", help="print the floor table of a saved probe")
    s.add_argument("dir", help="probe folder")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hma-zoo probe``; returns a process exit code (2 on bad input)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.cmd == "show":
        try:
            payload = hub.read_config(args.dir)
        except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
            print(f"hma-zoo probe show: {args.dir!r} is not a probe folder ({exc}); fit one with "
                  "`hma-zoo probe fit --data DATA`", file=sys.stderr)
            return 2
        if payload["hma_zoo_kind"] != KIND:
            print(f"hma-zoo probe show: {args.dir} holds a {payload['hma_zoo_kind']!r}, not a state probe",
                  file=sys.stderr)
            return 2
        print(floor_table(payload["config"], payload.get("meta", {})))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        dims = parse_dims(args.dims)
        t0 = time.perf_counter()
        probe = fit_probe(args.data, args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          backbone=args.backbone, context=args.context, dims=dims, embodiments=args.embodiments,
                          seed=args.seed, device=args.device)
    except ProbeInputError as exc:
        print(f"hma-zoo probe fit: {exc}", file=sys.stderr)
        return 2
    out = _resolve_out(args.data, args.out)
    print(f"probe saved to {out} ({time.perf_counter() - t0:.0f} s); floor (its error on held-out real frames):")
    print(floor_table(probe.config(), probe.meta))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
