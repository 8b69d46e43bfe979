"""`hma-zoo push`: the exact folder a hub repo gets (weights, config, card, bundled tokenizer), built and checked
offline; only huggingface_hub.upload_folder (the network call) is replaced."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard

import hma_zoo
from hma_zoo.cards import card_problems
from hma_zoo.cli import main
from hma_zoo.configs import EmbodimentSpec
from hma_zoo.publish import push, stage
from tests.shipped_helpers import ship_tiny

FILES = ["README.md", "config.json", "model.safetensors", "tokenizer/README.md", "tokenizer/config.json",
         "tokenizer/model.safetensors"]


@pytest.fixture
def shipped_dir(tmp_path, monkeypatch):
    root = tmp_path / "pretrained"
    ship_tiny(root, monkeypatch, EmbodimentSpec("arm", action_dim=2))
    return root


@pytest.fixture
def uploads(monkeypatch, tmp_path):
    """Replace upload_folder: record its arguments and copy the folder it was given (it is deleted after)."""
    calls: list[dict] = []

    def upload_folder(**kwargs):
        kept = tmp_path / f"uploaded-{len(calls)}"
        shutil.copytree(kwargs["folder_path"], kept)
        calls.append({**kwargs, "kept": kept})
        return "https://huggingface.co/org/repo/commit/abc"

    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    return calls


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_push_uploads_the_exact_folder(shipped_dir, uploads, capsys) -> None:
    assert main(["push", "hma-vq-test.unit", "org/hma-vq-test.unit"]) == 0
    (call,) = uploads
    assert (call["repo_id"], call["repo_type"]) == ("org/hma-vq-test.unit", "model")
    assert call["commit_message"] == "hma-zoo push hma-vq-test.unit" and call["revision"] is None
    kept, src = call["kept"], shipped_dir / "hma-vq-test.unit"
    assert _files(kept) == FILES
    for f in ("config.json", "model.safetensors", "tokenizer/config.json", "tokenizer/model.safetensors"):
        assert (kept / f).read_bytes() == (src / f).read_bytes(), f
    card = (kept / "README.md").read_text()
    assert card_problems(card, required=("library_name", "pipeline_tag", "license", "tags")) == []
    assert 'create_model("hf-hub:org/hma-vq-test.unit", pretrained=True)' in card
    assert ModelCard.load(kept / "tokenizer" / "README.md").data.library_name == "hma_zoo"
    assert not Path(call["folder_path"]).exists()  # the temporary staging folder is gone
    assert "uploaded 6 files to https://huggingface.co/org/hma-vq-test.unit" in capsys.readouterr().out


def test_the_pushed_repo_loads_by_hub_id_from_the_cache(shipped_dir, uploads, tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    push("hma-vq-test.unit", "org/pushed")
    cache = tmp_path / "hub-cache"
    snap = cache / "models--org--pushed" / "snapshots" / ("b" * 40)
    shutil.copytree(uploads[0]["kept"], snap)  # what a download of the pushed repo lays out
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("b" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    sim = hma_zoo.load_simulator("hf-hub:org/pushed")
    original = hma_zoo.create_model("hma-vq-test.unit", pretrained=True)
    for a, b in zip(original.state_dict().values(), sim.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_dry_run_prints_the_files_and_uploads_nothing(shipped_dir, uploads, tmp_path, capsys) -> None:
    staged = tmp_path / "staged"
    assert main(["push", "hma-vq-test.unit", "org/x", "--dry-run", "--staging-dir", str(staged)]) == 0
    assert uploads == []
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "would upload 6 files to https://huggingface.co/org/x:"
    assert [line.split()[0] for line in out[1:]] == FILES
    assert _files(staged) == FILES  # kept for inspection
    assert main(["push", "tok-vq-test.unit", "org/tok", "--dry-run"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == FILES[:3]


def test_push_refuses_what_a_hub_would_not_take(shipped_dir, uploads, tmp_path) -> None:
    with pytest.raises(ValueError, match="org/name"):
        push("hma-vq-test.unit", "no-org", dry_run=True)
    with pytest.raises(ValueError):
        push("hma-vq-test.unit", "org/bad name", dry_run=True)
    with pytest.raises(FileNotFoundError, match="hma-vq-test.unit"):
        push("hma-vq-test.nope", "org/x", dry_run=True)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(FileExistsError):
        stage("hma-vq-test.unit", tmp_path / "busy")
    assert uploads == []


def test_a_first_push_creates_the_repo(shipped_dir, monkeypatch) -> None:
    from huggingface_hub.errors import RepositoryNotFoundError

    calls = []

    def upload_folder(**kwargs):
        calls.append("upload")
        if len(calls) == 1:
            raise RepositoryNotFoundError("404", response=SimpleNamespace(headers={}, request=None))
        return "commit"

    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    monkeypatch.setattr(huggingface_hub, "create_repo",
                        lambda repo_id, **kw: calls.append(("create", repo_id, kw["private"], kw["exist_ok"])))
    assert push("hma-vq-test.unit", "org/new", private=True)[1] == "commit"
    assert calls == ["upload", ("create", "org/new", True, True), "upload"]
