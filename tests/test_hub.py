"""Hub format: folders, local-dir:, the offline hub cache, clear errors, no unpickling, rendered cards."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from hma_zoo import create_model, hub, load_pretrained, save_pretrained
from hma_zoo.cards import render_card, write_card
from hma_zoo.configs import EmbodimentSpec

EMB = [EmbodimentSpec("arm", action_dim=2, stride=2)]


def _model():
    return create_model("hma-vq-test", embodiments=EMB).eval()


def _fake_hub_cache(cache: Path, repo: str, folder: Path, revision: str = "a" * 40) -> None:
    """Lay out ``folder`` the way huggingface_hub stores a downloaded snapshot in its cache."""
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(revision)
    snap = root / "snapshots" / revision
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        shutil.copy(f, snap / f.name)


def test_load_from_offline_hub_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = _model()
    save_pretrained(model, tmp_path / "saved")
    _fake_hub_cache(tmp_path / "cache", "hma-zoo/hma-vq-test.demo", tmp_path / "saved")
    folder = hub.resolve("hf-hub:hma-zoo/hma-vq-test.demo", cache_dir=str(tmp_path / "cache"))
    assert (folder / "model.safetensors").is_file()
    loaded = hub.load_pretrained("hma-zoo/hma-vq-test.demo", cache_dir=str(tmp_path / "cache"))
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_missing_repo_offline_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        hub.resolve("nobody/nothing", cache_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="neither an existing folder"):
        hub.resolve("not-a-folder-or-repo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        hub.resolve(f"local-dir:{tmp_path / 'empty'}")


def test_local_dir_prefix_and_kind_check(tmp_path) -> None:
    save_pretrained(_model(), tmp_path / "m")
    assert load_pretrained(f"local-dir:{tmp_path / 'm'}").config.embodiment_names == ("arm",)
    with pytest.raises(ValueError, match="not a 'tokenizer'"):
        hub.load_pretrained(tmp_path / "m", kind="tokenizer")


def test_weights_are_safetensors_not_pickle(tmp_path) -> None:
    save_pretrained(_model(), tmp_path / "m")
    raw = (tmp_path / "m" / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    assert "trunk.blocks.0.spatial.qkv.weight" in header
    with pytest.raises(pickle.UnpicklingError):  # not a pickle stream: nothing to unpickle on load
        pickle.loads(raw)
    payload = json.loads((tmp_path / "m" / "config.json").read_text())
    assert payload["hma_zoo_kind"] == "hma" and payload["config"]["embodiments"][0]["name"] == "arm"


def test_card_is_rendered_from_measured_meta(tmp_path) -> None:
    meta = {"variant": "hma-vq-test", "tag": "demo", "data": "sim-mix-mini", "params": "52k",
            "metrics": {"psnr": 23.5, "arm": {"psnr": 22.1, "delta_psnr": 0.8}}, "machine": "2-core CPU"}
    save_pretrained(_model(), tmp_path / "m", meta=meta)
    path = write_card(tmp_path / "m", cards_dir=tmp_path / "cards")
    text = path.read_text()
    assert text.startswith("---\nlibrary_name: hma_zoo")
    assert "| psnr | 23.5 |" in text and "| arm | 0.8 | 22.1 |" in text
    assert "| arm | 2 | 2 |" in text  # embodiment table from the config
    assert (tmp_path / "cards" / "hma-vq-test.demo.md").read_text() == text
    assert "No metrics" in render_card({"hma_zoo_kind": "hma", "config": _model().config.to_dict(), "meta": {}})
