"""Prompts for the demo: the first frames a drive starts from, and the actions recorded after them.

Two sources:

* **Built-in examples** (:func:`load_examples`): one short real episode per embodiment of the shipped ``sim-mix``
  models, stored in ``examples.npz`` next to this file (a few 64 x 64 frames and every control-step action of the
  episode, about 60 kB). The shipped model folders hold weights and a tokenizer but no frames, so the demo ships its
  own; :func:`build_examples` rebuilds the file from a dataset (``python tools/make_demo_examples.py``).
* **A local dataset** (:class:`DatasetPrompts`, ``hma-zoo demo --data DIR``): any episode of an episode dataset,
  chosen by id in the page; only the chosen episode is decoded, with the manifest's checks.

Both give an :class:`ExamplePrompt`: the frames, the recorded actions (for "replay recorded actions"), and what the
page needs to drive the embodiment (frame rate, action names and range, and whether an action is a *velocity*, held
at zero by default, or a *position* target such as Push-T's pusher, moved by the arrow keys).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLES_FILE = Path(__file__).resolve().parent / "examples.npz"

#: frames per built-in example (the demo uses the first ``--prompt-frames`` of them)
EXAMPLE_FRAMES = 4


@dataclass(frozen=True)
class ExamplePrompt:
    """A real episode's start, with what the page needs to drive its embodiment.

    Attributes:
        embodiment: the embodiment's name (as the world model knows it).
        frames: uint8 ``[K, H, W, 3]``: the first ``K`` frames.
        actions: float32 ``[N, action_dim]``: every recorded control-step action of the episode (row ``i`` is
            control step ``i``; frame ``t`` follows rows ``< t * stride``).
        frame_hz: the recorded frame rate (the rate the page steps at by default).
        stride: control steps per frame.
        low, high: float32 ``[action_dim]``: the range of the recorded actions (the dataset's, where known).
        action_names: one name per action dimension (may be empty).
        control: ``"velocity"`` (an action is a rate or a force; the neutral action is the range's middle) or
            ``"position"`` (an action is an absolute target; the arrow keys move it).
        source: where the episode comes from (dataset and episode id).
    """

    embodiment: str
    frames: np.ndarray
    actions: np.ndarray
    frame_hz: float
    stride: int
    low: np.ndarray
    high: np.ndarray
    action_names: tuple[str, ...] = ()
    control: str = "velocity"
    source: str = ""

    @property
    def action_dim(self) -> int:
        """Width of one control-step action."""
        return int(self.actions.shape[1])

    def prompt_rows(self, k: int) -> np.ndarray | None:
        """The recorded frame chunks between the first ``k`` frames, float32 ``[k - 1, stride * action_dim]``
        (``None`` for ``k = 1``)."""
        if k < 2:
            return None
        need = (k - 1) * self.stride
        return self.actions[:need].reshape(k - 1, self.stride * self.action_dim).astype(np.float32)

    def replay_chunk(self, k: int, t: int) -> np.ndarray:
        """The recorded chunk executed after generated frame ``t`` (``0`` = the last prompt frame) of a drive started
        from the first ``k`` frames, float32 ``[stride * action_dim]``; the recording after the prompt is cycled when
        the drive outlasts it."""
        rows = self.actions[(k - 1) * self.stride:]
        n = rows.shape[0] // self.stride
        if n == 0:
            raise ValueError(f"{self.source or self.embodiment}: no recorded action after the {k}-frame prompt to "
                             "replay; use a shorter prompt or drive by hand")
        i = (t % n) * self.stride
        return rows[i : i + self.stride].reshape(-1).astype(np.float32)

    def neutral_action(self, k: int) -> np.ndarray:
        """The action the page starts from after a ``k``-frame prompt, ``[action_dim]``: for a position target the
        last action before frame ``k - 1`` (the first action for ``k = 1``), so the pusher stays where it is; for a
        velocity, zero clipped into the range."""
        if self.control == "position":
            return self.actions[max((k - 1) * self.stride - 1, 0)].astype(np.float32).copy()
        return np.clip(np.zeros(self.action_dim, np.float32), self.low, self.high)


def _control_kind(low: np.ndarray, high: np.ndarray) -> str:
    """``"position"`` when every action is non-negative with a wide range (pixel targets), else ``"velocity"``."""
    return "position" if bool(np.all(low >= 0)) and bool(np.all(high - low > 10)) else "velocity"


def _meta_row(p: ExamplePrompt) -> dict[str, Any]:
    row = asdict(p)
    for key in ("frames", "actions"):
        row.pop(key)
    row["low"], row["high"] = [float(x) for x in p.low], [float(x) for x in p.high]
    row["action_names"] = list(p.action_names)
    return row


def save_examples(path: str | os.PathLike, prompts: dict[str, ExamplePrompt]) -> Path:
    """Write ``prompts`` (embodiment -> prompt) to one compressed ``.npz`` (arrays plus a JSON string; loading never
    unpickles)."""
    arrays: dict[str, np.ndarray] = {}
    for name, p in prompts.items():
        arrays[f"{name}/frames"] = np.ascontiguousarray(p.frames, np.uint8)
        arrays[f"{name}/actions"] = np.ascontiguousarray(p.actions, np.float32)
    meta = json.dumps({name: _meta_row(p) for name, p in prompts.items()}, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, meta=np.array(meta), **arrays)
    return path


def load_examples(path: str | os.PathLike | None = None) -> dict[str, ExamplePrompt]:
    """The built-in example prompts, embodiment -> :class:`ExamplePrompt` (``{}`` when the file is missing)."""
    path = Path(path) if path is not None else EXAMPLES_FILE
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        out = {}
        for name, row in meta.items():
            out[name] = ExamplePrompt(
                embodiment=name, frames=z[f"{name}/frames"], actions=z[f"{name}/actions"],
                frame_hz=float(row["frame_hz"]), stride=int(row["stride"]), low=np.asarray(row["low"], np.float32),
                high=np.asarray(row["high"], np.float32), action_names=tuple(row.get("action_names", ())),
                control=str(row.get("control", "velocity")), source=str(row.get("source", "")))
    return out


class DatasetPrompts:
    """Episodes of a local episode dataset (``hma-zoo demo --data DIR``) as prompts.

    Args:
        data_dir: a dataset folder (with ``manifest.json``; frames, not token shards).
        max_listed: at most this many episode ids per embodiment are offered in the page (validation split first).
    """

    def __init__(self, data_dir: str | os.PathLike, max_listed: int = 50) -> None:
        from hma_zoo.data.shards import load_manifest

        self.data_dir = str(data_dir)
        self.manifest = load_manifest(self.data_dir)
        if self.manifest.get("kind") != "episodes":
            raise ValueError(f"{self.data_dir} holds {self.manifest.get('kind')!r} shards; the demo starts from real "
                             "frames: pass an episode dataset (before `hma-zoo data tokenize`)")
        self._where: dict[str, tuple[str, dict[str, Any]]] = {}  # episode id -> (embodiment, shard)
        self.listed: dict[str, list[str]] = {}
        for split in ("val", "train"):
            for shard in self.manifest["shards"]:
                if shard["split"] != split:
                    continue
                for entry in shard["episodes"]:
                    eid = str(entry[0])
                    self._where.setdefault(eid, (shard["embodiment"], shard))
                    ids = self.listed.setdefault(shard["embodiment"], [])
                    if len(ids) < max_listed and int(entry[1]) >= 1:
                        ids.append(eid)

    def episodes(self, embodiment: str) -> list[str]:
        """Episode ids of ``embodiment`` offered as prompts (validation split first)."""
        return list(self.listed.get(embodiment, []))

    def info(self, embodiment: str) -> dict[str, Any] | None:
        """The manifest's entry for ``embodiment`` (``None`` if the dataset does not hold it)."""
        return self.manifest["embodiments"].get(embodiment)

    def load(self, episode_id: str) -> ExamplePrompt:
        """Decode episode ``episode_id`` (its first :data:`EXAMPLE_FRAMES` frames and all its actions).

        Raises:
            KeyError: no such episode (the message names a few that exist).
        """
        from hma_zoo.data.shards import ShardExpectation, iter_episodes, join

        if episode_id not in self._where:
            some = ", ".join(sorted(self._where)[:5])
            raise KeyError(f"{self.data_dir} has no episode {episode_id!r} (for example: {some})")
        name, shard = self._where[episode_id]
        expect = ShardExpectation.from_manifest(self.manifest, shard)
        ep = next(iter(iter_episodes(join(self.data_dir, shard["path"]), keep={episode_id}, expect=expect)))
        return prompt_from_episode(ep, self.manifest["embodiments"][name], f"{self.manifest.get('name', '')}:"
                                   f"{episode_id}")


def prompt_from_episode(ep: Any, emb_info: dict[str, Any], source: str, frames: int = EXAMPLE_FRAMES) -> ExamplePrompt:
    """An :class:`ExamplePrompt` from a decoded :class:`~hma_zoo.data.schema.Episode` and its manifest entry (action
    range from the manifest's statistics, widened to the episode's own actions)."""
    actions = np.asarray(ep.actions, np.float32)
    stats = emb_info.get("action_stats") or {}
    low, high = actions.min(0), actions.max(0)
    if stats.get("count"):
        low = np.minimum(low, np.asarray(stats["min"], np.float32))
        high = np.maximum(high, np.asarray(stats["max"], np.float32))
    return ExamplePrompt(
        embodiment=ep.embodiment, frames=np.ascontiguousarray(ep.frames[:frames]), actions=actions,
        frame_hz=float(emb_info["frame_hz"]), stride=int(emb_info["stride"]), low=low.astype(np.float32),
        high=high.astype(np.float32), action_names=tuple(emb_info.get("action_names") or ()),
        control=_control_kind(low, high), source=source)


def build_examples(data_dir: str | os.PathLike, out: str | os.PathLike = EXAMPLES_FILE,
                   split: str = "val") -> Path:
    """Write the built-in examples: the first ``split`` episode (by id) of every embodiment of ``data_dir``.

    Used once to make the shipped ``examples.npz`` from ``data/sim-mix-mini`` (``tools/make_demo_examples.py``).
    """
    prompts = DatasetPrompts(data_dir, max_listed=10**9)
    chosen: dict[str, ExamplePrompt] = {}
    for name in sorted(prompts.manifest["embodiments"]):
        ids = sorted(e for e in prompts.episodes(name) if prompts._where[e][1]["split"] == split)
        if ids:
            chosen[name] = prompts.load(ids[0])
    if not chosen:
        raise ValueError(f"{data_dir} has no {split!r} episodes to make examples from")
    return save_examples(out, chosen)
