"""Shipped weights (``pretrained/<variant>.<tag>``): names resolve offline, a world model folder bundles its
tokenizer, and ``load_simulator`` / ``hma-zoo evaluate --model`` work from the name alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hma_zoo
from hma_zoo import pretrained
from hma_zoo.configs import EmbodimentSpec
from hma_zoo.hub import save_pretrained
from hma_zoo.tokenizers import load_tokenizer
from tests.shipped_helpers import ship_tiny


@pytest.fixture
def shipped_dir(tmp_path, monkeypatch):
    root = tmp_path / "pretrained"
    model = ship_tiny(root, monkeypatch, EmbodimentSpec("arm", action_dim=2))
    save_pretrained(model, root / "hma-vq-test.notok")
    return root


def test_shipped_names_resolve_and_load_a_simulator(shipped_dir) -> None:
    assert set(pretrained.shipped("hma")) == {"hma-vq-test.unit", "hma-vq-test.notok"}
    assert set(pretrained.shipped("tokenizer")) == {"tok-vq-test.unit"}
    assert "hma-vq-test.unit" in hma_zoo.list_models(pretrained=True)
    tok = load_tokenizer("tok-vq-test.unit")
    assert tok.spec.grid == (8, 8)
    model = hma_zoo.create_model("hma-vq-test.unit")
    assert model.config.embodiment_names == ("arm",)
    sim = hma_zoo.load_simulator("hma-vq-test.unit", temperature=0.0)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8))
    sim.reset(frames, embodiment="arm")
    nxt = sim.step([0.5, -0.5])  # a plain list of raw values is an action too
    assert nxt.shape == (64, 64, 3) and nxt.dtype == torch.uint8


def test_a_model_without_its_tokenizer_says_how_to_pass_one(shipped_dir) -> None:
    with pytest.raises(FileNotFoundError, match="bundles no tokenizer.*tokenizer="):
        hma_zoo.load_simulator("hma-vq-test.notok")
    sim = hma_zoo.load_simulator("hma-vq-test.notok", tokenizer="tok-vq-test.unit")
    assert sim.model.config.tokens.grid == (8, 8)


def test_evaluate_takes_a_shipped_name_and_its_bundled_tokenizer(shipped_dir, capsys) -> None:
    from hma_zoo.eval.commands import main

    assert main(["--model", "hma-vq-test.notok", "--data", str(shipped_dir)]) == 2
    assert "bundles no tokenizer" in capsys.readouterr().out
