"""Tiny models and batches shared by the model tests."""

from __future__ import annotations

import torch

from hma_zoo import create_model
from hma_zoo.configs import EmbodimentSpec

EMBODIMENTS = (
    EmbodimentSpec("arm", action_dim=2, stride=2, action_mean=(0.5, -0.5), action_std=(2.0, 0.5)),
    EmbodimentSpec("cart", action_dim=1, stride=1),
    EmbodimentSpec("hand", action_dim=3, stride=1),
)
A_MAX = 4


def tiny(kind: str = "vq", mode: str = "concat+adaln", **kw):
    """A tiny model in eval mode (no dropout), float64 for exact comparisons."""
    model = create_model(f"hma-{kind}-test", embodiments=EMBODIMENTS, conditioning={"mode": mode,
                         "action_dropout": 0.0}, **kw)
    # Perturb every weight: zero-initialised branches (adaLN-Zero, mask tokens) would otherwise hide paths.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.double().eval()


def batch(model, b: int = 3, t: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    spec = model.config.tokens
    if spec.kind == "vq":
        tokens = torch.randint(0, spec.vocab_size, (b, t, *spec.grid), generator=g)
    else:
        tokens = torch.randn(b, t, *spec.grid, spec.latent_channels, generator=g, dtype=torch.float64)
    actions = torch.randn(b, t, A_MAX, generator=g, dtype=torch.float64)
    names = [EMBODIMENTS[i % len(EMBODIMENTS)].name for i in range(b)]
    return tokens, actions, names
