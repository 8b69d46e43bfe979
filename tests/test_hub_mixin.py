"""World models and tokenizers carry huggingface_hub's ModelHubMixin: save_pretrained / from_pretrained /
push_to_hub write and read the zoo's own format (config.json + model.safetensors, never a pickle)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelHubMixin

from hma_zoo import create_model, hub
from hma_zoo.cards import LIBRARY_NAME, card_problems
from hma_zoo.configs import EmbodimentSpec
from hma_zoo.model import HMA
from hma_zoo.pretrained import SHIPPED_DIR
from hma_zoo.tokenizers import KLTokenizer, Tokenizer, VQTokenizer, create_tokenizer
from tests.test_hub import _fake_hub_cache

EMB = [EmbodimentSpec("arm", action_dim=2, stride=2)]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_mixin_round_trip_writes_the_zoo_format(tmp_path: Path) -> None:
    model = create_model("hma-vq-test", embodiments=EMB).eval()
    assert isinstance(model, ModelHubMixin)
    model.save_pretrained(tmp_path / "m")  # the mixin's method
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["README.md", "config.json", "model.safetensors"]
    payload = json.loads((tmp_path / "m" / "config.json").read_text())
    assert payload["hma_zoo_kind"] == "hma"  # the zoo's config.json, not the mixin's json of __init__ arguments
    assert payload["config"] == json.loads(json.dumps(model.config.to_dict()))
    card = (tmp_path / "m" / "README.md").read_text()  # our card (rendered from meta), not the mixin's template
    assert f"library_name: {LIBRARY_NAME}" in card and "\n# m\n" in card  # no variant recorded: the folder names it
    loaded = HMA.from_pretrained(tmp_path / "m")
    assert type(loaded) is HMA and loaded.config == model.config and _same_weights(loaded, model)
    # the same folder through the module-level loader: one format
    assert _same_weights(hub.load_pretrained(tmp_path / "m"), model)

    tok = create_tokenizer("tok-vq-test").eval()
    tok.save_pretrained(tmp_path / "t")
    back = Tokenizer.from_pretrained(f"local-dir:{tmp_path / 't'}")
    assert type(back) is VQTokenizer and back.spec == tok.spec and _same_weights(back, tok)


def test_from_pretrained_keeps_the_kind_and_class_checks(tmp_path: Path) -> None:
    create_tokenizer("tok-vq-test").save_pretrained(tmp_path / "t")
    with pytest.raises(ValueError, match="holds a 'tokenizer', not a 'hma'"):
        HMA.from_pretrained(tmp_path / "t")
    with pytest.raises(TypeError, match="holds a VQTokenizer, not a KLTokenizer"):
        KLTokenizer.from_pretrained(tmp_path / "t")
    with pytest.raises(TypeError, match="unexpected arguments"):
        VQTokenizer.from_pretrained(tmp_path / "t", vocab_size=4)


def test_from_pretrained_never_unpickles(tmp_path: Path, monkeypatch) -> None:
    """A folder holding only a pickled checkpoint is refused, and no unpickler is ever called."""
    model = create_model("hma-vq-test", embodiments=EMB)
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with open(tmp_path / "m" / "pytorch_model.bin", "wb") as f:
        pickle.dump({k: v.numpy() for k, v in model.state_dict().items()}, f)

    def refuse(*args, **kwargs):
        raise AssertionError("an unpickler was called")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    with pytest.raises(FileNotFoundError):
        HMA.from_pretrained(tmp_path / "m")


def test_shipped_tags_load_through_the_mixin_offline() -> None:
    if not (SHIPPED_DIR / "hma-vq-t64.simmix" / "config.json").is_file():
        pytest.skip("hma-vq-t64.simmix is not shipped here")
    model = HMA.from_pretrained("hma-vq-t64.simmix")
    assert _same_weights(model, hub.load_pretrained(SHIPPED_DIR / "hma-vq-t64.simmix", kind="hma"))
    assert model.pretrained_meta == json.loads((SHIPPED_DIR / "hma-vq-t64.simmix" / "config.json").read_text())["meta"]
    tok = VQTokenizer.from_pretrained("tok-vq-f4-4k.simmix")
    assert tok.spec.vocab_size == 4096


def test_hub_id_from_the_offline_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = create_model("hma-vq-test", embodiments=EMB).eval()
    model.save_pretrained(tmp_path / "saved")
    _fake_hub_cache(tmp_path / "cache", "hma-zoo/hma-vq-test.demo", tmp_path / "saved")
    for name in ("hma-zoo/hma-vq-test.demo", "hf-hub:hma-zoo/hma-vq-test.demo"):
        loaded = HMA.from_pretrained(name, cache_dir=tmp_path / "cache")
        assert _same_weights(loaded, model)
    with pytest.raises(FileNotFoundError, match="not in the local hub cache"):
        HMA.from_pretrained("hma-zoo/missing", cache_dir=tmp_path / "cache")


def test_push_to_hub_uploads_the_zoo_folder(tmp_path: Path, monkeypatch) -> None:
    """push_to_hub through the mixin, with only the network calls (create_repo, upload_folder) mocked."""
    seen: dict[str, object] = {}

    class _Repo:
        repo_id = "org/hma-vq-test.unit"

    def create_repo(self, repo_id, **kwargs):
        seen["create"] = repo_id
        return _Repo()

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        seen["repo"] = repo_id
        seen["files"] = sorted(p.name for p in folder.iterdir())
        seen["kind"] = json.loads((folder / "config.json").read_text())["hma_zoo_kind"]
        seen["card"] = (folder / "README.md").read_text()
        return "https://huggingface.co/org/hma-vq-test.unit/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model = create_model("hma-vq-test", embodiments=EMB)
    model.pretrained_meta = {"variant": "hma-vq-test", "tag": "unit", "data": "sim-mix-test",
                             "metrics": {"all": {"psnr": 21.5}}}
    url = model.push_to_hub("org/hma-vq-test.unit")
    assert url.endswith("/commit/0") and seen["create"] == seen["repo"] == "org/hma-vq-test.unit"
    assert seen["files"] == ["README.md", "config.json", "model.safetensors"] and seen["kind"] == "hma"
    card = str(seen["card"])
    assert card_problems(card) == [] and "sim-mix-test" in card and "21.5" in card
