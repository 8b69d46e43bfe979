"""Heterogeneous robot action-video data: shard format, simulator sources, importers, windows, DataModule.

Imports are lazy so that simulator worker processes never import torch or Lightning::

    from hma_zoo.data import HMADataModule, DatasetWriter, Episode, EmbodimentInfo, load_manifest
"""

from __future__ import annotations

from hma_zoo._lazy import lazy_getattr

_LAZY: dict[str, str] = {
    "Episode": "hma_zoo.data.schema",
    "EmbodimentInfo": "hma_zoo.data.schema",
    "EpisodeError": "hma_zoo.data.schema",
    "ImporterError": "hma_zoo.data.schema",
    "validate_episode": "hma_zoo.data.schema",
    "split_for_index": "hma_zoo.data.schema",
    "DatasetWriter": "hma_zoo.data.shards",
    "ShardError": "hma_zoo.data.shards",
    "DataError": "hma_zoo.data.shards",
    "ShardExpectation": "hma_zoo.data.shards",
    "ReadStats": "hma_zoo.data.shards",
    "iter_episodes": "hma_zoo.data.shards",
    "load_manifest": "hma_zoo.data.shards",
    "write_manifest": "hma_zoo.data.shards",
    "WindowSpec": "hma_zoo.data.windows",
    "window_starts": "hma_zoo.data.windows",
    "num_windows": "hma_zoo.data.windows",
    "extract_window": "hma_zoo.data.windows",
    "mixture_weights": "hma_zoo.data.mixture",
    "HMADataModule": "hma_zoo.data.datamodule",
    "WindowDataset": "hma_zoo.data.loader",
    "collate_windows": "hma_zoo.data.loader",
    "SourceSpec": "hma_zoo.data.sources.base",
    "Policy": "hma_zoo.data.sources.base",
    "build_dataset": "hma_zoo.data.build",
    "build_mixture": "hma_zoo.data.build",
    "generate_episodes": "hma_zoo.data.build",
    "list_mixtures": "hma_zoo.data.build",
    "mixture_specs": "hma_zoo.data.build",
    "tokenize_dataset": "hma_zoo.data.tokenize",
    "import_folder": "hma_zoo.data.sources.files",
    "import_lerobot": "hma_zoo.data.sources.lerobot",
    "export_lerobot": "hma_zoo.data.lerobot_export",
    "ExportError": "hma_zoo.data.lerobot_export",
    "validate_dataset": "hma_zoo.data.commands",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
