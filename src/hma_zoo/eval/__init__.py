"""Evaluation: metrics, teacher-forced and autoregressive rollouts, baselines, own-feature video distance.

::

    from hma_zoo.eval import evaluate
    result = evaluate(model, tokenizer, "data/sim-mix-mini", max_windows=32, out_dir="outputs/eval")
    print(result["markdown"])

Command line: ``hma-zoo evaluate --ckpt PATH_OR_REPO --tokenizer PATH --data DIR [--rollout]``.
"""

from __future__ import annotations

from typing import Any


def evaluate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`hma_zoo.eval.rollout.evaluate`."""
    from hma_zoo.eval.rollout import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


__all__ = ["evaluate"]
