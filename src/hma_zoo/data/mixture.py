"""Mixture weights across datasets/embodiments: temperature sampling with optional explicit weights.

With temperature ``tau`` a component of ``n_i`` windows is drawn with probability ``n_i^(1/tau) / sum_j n_j^(1/tau)``
(the paper uses ``tau = 3``, i.e. ``size^(1/3)``): ``tau = 1`` samples proportionally to size, large ``tau``
approaches uniform over components.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

log = logging.getLogger(__name__)


def mixture_weights(sizes: Mapping[str, int], temperature: float = 3.0,
                    weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Normalised sampling probabilities of each component.

    Args:
        sizes: component name -> number of windows.
        temperature: ``tau > 0``; probabilities are proportional to ``size^(1/tau)``.
        weights: explicit (unnormalised) weights by component name; when given they replace the temperature
            rule, and components not listed get weight 0. Unknown names raise ``KeyError``.

    Components of size 0 always get probability 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if weights is not None:
        unknown = set(weights) - set(sizes)
        if unknown:
            raise KeyError(f"weights name unknown components {sorted(unknown)}; known: {sorted(sizes)}")
        if any(w < 0 for w in weights.values()):
            raise ValueError("explicit mixture weights must be >= 0")
        raw = {k: float(weights.get(k, 0.0)) if sizes[k] > 0 else 0.0 for k in sizes}
        missing = [k for k in sizes if k not in weights]
        if missing:
            log.info("mixture weights: components %s not listed, they get weight 0", missing)
    else:
        raw = {k: float(n) ** (1.0 / temperature) if n > 0 else 0.0 for k, n in sizes.items()}
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"every mixture component has weight 0 (sizes {dict(sizes)}, weights {weights})")
    return {k: v / total for k, v in raw.items()}
