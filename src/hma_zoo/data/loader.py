"""The window stream behind :class:`~hma_zoo.data.datamodule.HMADataModule`.

:class:`WindowDataset` is an ``IterableDataset`` over one split of one or more dataset folders (local or any
WebDataset URL). Each embodiment is a mixture *component*. Every consumer (``rank x dataloader worker``) reads a
disjoint part of every component, decided from the manifest alone: whole shards when a component has at least as
many shards as there are consumers, otherwise single episodes (other episodes of a shard are skipped undecoded).
Parts are balanced by window count.

* ``mode="finite"``: every window of the split is yielded exactly once per epoch across all consumers (with
  ``pad=True`` each consumer then repeats its first windows until all consumers yield the same count, so DDP ranks
  see the same number of batches; those repeats are the only duplicates).
* ``mode="resampled"``: an infinite shuffled stream per component (shard order reshuffled every pass, random
  window phase per episode visit); an epoch ends after ``epoch_windows`` windows in total.

Components are interleaved by :func:`~hma_zoo.data.mixture.mixture_weights`; a batch may mix embodiments.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from hma_zoo.data.mixture import mixture_weights
from hma_zoo.data.shards import DataError, ReadStats, ShardExpectation, iter_episodes, join
from hma_zoo.data.windows import WindowSpec, extract_window, num_windows, window_starts

STATS_KEY = "_read_stats"  # a DataLoader worker's running ReadStats, carried by its samples to the main process


@dataclass
class Component:
    """One embodiment of the mixture: its window spec and the shards (url, [(episode_id, frames)]) holding it.

    ``trimmed`` holds the indices of shards whose episode list was cut (``max_episodes``): those are always read
    with an explicit episode set, never whole. ``expect`` is what the manifest says every shard of the embodiment
    holds (image size, action width, stride, token info); each shard is read checked against it and its episode list.
    """

    name: str
    spec: WindowSpec
    shards: list[tuple[str, list[tuple[str, int]]]] = field(default_factory=list)
    trimmed: set[int] = field(default_factory=set)
    expect: ShardExpectation | None = None

    def episode_windows(self) -> list[tuple[int, str, int]]:
        """``(shard index, episode id, windows)`` for every episode, in manifest order."""
        return [(i, eid, num_windows(n, self.spec)) for i, (_, eps) in enumerate(self.shards) for eid, n in eps]

    @property
    def size(self) -> int:
        return sum(w for _, _, w in self.episode_windows())


def _balance(items: list[tuple[Any, int]], n: int) -> list[list[Any]]:
    """Greedy longest-first assignment of weighted items to ``n`` bins (deterministic)."""
    bins: list[list[Any]] = [[] for _ in range(n)]
    load = [0] * n
    order = sorted(range(len(items)), key=lambda i: (-items[i][1], i))
    for i in order:
        b = min(range(n), key=lambda j: (load[j], j))
        bins[b].append(items[i][0])
        load[b] += items[i][1]
    return bins


def partition(comp: Component, consumer: int, n_consumers: int) -> dict[int, set[str] | None]:
    """Which shards (index -> episode ids to keep, ``None`` = all) consumer ``consumer`` of ``n_consumers`` reads."""
    eps = comp.episode_windows()
    if len(comp.shards) >= n_consumers:
        per_shard = [(i, sum(w for s, _, w in eps if s == i)) for i in range(len(comp.shards))]
        return {i: {e for e, _ in comp.shards[i][1]} if i in comp.trimmed else None
                for i in sorted(_balance(per_shard, n_consumers)[consumer])}
    mine = _balance([((s, e), w) for s, e, w in eps], n_consumers)[consumer]
    out: dict[int, set[str] | None] = {}
    for s, e in mine:
        out.setdefault(s, set()).add(e)  # type: ignore[union-attr]
    return dict(sorted(out.items()))


def _count(comp: Component, part: dict[int, set[str] | None]) -> int:
    return sum(w for s, e, w in comp.episode_windows() if s in part and (part[s] is None or e in part[s]))


class WindowDataset(IterableDataset):
    """Stream of window samples (see the module docstring and the batch contract).

    A sample is a dict: ``frames`` uint8 ``[T, H, W, 3]`` or ``tokens`` (int64 ``[T, h, w]`` / float32
    ``[T, h, w, c]``), ``actions`` float32 ``[T, a_max]``, ``action_valid`` bool ``[T]``, ``embodiment`` str,
    ``episode_id`` str, ``start`` int (stored frame index of the first frame).
    """

    def __init__(
        self,
        components: list[Component],
        a_max: int,
        kind: Literal["episodes", "tokens"] = "episodes",
        mode: Literal["finite", "resampled"] = "finite",
        temperature: float = 3.0,
        weights: dict[str, float] | None = None,
        epoch_windows: int | None = None,
        shuffle: bool = True,
        buffer_episodes: int = 8,
        seed: int = 0,
        on_error: Literal["raise", "skip"] = "raise",
        rank: int = 0,
        world_size: int = 1,
        pad: bool = False,
    ) -> None:
        if mode not in ("finite", "resampled"):
            raise ValueError(f"mode must be 'finite' or 'resampled', got {mode!r}")
        self.components = [c for c in components if c.size > 0]
        if not self.components:
            raise ValueError("no windows: every episode is shorter than the window; lower `window` or `frame_skip`")
        self.a_max, self.kind, self.mode = a_max, kind, mode
        self.probs = mixture_weights({c.name: c.size for c in self.components}, temperature, weights)
        self.total = sum(c.size for c in self.components)
        self.epoch_windows = epoch_windows or self.total
        self.shuffle, self.buffer_episodes, self.seed, self.on_error = shuffle, buffer_episodes, seed, on_error
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self._direct = ReadStats()  # what this process read (in a DataLoader worker: that worker)
        self._reported: dict[tuple[int, int], ReadStats] = {}  # (pass, consumer) -> a worker's counts, main side
        self.report_stats = False  # set by HMADataModule: workers attach their counts to the samples
        self._iterations = 0
        # Set by the DataModule's loader (exact resume): the pass number, which fixes the pass's randomness, and
        # the batches of this pass already consumed before a restart, skipped without decoding their windows.
        self.epoch: int | None = None
        self.skip_batches = 0
        self._geometry: tuple[int, int] | None = None

    @property
    def read_stats(self) -> ReadStats:
        """What was skipped: this process's own counts plus, in the main process, the latest counts every
        DataLoader worker reported (see :meth:`note_reported`), summed."""
        if not self._reported:
            return self._direct
        return ReadStats.total([self._direct, *self._reported.values()])

    def note_reported(self, key: tuple[int, int], stats: ReadStats) -> None:
        """Record a worker's running counts (``key``: pass number and consumer) in the main process."""
        self._reported[key] = stats

    def _with_stats(self, samples: Iterator[dict[str, Any]], consumer: int) -> Iterator[dict[str, Any]]:
        """In a DataLoader worker: attach the worker's running counts to every sample (:data:`STATS_KEY`;
        :func:`collate_windows` moves them to the batch, the DataModule's loaders take them off)."""
        self._direct = ReadStats()  # this worker's own counts (the copy from the main process may hold others)
        for sample in samples:
            if sample is not None:
                sample[STATS_KEY] = (consumer, replace(self._direct, messages=list(self._direct.messages)))
            yield sample

    def set_loader_geometry(self, batch_size: int, num_workers: int) -> None:
        """Tell the dataset how the DataLoader batches it, so that ``len()`` gives exact batch counts."""
        self._geometry = (int(batch_size), max(int(num_workers), 1))

    def consumer_windows(self, consumer: int, n_consumers: int) -> int:
        """Windows consumer ``consumer`` yields per epoch (padding and resampling quota included)."""
        if self.mode == "resampled":
            return math.ceil(self.epoch_windows / n_consumers)
        counts = self.consumer_counts(n_consumers)
        return max(counts) if self.pad else counts[consumer]

    def __len__(self) -> int:
        """Windows per epoch on this rank; with :meth:`set_loader_geometry`, rounded up so that
        ``ceil(len / batch_size)`` is exactly the number of batches this rank's DataLoader yields
        (each worker ends on its own partial batch); Lightning stops an epoch after ``len(dataloader)`` batches."""
        geometry = self._geometry
        if geometry is None:
            return math.ceil((self.total if self.mode == "finite" else self.epoch_windows) / self.world_size)
        batch, workers = geometry
        n = self.world_size * workers
        batches = sum(math.ceil(self.consumer_windows(self.rank * workers + w, n) / batch) for w in range(workers))
        return batches * batch

    # ------------------------------------------------------------------------------------------------ streams
    def _episodes(self, comp: Component, part: dict[int, set[str] | None], rng: np.random.Generator,
                  infinite: bool) -> Iterator[tuple[Any, np.ndarray]]:
        while True:
            shard_ids = list(part)
            if self.shuffle:
                rng.shuffle(shard_ids)
            produced = False
            for i in shard_ids:
                url, listed = comp.shards[i]
                expect = replace(comp.expect or ShardExpectation(embodiment=comp.name, action_dim=comp.spec.action_dim,
                                                                 stride=comp.spec.stored_stride), episodes=dict(listed))
                for ep in iter_episodes(url, self.on_error, self._direct, keep=part[i], expect=expect):
                    visual = ep.frames if ep.frames is not None else ep.tokens
                    offset = int(rng.integers(0, comp.spec.step)) if infinite else 0
                    starts = window_starts(visual.shape[0], comp.spec, offset)
                    if not len(starts) and offset:
                        starts = window_starts(visual.shape[0], comp.spec, 0)
                    if len(starts):
                        produced = True
                        yield ep, starts
            if not produced and (infinite or _count(comp, part) == comp.size):
                # every listed episode was damaged, missing or skipped: stop instead of yielding empty epochs
                raise DataError(f"embodiment {comp.name!r}: no readable window in {len(shard_ids)} shard(s) "
                                f"({', '.join(comp.shards[i][0] for i in shard_ids[:5])}); read_stats: "
                                f"{self.read_stats.messages[:5]}")
            if not infinite:
                return

    def _sample(self, comp: Component, ep: Any, start: int) -> dict[str, Any]:
        visual = ep.frames if ep.frames is not None else ep.tokens
        v, a, valid = extract_window(visual, ep.actions, int(start), comp.spec, self.a_max)
        if ep.frames is not None:
            out = {"frames": torch.from_numpy(np.ascontiguousarray(v))}
        else:
            t = torch.from_numpy(np.ascontiguousarray(v))
            out = {"tokens": t.long() if not t.is_floating_point() else t.float()}
        out.update(actions=torch.from_numpy(a), action_valid=torch.from_numpy(valid), embodiment=comp.name,
                   episode_id=ep.episode_id, start=int(start))
        if ep.proprio is not None:  # the recorded state at each window frame (for the state probe)
            idx = int(start) + comp.spec.frame_skip * np.arange(comp.spec.window)
            out["state"] = torch.from_numpy(np.ascontiguousarray(ep.proprio[idx], dtype=np.float32))
        return out

    def consumer_counts(self, n_consumers: int) -> list[int]:
        """Windows each consumer yields in finite mode (before padding), from the manifest alone."""
        return [sum(_count(c, partition(c, k, n_consumers)) for c in self.components) for k in range(n_consumers)]

    def iter_consumer(self, consumer: int, n_consumers: int, seed_extra: int = 0,
                      skip: int = 0) -> Iterator[dict[str, Any]]:
        """The samples of consumer ``consumer`` (= ``rank * workers + worker``) out of ``n_consumers``; the first
        ``skip`` are drawn (the random stream advances exactly as if they were yielded) but not decoded or
        yielded."""
        rng = np.random.default_rng([self.seed, consumer, seed_extra])
        infinite = self.mode == "resampled"
        streams, buffers, probs = {}, {}, {}
        for comp in self.components:
            part = partition(comp, consumer, n_consumers)
            if infinite and _count(comp, part) == 0:  # resampling may overlap; never starve a component
                part = {i: None for i in range(len(comp.shards))}
            if _count(comp, part) == 0:
                continue
            streams[comp.name] = (comp, self._episodes(comp, part, rng, infinite))
            buffers[comp.name] = []
            probs[comp.name] = self.probs[comp.name]
        quota = math.ceil(self.epoch_windows / n_consumers) if infinite else None
        target, need = None, 0
        if self.pad and not infinite:
            counts = self.consumer_counts(n_consumers)
            target, need = max(counts), max(counts) - counts[consumer]  # keep only the windows to repeat
        emitted: list[dict[str, Any]] = []
        n = 0
        while streams and (quota is None or n < quota):
            names = list(streams)
            p = np.array([probs[k] for k in names])
            name = names[int(rng.choice(len(names), p=p / p.sum()))] if p.sum() > 0 else names[0]
            comp, stream = streams[name]
            buf = buffers[name]
            while len(buf) < (self.buffer_episodes if self.shuffle else 1):
                nxt = next(stream, None)
                if nxt is None:
                    break
                buf.append([nxt[0], list(nxt[1])])
            if not buf:
                del streams[name]
                continue
            j = int(rng.integers(len(buf))) if self.shuffle else 0
            ep, starts = buf[j]
            start = starts.pop(int(rng.integers(len(starts))) if self.shuffle else 0)
            if not starts:
                buf.pop(j)
            if n < skip and len(emitted) >= need:
                n += 1
                continue
            sample = self._sample(comp, ep, start)
            if len(emitted) < need:
                emitted.append(sample)
            n += 1
            if n > skip:
                yield sample
        if target is not None and n < target and not emitted:  # this consumer owns nothing: borrow windows
            emitted = self._first_windows(target - n, rng)
        if target is not None:
            for k in range(target - n):
                yield emitted[k % len(emitted)] if emitted else None  # type: ignore[misc]

    def _first_windows(self, k: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        """The first ``k`` windows of the split (padding for a consumer that owns no window)."""
        out: list[dict[str, Any]] = []
        for comp in self.components:
            for ep, starts in self._episodes(comp, {i: None for i in range(len(comp.shards))}, rng, False):
                out += [self._sample(comp, ep, s) for s in starts[: k - len(out)]]
                if len(out) >= k:
                    return out
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # Not a generator: the pass number and the skip are read now, when the DataLoader starts the pass.
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        self._iterations += 1
        if self.epoch is not None:  # driven by the DataModule's loader: the pass's randomness follows its number
            extra = self.epoch
        else:  # plain iteration: the DataLoader draws a fresh base seed per iterator; in-process we count passes
            extra = (info.seed % 2**31) if info is not None else self._iterations
        if self.mode == "finite" and not self.shuffle:
            extra = 0
        skip = 0
        if self.skip_batches:
            # DataLoader workers deliver batches round-robin: worker w made batches w, w + W, w + 2W, ...
            batch = self._geometry[0] if self._geometry is not None else 1
            skip = max(0, -(-(self.skip_batches - worker) // n_workers)) * batch
        consumer = self.rank * n_workers + worker
        samples = self.iter_consumer(consumer, self.world_size * n_workers, extra, skip)
        return self._with_stats(samples, consumer) if info is not None and self.report_stats else samples


def collate_windows(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack window samples into the batch contract (strings become lists). A worker's read counts attached to the
    samples (:data:`STATS_KEY`) travel as ``batch[STATS_KEY] = (consumer, ReadStats)``; the DataModule's loaders
    take them off before the batch is used."""
    samples = [s for s in samples if s is not None]
    reported = [s.pop(STATS_KEY) for s in samples if STATS_KEY in s]
    out: dict[str, Any] = {STATS_KEY: reported[-1]} if reported else {}
    for key in samples[0]:
        if key == "state":
            continue
        vals = [s[key] for s in samples]
        if isinstance(vals[0], torch.Tensor):
            # numpy stacking: torch.stack of uint8 CPU tensors measured ~1000x slower here (torch 2.14.1)
            out[key] = torch.from_numpy(np.stack([v.numpy() for v in vals]))
        elif isinstance(vals[0], int):
            out[key] = torch.tensor(vals)
        else:
            out[key] = vals
    if any("state" in s for s in samples):
        out.update(_collate_state(samples))
    return out


def _collate_state(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """``state`` float32 ``[B, T, P_max]`` (each embodiment's proprio, zero-padded on the right) and ``state_valid``
    bool ``[B]`` (False for a sample whose episode recorded no state)."""
    states = [s.get("state") for s in samples]
    ref = next(s for s in states if s is not None)
    width = max(s.shape[-1] for s in states if s is not None)
    out = np.zeros((len(states), ref.shape[0], width), np.float32)
    for i, s in enumerate(states):
        if s is not None:
            out[i, :, : s.shape[-1]] = s.numpy()
    return {"state": torch.from_numpy(out), "state_valid": torch.tensor([s is not None for s in states])}


def build_components(manifests: list[dict[str, Any]], split: str, window: int, frame_skip: dict[str, int],
                     hop: int | None, only: list[str] | None = None,
                     max_episodes: dict[str, int] | None = None) -> list[Component]:
    """One :class:`Component` per embodiment name across ``manifests`` (same name must mean the same robot).

    ``max_episodes`` (``{name: n}``) keeps only the first ``n`` episodes of that embodiment, in manifest order
    (datasets in the order given, shards and episodes as listed); shards left empty are dropped.
    """
    comps: dict[str, Component] = {}
    for m in manifests:
        for name, e in m["embodiments"].items():
            if only is not None and name not in only:
                continue
            spec = WindowSpec(window, e["action_dim"], e["stride"], frame_skip.get(name, 1), hop)
            if name in comps and comps[name].spec != spec:
                raise ValueError(f"embodiment {name!r} has different action_dim/stride in two datasets: "
                                 f"{comps[name].spec} vs {spec}; rename one of them")
            comp = comps.setdefault(name, Component(name, spec, expect=ShardExpectation.for_embodiment(m, name)))
            if comp.expect is not None and comp.expect.record_checksums and not m.get("record_checksums"):
                comp.expect = replace(comp.expect, record_checksums=False)  # a dataset written before them
            for shard in m["shards"]:
                if shard["embodiment"] == name and shard["split"] == split:
                    comp.shards.append((join(m["root"], shard["path"]), [(x[0], x[1]) for x in shard["episodes"]]))
    for comp in comps.values():
        cap = (max_episodes or {}).get(comp.name)
        if cap is None:
            continue
        kept: list[tuple[str, list[tuple[str, int]]]] = []
        for url, eps in comp.shards:
            left = cap - sum(len(e) for _, e in kept)
            if left <= 0:
                break
            if len(eps) > left:
                comp.trimmed.add(len(kept))
            kept.append((url, eps[:left]))
        comp.shards = kept
    return list(comps.values())
