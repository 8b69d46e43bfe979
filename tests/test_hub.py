"""Hub format: folders, local-dir:, the offline hub cache, clear errors, no unpickling, rendered cards."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from hma_zoo import create_model, hub, load_pretrained, save_pretrained
from hma_zoo.cards import card_problems, render_card, write_card
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
            "metrics": {"psnr": 23.5, "arm (rollout)": {"psnr": 22.1, "delta_psnr": 0.8}}, "machine": "2-core CPU"}
    save_pretrained(_model(), tmp_path / "m", meta=meta)
    path = write_card(tmp_path / "m", cards_dir=tmp_path / "cards")
    text = path.read_text()
    assert card_problems(text) == []
    data = ModelCard.load(path).data
    assert data.library_name == "hma_zoo" and data.pipeline_tag == "robotics" and data.license == "apache-2.0"
    assert data.datasets == ["sim-mix-mini"] and {"vq", "hma", "world-model", "arm"} <= set(data.tags)
    assert data.model_name == "hma-vq-test.demo" and data.base_model is None
    index = {(r.task_name, r.dataset_config, r.metric_type): r.metric_value for r in data.eval_results}
    assert index[("action-conditioned video prediction (rollout)", "arm, rollout", "psnr")] == 22.1
    assert index[("action-conditioned video prediction", None, "psnr")] == 23.5
    assert "| psnr | 23.5 |" in text and "| arm (rollout) | 0.8 | 22.1 |" in text
    assert "| arm | 2 | 2 |" in text  # embodiment table from the config
    assert (tmp_path / "cards" / "hma-vq-test.demo.md").read_text() == text
    empty = render_card({"hma_zoo_kind": "hma", "config": _model().config.to_dict(), "meta": {}})
    assert "No metrics" in empty and "model-index" not in empty
    assert card_problems(empty) == ["missing datasets", "missing model-index"]


def _tokenizer_meta_card(tmp_path, meta) -> tuple[str, ModelCard]:
    from hma_zoo.tokenizers import create_tokenizer

    save_pretrained(create_tokenizer("tok-vq-test"), tmp_path / "tok-vq-test.unit", meta=meta)
    path = write_card(tmp_path / "tok-vq-test.unit")
    return path.read_text(), ModelCard.load(path)


def test_tokenizer_card_reads_the_keys_its_writers_write(tmp_path) -> None:
    """The review found "Data: not recorded" / "No metrics" on the shipped tokenizer: the plain training loop
    writes ``data_dir`` / ``val``, the Lightning export ``final_metrics``; the card reads them all."""
    loop = {"variant": "tok-vq-test", "data_dir": "data/sim-mix/", "train": {"steps": 10, "psnr": 20.0},
            "val": {"all": {"psnr": 28.19, "ssim": 0.9, "frames": 1920.0}, "pusht": {"psnr": 26.3, "ssim": 0.91}}}
    text, card = _tokenizer_meta_card(tmp_path / "a", loop)
    assert "not recorded" not in text and "No metrics" not in text and card_problems(text) == []
    assert card.data.datasets == ["sim-mix"] and card.data.model_name == "tok-vq-test.unit"
    assert {"video-tokenizer", "vq", "pusht"} <= set(card.data.tags)
    assert {(r.metric_type, r.metric_value) for r in card.data.eval_results} == {("psnr", 28.19), ("ssim", 0.9)}
    assert "| pusht |  | 26.3 | 0.91 |" in text and '"steps": 10' in text
    lit = {"variant": "tok-vq-test", "data": "sim-mix-mini", "global_step": 5,
           "final_metrics": {"train/loss": 0.5, "val/psnr": 30.5}}
    text, card = _tokenizer_meta_card(tmp_path / "b", lit)
    assert {(r.metric_type, r.metric_value) for r in card.data.eval_results} == {("psnr", 30.5)}
    assert "logged at the end of training" in text and card_problems(text) == []


def test_fine_tune_card_names_its_base_model(tmp_path) -> None:
    save_pretrained(_model(), tmp_path / "hub", meta={"variant": "hma-vq-test", "base_model": "org/hma-vq-base"})
    save_pretrained(_model(), tmp_path / "local", meta={"variant": "hma-vq-test", "base_model": str(tmp_path)})
    assert ModelCard.load(write_card(tmp_path / "hub")).data.base_model == "org/hma-vq-base"
    local = write_card(tmp_path / "local")
    assert ModelCard.load(local).data.base_model is None  # a local path is no hub model id
    assert f"Fine-tuned from `{tmp_path}`" in local.read_text()


def test_hub_ids_are_read_from_the_cache_before_the_hub(tmp_path, monkeypatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def snapshot(repo_id, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("not cached")
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    assert hub.resolve("org/name") == tmp_path
    assert calls == [True, False]  # the cache first, then the hub
    calls.clear()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: calls.append(kw) or str(tmp_path))
    hub.resolve("org/name")
    assert len(calls) == 1 and calls[0]["local_files_only"] and "tokenizer/model.safetensors" in calls[0][
        "allow_patterns"]
