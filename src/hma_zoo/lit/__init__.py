"""LightningModules, callbacks and the LightningCLI of hma_zoo (imported lazily: Lightning is heavy).

* :class:`HMALitModule` (``lit/world_model.py``): trains an HMA world model (losses, optimiser, logging).
* :class:`TokenizerLitModule` (``lit/tokenizer.py``): trains a video tokenizer.
* :mod:`hma_zoo.lit.masking`: the paper's token masking and corruption.
* :mod:`hma_zoo.lit.cli`: ``hma-zoo fit|validate|test|predict``.
"""

from __future__ import annotations

from hma_zoo._lazy import lazy_getattr

_LAZY: dict[str, str] = {
    "HMALitModule": "hma_zoo.lit.world_model",
    "TokenizerLitModule": "hma_zoo.lit.tokenizer",
    "MaskingConfig": "hma_zoo.lit.masking",
    "sample_masks": "hma_zoo.lit.masking",
    "VideoLoggingCallback": "hma_zoo.lit.callbacks",
    "ThroughputCallback": "hma_zoo.lit.callbacks",
    "HMACLI": "hma_zoo.lit.cli",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
