"""Data sources: simulator families (``dmc``, ``gym``, ``pusht``, ``metaworld``) and importers (``files``,
``lerobot``). Simulator modules are imported lazily, one family per worker process."""

from hma_zoo.data.sources.base import FAMILIES, Policy, SourceSpec, episode_seed, make_generator

__all__ = ["FAMILIES", "Policy", "SourceSpec", "episode_seed", "make_generator"]
