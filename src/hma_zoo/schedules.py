"""The learning-rate schedule shared by every trainer of the project: linear warm-up, then constant or cosine.

Used by :class:`hma_zoo.lit.HMALitModule` and :class:`hma_zoo.lit.TokenizerLitModule` (which
:func:`hma_zoo.tokenizers.train.train_tokenizer` runs): one implementation, so they cannot drift apart.
"""

from __future__ import annotations

import math


def warmup_schedule(
    step: int,
    warmup_steps: int,
    schedule: str = "cosine",
    total_steps: int | None = None,
    min_lr_ratio: float = 0.1,
    progress_floor: float = 0.0,
) -> float:
    """Learning-rate multiplier at optimiser ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup_steps`` over the first ``warmup_steps`` steps, then ``constant`` (1) or
    ``cosine`` decay from 1 to ``min_lr_ratio`` at ``total_steps`` (and ``min_lr_ratio`` after it).

    Args:
        step: optimiser step.
        warmup_steps: steps of linear warm-up (0: none).
        schedule: ``"constant"`` or ``"cosine"``.
        total_steps: the step at which the cosine reaches ``min_lr_ratio`` (needed by ``cosine``).
        min_lr_ratio: final multiplier of the cosine.
        progress_floor: the cosine is at least this far along (in ``[0, 1]``); e.g. the elapsed fraction of a
            time budget, so a run stopped by the clock still ends decayed.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    if total_steps is None:
        raise ValueError("the cosine schedule needs total_steps (or a Trainer with max_steps)")
    progress = min(1.0, max((step - warmup_steps) / max(1, total_steps - warmup_steps), progress_floor))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
