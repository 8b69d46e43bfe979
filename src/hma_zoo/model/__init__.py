"""The HMA world model: stems -> spatial-temporal trunk -> heads (plain PyTorch, no Lightning)."""

from hma_zoo.model.hma import HMA
from hma_zoo.model.trunk import KVCache, STBlock, Trunk

__all__ = ["HMA", "KVCache", "STBlock", "Trunk"]
