"""Shared fixtures of the training tests: tiny specs and token batches (no tokenizer, no Trainer)."""

from __future__ import annotations

import os

import pytest
import torch

from hma_zoo.configs import EmbodimentSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def embodiments() -> tuple[EmbodimentSpec, ...]:
    return (EmbodimentSpec("arm", 2, 1, (0.0, 0.0), (1.0, 1.0)), EmbodimentSpec("hand", 3, 2))


def token_batch(b: int = 4, t: int = 4, names: tuple[str, ...] = ("arm", "hand"), a_max: int = 6,
                seed: int = 0) -> dict:
    """A learnable vq batch for hma-vq-test (4x4 grid, vocab 64): each frame is the previous one shifted by one
    id along the grid, starting from a per-sample random frame."""
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(0, 64, (b, 1, 4, 4), generator=g)
    tokens = torch.cat([(first + k) % 64 for k in range(t)], dim=1)
    return {
        "tokens": tokens,
        "actions": torch.randn(b, t, a_max, generator=g),
        "action_valid": torch.ones(b, t, dtype=torch.bool),
        "embodiment": [names[i % len(names)] for i in range(b)],
    }
