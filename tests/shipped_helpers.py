"""A tiny set of "shipped" weights in a temporary ``pretrained/`` folder, for the tests of shipped-name loading."""

from __future__ import annotations

from pathlib import Path

import torch

import hma_zoo
from hma_zoo import pretrained
from hma_zoo.configs import EmbodimentSpec
from hma_zoo.hub import save_pretrained
from hma_zoo.tokenizers import create_tokenizer


def ship_tiny(root: Path, monkeypatch, embodiment: EmbodimentSpec) -> torch.nn.Module:
    """Make ``root`` the shipped-weights folder and write ``tok-vq-test.unit`` and ``hma-vq-test.unit`` (one
    ``embodiment``, tokenizer bundled) into it; returns the world model."""
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(pretrained, "SHIPPED_DIR", root)
    torch.manual_seed(0)
    tok = create_tokenizer("tok-vq-test").eval()
    save_pretrained(tok, root / "tok-vq-test.unit")
    model = hma_zoo.create_model("hma-vq-test", embodiments=[embodiment], tokens=tok.spec.token_spec())
    save_pretrained(model, root / "hma-vq-test.unit", meta={"variant": "hma-vq-test"})
    pretrained.bundle_tokenizer(root / "hma-vq-test.unit", root / "tok-vq-test.unit")
    return model
