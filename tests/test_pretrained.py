"""Shipped weights (``pretrained/<variant>.<tag>``): names resolve offline, a world model folder bundles its
tokenizer, and ``load_simulator`` / ``hma-zoo evaluate --model`` work from the name alone."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import hma_zoo
from hma_zoo import pretrained
from hma_zoo.configs import EmbodimentSpec
from hma_zoo.hub import save_pretrained
from hma_zoo.pretrained import NoPretrainedWeightsError
from hma_zoo.tokenizers import check_compatible, list_tokenizers, load_tokenizer
from tests.shipped_helpers import ship_tiny


@pytest.fixture
def shipped_dir(tmp_path, monkeypatch):
    root = tmp_path / "pretrained"
    model = ship_tiny(root, monkeypatch, EmbodimentSpec("arm", action_dim=2))
    save_pretrained(model, root / "hma-vq-test.notok")
    monkeypatch.setattr(pretrained, "_REGISTERED", {})
    return root


def test_shipped_names_resolve_and_load_a_simulator(shipped_dir) -> None:
    assert set(pretrained.shipped("hma")) == {"hma-vq-test.unit", "hma-vq-test.notok"}
    assert set(pretrained.shipped("tokenizer")) == {"tok-vq-test.unit"}
    assert hma_zoo.list_models(pretrained=True) == ["hma-vq-test.notok", "hma-vq-test.unit"]
    tok = load_tokenizer("tok-vq-test.unit")
    assert tok.spec.grid == (8, 8)
    model = hma_zoo.create_model("hma-vq-test.unit", pretrained=True)
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


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_pretrained_table_is_built_from_the_shipped_folders(shipped_dir) -> None:
    table = pretrained.pretrained_cfgs()
    assert list(table) == ["hma-vq-test.notok", "hma-vq-test.unit", "tok-vq-test.unit"]
    unit = table["hma-vq-test.unit"]
    assert (unit.kind, unit.architecture, unit.folder) == ("hma", "hma-vq-test", shipped_dir / "hma-vq-test.unit")
    assert unit.tokenizer == str(shipped_dir / "hma-vq-test.unit" / "tokenizer") and unit.license == "apache-2.0"
    assert table["hma-vq-test.notok"].tokenizer is None and table["tok-vq-test.unit"].kind == "tokenizer"
    assert list_tokenizers(pretrained=True) == ["tok-vq-test.unit"]


def test_create_model_pretrained_loads_the_weights_or_raises(shipped_dir) -> None:
    saved = hma_zoo.load_pretrained(str(shipped_dir / "hma-vq-test.unit"))
    loaded = hma_zoo.create_model("hma-vq-test.unit", pretrained=True)
    assert _same_weights(loaded, saved)
    # the world model and its tokenizer from the one name: the table row says where the tokenizer is
    assert load_tokenizer(loaded.pretrained_cfg.tokenizer).spec.token_spec() == loaded.config.tokens
    fresh = hma_zoo.create_model("hma-vq-test.unit")  # timm: a tag without pretrained=True is fresh weights
    assert fresh.config == saved.config and not _same_weights(fresh, saved)
    with pytest.raises(NoPretrainedWeightsError, match="no pretrained weights for 'hma-mar-test'.*hma-vq-test.unit"):
        hma_zoo.create_model("hma-mar-test", pretrained=True)  # never random weights in their place
    with pytest.raises(NoPretrainedWeightsError, match="several tags"):
        hma_zoo.create_model("hma-vq-test", pretrained=True)
    with pytest.raises(NoPretrainedWeightsError, match="'hma-vq-test.nope'.*tags: hma-vq-test.notok"):
        hma_zoo.create_model("hma-vq-test.nope", pretrained=True)
    with pytest.raises(NoPretrainedWeightsError, match="is a tokenizer"):
        hma_zoo.create_model("tok-vq-test.unit", pretrained=True)
    with pytest.raises(TypeError, match="overrides"):
        hma_zoo.create_model("hma-vq-test.unit", pretrained=True, embodiments=[])
    shutil.rmtree(shipped_dir / "hma-vq-test.notok")
    assert _same_weights(hma_zoo.create_model("hma-vq-test", pretrained=True), saved)  # a variant's only tag


def test_a_registered_hub_tag_loads_from_the_hub_cache(shipped_dir, tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    cache = tmp_path / "hub-cache"
    snap = cache / "models--org--hma-vq-test.hub" / "snapshots" / ("a" * 40)
    shutil.copytree(shipped_dir / "hma-vq-test.unit", snap)  # the tokenizer/ subfolder too
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    pretrained.register_pretrained("hma-vq-test.hub", "org/hma-vq-test.hub")
    assert "hma-vq-test.hub" in hma_zoo.list_models(pretrained=True)
    model = hma_zoo.create_model("hma-vq-test.hub", pretrained=True)
    assert _same_weights(model, hma_zoo.load_pretrained(str(shipped_dir / "hma-vq-test.unit")))
    sim = hma_zoo.load_simulator("hf-hub:org/hma-vq-test.hub")  # its bundled tokenizer comes from the cache too
    assert sim.model.config.tokens.grid == (8, 8)
    pretrained.register_pretrained("hma-vq-test.gone", "org/not-cached")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        hma_zoo.create_model("hma-vq-test.gone", pretrained=True)


def test_the_repository_weights_load_offline_by_tag() -> None:
    """A fresh clone: every shipped tag loads from its name alone, with no network."""
    assert hma_zoo.list_models(pretrained=True) == ["hma-mar-t64.simmix", "hma-vq-t64.sawyer-tasks",
                                                    "hma-vq-t64.simmix"]
    assert list_tokenizers(pretrained=True) == ["tok-kl-f4-c4.simmix", "tok-vq-f4-4k.simmix", "tok-vq-f8-1k.simmix"]
    model = hma_zoo.create_model("hma-vq-t64.simmix", pretrained=True)
    assert model.config.embodiment_names == ("dmc_cartpole", "dmc_cheetah", "metaworld_sawyer", "pusht")
    check_compatible(load_tokenizer(model.pretrained_cfg.tokenizer).spec, model.config.tokens)  # raises if not
    table = pretrained.pretrained_cfgs()
    assert table["hma-vq-t64.simmix"].data == "sim-mix-mini" and table["hma-vq-t64.simmix"].metrics_file
    assert table["tok-vq-f8-1k.simmix"].data == "sim-mix"
    for tag in list_tokenizers(pretrained=True):
        assert load_tokenizer(tag).spec.grid[0] in (8, 16)
