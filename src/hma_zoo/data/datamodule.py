"""``HMADataModule``: heterogeneous mixtures of episode or token shards as Lightning batches.

Every constructor argument is a plain path / string / number / dict so LightningCLI YAML can set it::

    data:
      class_path: hma_zoo.data.HMADataModule
      init_args: {data: data/sim-mix-mini, window: 8, batch_size: 8, temperature: 3.0}

The manifest is read in ``__init__``, so ``.embodiments``, ``.max_chunk_dim``, ``.image_size``, ``.window`` (and
``.token_info`` for token shards) are available before ``setup()`` for ``link_arguments(..., apply_on=
"instantiate")``. Batches follow the batch contract (see docs/data_format.md): ``frames`` uint8 ``[B, T, H, W, 3]``
or ``tokens``, ``actions`` float32 ``[B, T, A_max]``, ``action_valid`` bool ``[B, T]``, ``embodiment`` list[str],
``episode_id`` list[str], ``start`` int64 ``[B]``.

Frames are delivered as stored; tokenisation on the fly (from episode shards) belongs to the LightningModule,
which holds the tokenizer on the training device. For speed, pre-tokenise with ``hma-zoo data tokenize``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import lightning as L
from torch.utils.data import DataLoader

from hma_zoo.configs import EmbodimentSpec
from hma_zoo.data.loader import STATS_KEY, Component, WindowDataset, build_components, collate_windows
from hma_zoo.data.schema import ActionStats
from hma_zoo.data.shards import ReadStats, load_manifest

log = logging.getLogger(__name__)


def _env_rank() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class _ReportingLoader(DataLoader):
    """A DataLoader of a :class:`WindowDataset` that takes the read counts DataLoader workers attach to their
    batches off them, sums them in the main process (``dataset.read_stats``) and calls ``on_read_stats(dataset)``
    whenever the damaged total grows."""

    on_read_stats: Any = None
    _passes = 0

    def __iter__(self):  # type: ignore[override]
        type(self)._passes += 1
        return self._report(super().__iter__(), type(self)._passes)

    def _report(self, batches: Any, pass_id: int) -> Any:
        ds = self.dataset
        seen = ds.read_stats.damaged
        for batch in batches:
            if isinstance(batch, dict) and STATS_KEY in batch:
                consumer, stats = batch.pop(STATS_KEY)
                ds.note_reported((pass_id, consumer), stats)
            damaged = ds.read_stats.damaged
            if damaged != seen and self.on_read_stats is not None:
                self.on_read_stats(ds)
            seen = damaged
            yield batch


class _PassNumberingLoader(_ReportingLoader):
    """The train DataLoader: numbers its passes on the dataset (each pass's randomness follows from its number, not
    from a fresh seed) and hands a pending resume skip to the pass that starts next, once."""

    def __iter__(self):  # type: ignore[override]
        ds = self.dataset
        ds.epoch = (ds.epoch if ds.epoch is not None else -1) + 1
        it = super().__iter__()  # calls (or pickles for the workers) the dataset's __iter__, which reads the skip
        ds.skip_batches = 0
        return it


class HMADataModule(L.LightningDataModule):
    """Windows of heterogeneous robot videos and actions from one or more dataset folders / URLs.

    Args:
        data: dataset folder or URL prefix (holding ``manifest.json``), or a list of them.
        window: frames per window ``T``.
        batch_size: windows per batch (per rank).
        num_workers: DataLoader worker processes per rank (each reads a disjoint part of the data).
        frame_skip: stored frames per model frame, one int for all embodiments or ``{name: int}`` (missing
            names use 1); the model's stride is ``stored stride * frame_skip``.
        hop: model frames between window starts (default ``window``: non-overlapping windows).
        temperature: mixture temperature; component ``i`` is sampled with probability ``∝ n_i^(1/temperature)``
            (``n_i`` = windows), the paper's ``size^(1/3)``.
        weights: explicit mixture weights ``{embodiment: weight}`` (replaces the temperature rule).
        embodiments: keep only these embodiment names (default: all).
        max_episodes: cap the number of **train** episodes, one int for every embodiment or ``{name: int}``
            (missing names are not capped): the first ``n`` episodes in manifest order are kept, the val split is
            untouched (few-episode fine-tuning, e.g. 20 pusht episodes). Action statistics stay those of the
            manifest (the whole train split).
        train_mode: ``"resampled"`` (infinite shuffled stream, ``epoch_windows`` per epoch) or ``"finite"``
            (every train window exactly once per epoch).
        epoch_windows: windows per training epoch in resampled mode (default: the number of train windows).
        shuffle_buffer: episodes held per component for shuffling windows.
        seed: base seed of the sampling.
        on_error: ``"raise"`` (default) or ``"skip"`` damaged shards/episodes (counted and logged).
        pin_memory: DataLoader ``pin_memory``.
        rank, world_size: override the distributed rank (default: the trainer's, else torch.distributed /
            ``RANK`` / ``WORLD_SIZE``).
    """

    def __init__(
        self,
        data: str | list[str],
        window: int = 8,
        batch_size: int = 8,
        num_workers: int = 2,
        frame_skip: int | dict[str, int] = 1,
        hop: int | None = None,
        temperature: float = 3.0,
        weights: dict[str, float] | None = None,
        embodiments: list[str] | None = None,
        max_episodes: int | dict[str, int] | None = None,
        train_mode: Literal["resampled", "finite"] = "resampled",
        epoch_windows: int | None = None,
        shuffle_buffer: int = 8,
        seed: int = 0,
        on_error: Literal["raise", "skip"] = "raise",
        pin_memory: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        roots = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        if not roots:
            raise ValueError("HMADataModule needs at least one dataset path")
        self.manifests = [load_manifest(str(r)) for r in roots]
        kinds = {m["kind"] for m in self.manifests}
        if len(kinds) > 1:
            raise ValueError(f"cannot mix episode and token datasets in one DataModule: {roots}")
        self.kind = kinds.pop()
        sizes = {tuple(m["image_size"]) for m in self.manifests}
        if len(sizes) > 1:
            raise ValueError(f"datasets have different image sizes {sizes}; rebuild them at one size")
        self._image_size = sizes.pop()
        self.token_info = self.manifests[0].get("token_info")
        if self.kind == "tokens" and any(m.get("token_info") != self.token_info for m in self.manifests):
            raise ValueError("token datasets were written by different tokenizers; tokenize them with the same one")
        known = sorted({n for m in self.manifests for n in m["embodiments"]})
        if embodiments is not None and set(embodiments) - set(known):
            raise KeyError(f"unknown embodiments {sorted(set(embodiments) - set(known))}; the data has {known}")
        if isinstance(frame_skip, dict) and set(frame_skip) - set(known):
            raise KeyError(f"frame_skip names unknown embodiments {sorted(set(frame_skip) - set(known))}")
        self.frame_skip = frame_skip if isinstance(frame_skip, dict) else {n: int(frame_skip) for n in known}
        if isinstance(max_episodes, dict) and set(max_episodes) - set(known):
            raise KeyError(f"max_episodes names unknown embodiments {sorted(set(max_episodes) - set(known))}")
        caps = max_episodes if isinstance(max_episodes, dict) else \
            ({n: int(max_episodes) for n in known} if max_episodes is not None else None)
        if caps is not None and any(int(v) < 1 for v in caps.values()):
            raise ValueError(f"max_episodes must be >= 1, got {max_episodes}")
        self._window = int(window)
        self._components = {split: build_components(self.manifests, split, self._window, self.frame_skip, hop,
                                                     embodiments, caps if split == "train" else None)
                            for split in ("train", "val")}
        self._specs = self._embodiment_specs(embodiments)
        self.datasets: dict[str, WindowDataset] = {}

    # ---------------------------------------------------------------------------------- linked attributes
    def _embodiment_specs(self, only: list[str] | None) -> tuple[EmbodimentSpec, ...]:
        merged: dict[str, tuple[dict[str, Any], ActionStats]] = {}
        for m in self.manifests:
            for name, e in m["embodiments"].items():
                if only is not None and name not in only:
                    continue
                acc = merged.setdefault(name, (e, ActionStats(e["action_dim"])))[1]
                acc.merge(ActionStats.from_dict(e["action_dim"], e["action_stats"]))
        specs = []
        for name, (e, acc) in sorted(merged.items()):
            d = acc.to_dict()
            specs.append(EmbodimentSpec(name, e["action_dim"], e["stride"] * self.frame_skip.get(name, 1),
                                        tuple(d["mean"]), tuple(max(s, 1e-6) for s in d["std"])))
        return tuple(specs)

    @property
    def embodiments(self) -> tuple[EmbodimentSpec, ...]:
        """One :class:`EmbodimentSpec` per embodiment (stride = model frame stride, train-split action stats)."""
        return self._specs

    @property
    def max_chunk_dim(self) -> int:
        """``A_max``: the widest ``stride * action_dim`` over the embodiments (width of ``batch["actions"]``)."""
        return max(e.chunk_dim for e in self._specs)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the stored frames (of the frames that were tokenised, for token shards)."""
        return tuple(self._image_size)  # type: ignore[return-value]

    @property
    def window(self) -> int:
        """Frames per window ``T``."""
        return self._window

    def components(self, split: str = "train") -> list[Component]:
        return self._components[split]

    # ----------------------------------------------------------------------------------------- datasets
    def _rank(self) -> tuple[int, int]:
        hp = self.hparams
        if hp.rank is not None or hp.world_size is not None:
            return int(hp.rank or 0), int(hp.world_size or 1)
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        return _env_rank()

    def make_dataset(self, split: str, mode: str | None = None) -> WindowDataset:
        """The :class:`WindowDataset` of ``split`` (``"train"`` uses ``train_mode``, ``"val"`` is finite)."""
        hp = self.hparams
        rank, world = self._rank()
        mode = mode or (hp.train_mode if split == "train" else "finite")
        comps = self._components[split]
        if not any(c.size for c in comps):
            raise ValueError(f"split {split!r} has no windows of {self._window} frames; lower `window`/`frame_skip`"
                             " or build more data")
        return WindowDataset(
            comps, a_max=self.max_chunk_dim, kind=self.kind, mode=mode, temperature=hp.temperature,
            weights=hp.weights if split == "train" else None, epoch_windows=hp.epoch_windows,
            shuffle=split == "train", buffer_episodes=hp.shuffle_buffer, seed=hp.seed + (0 if split == "train" else 1),
            on_error=hp.on_error, rank=rank, world_size=world, pad=world > 1 and mode == "finite",
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.datasets["train"] = self.make_dataset("train")
        if stage in (None, "fit", "validate") and any(c.size for c in self._components["val"]):
            self.datasets["val"] = self.make_dataset("val")

    def _loader(self, ds: WindowDataset, cls: type[_ReportingLoader] = _ReportingLoader) -> DataLoader:
        hp = self.hparams
        ds.set_loader_geometry(hp.batch_size, hp.num_workers)
        ds.report_stats = True
        loader = cls(ds, batch_size=hp.batch_size, num_workers=hp.num_workers, collate_fn=collate_windows,
                     pin_memory=hp.pin_memory, persistent_workers=False,
                     prefetch_factor=4 if hp.num_workers > 0 else None)
        split = "train" if ds is self.datasets.get("train") else "val"
        loader.on_read_stats = lambda d: self._log_read_stats(split, d.read_stats)
        return loader

    def _log_read_stats(self, split: str, stats: ReadStats) -> None:
        """Log the skipped totals of ``split`` (summed over DataLoader workers) in the main process, and as metrics
        ``data/<split>_skipped_episodes``, ``..._missing_episodes``, ``..._skipped_shards`` when a trainer with a
        logger is attached."""
        log.warning("data (%s, all DataLoader workers): %d episodes read, %d damaged episodes skipped, %d missing "
                    "from their shards, %d damaged shards skipped so far; first: %s", split, stats.episodes,
                    stats.skipped_episodes, stats.missing_episodes, stats.skipped_shards, stats.messages[:1])
        trainer = getattr(self, "trainer", None)
        logger = getattr(trainer, "logger", None) if trainer is not None else None
        if logger is not None:
            logger.log_metrics({f"data/{split}_skipped_episodes": stats.skipped_episodes,
                                f"data/{split}_missing_episodes": stats.missing_episodes,
                                f"data/{split}_skipped_shards": stats.skipped_shards}, step=trainer.global_step)

    def train_dataloader(self) -> DataLoader:
        if "train" not in self.datasets:
            self.setup("fit")
        ds = self.datasets["train"]
        if ds.epoch is None:
            ds.epoch = -1  # the loader numbers the passes 0, 1, ...
        return self._loader(ds, _PassNumberingLoader)

    # ---------------------------------------------------------------------------------- exact resume
    def state_dict(self) -> dict[str, Any]:
        """Where the training stream stands, saved in Lightning checkpoints: the pass (epoch) and the batches of it
        already trained on. With :meth:`load_state_dict` a resumed run (``--ckpt_path``) continues with exactly the
        windows, in the order and with the random phases, that the uninterrupted run would have seen next."""
        ds = self.datasets.get("train")
        trainer = self.trainer
        if ds is None or ds.epoch is None or trainer is None:
            return {}
        processed = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        epoch, done = int(ds.epoch), processed
        per_pass = len(ds) // self.hparams.batch_size if ds._geometry is not None else None
        if per_pass is not None and done >= per_pass:  # the pass is over: the next starts from its beginning
            epoch, done = epoch + 1, 0
        return {"epoch": epoch, "batches_done": done, "seed": int(self.hparams.seed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (Lightning calls it on resume, before it asks for the train loader)."""
        if not state:
            return
        if int(state.get("seed", self.hparams.seed)) != int(self.hparams.seed):
            log.warning("resuming with data seed %s, the checkpoint was written with %s: the stream differs",
                        self.hparams.seed, state.get("seed"))
        if "train" not in self.datasets:
            self.setup("fit")
        ds = self.datasets["train"]
        ds.epoch = int(state["epoch"]) - 1  # the loader's next pass is the saved one
        ds.skip_batches = int(state["batches_done"])
        log.info("data: resuming pass %d after %d batches", state["epoch"], state["batches_done"])

    def val_dataloader(self) -> DataLoader | list:
        if "val" not in self.datasets:
            self.setup("validate")
        if "val" not in self.datasets:
            log.warning("no validation windows in %s; validation is skipped", self.hparams.data)
            return []
        return self._loader(self.datasets["val"])
