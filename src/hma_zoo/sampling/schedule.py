"""Unmasking schedules shared by the MaskGIT and MAR samplers."""

from __future__ import annotations

import math


def masked_after_step(step: int, steps: int, total: int) -> int:
    """Tokens still hidden after ``step`` (0-based) of ``steps`` on a cosine schedule (MaskGIT, Chang et al. 2022).

    Strictly decreasing from ``total`` (at least one token is revealed per step) and 0 after the last step.
    """
    if step >= steps - 1:
        return 0
    n = math.floor(total * math.cos(math.pi / 2 * (step + 1) / steps))
    return max(0, min(n, total - (step + 1)))
