"""Fuzz tests (hypothesis) of ``load_pretrained`` (issue 15): a saved folder whose ``config.json`` or
``model.safetensors`` is cut, bit-flipped or missing a range either loads exactly the saved model (architecture and
weights) or fails with a ``ValueError`` naming the file; never a silently different model. ``save_pretrained``
records the weights' SHA-256 and a CRC32 of what rebuilds the model (``checksums`` in ``config.json``; ``meta``,
which cards update later, is not covered). Folders saved before have no ``checksums`` and load unchecked."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from functools import cache
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hma_zoo import create_model, hub  # noqa: E402
from hma_zoo.configs import EmbodimentSpec  # noqa: E402
from tests.fuzz_helpers import apply_mutation, mutations  # noqa: E402

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORK = Path(tempfile.mkdtemp(prefix="hma-hub-fuzz-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)


@cache
def _saved() -> tuple[Path, dict, dict[str, torch.Tensor], dict[str, bytes]]:
    torch.manual_seed(0)
    model = create_model("hma-vq-test", embodiments=[EmbodimentSpec("arm", action_dim=2, stride=2)]).eval()
    folder = hub.save_pretrained(model, WORK / "saved", meta={"variant": "hma-vq-test"})
    state = {k: v.clone() for k, v in model.state_dict().items()}
    files = {n: (folder / n).read_bytes() for n in (hub.CONFIG_NAME, hub.WEIGHTS_NAME)}
    return folder, model.config.to_dict(), state, files


def _mutations(size: int) -> st.SearchStrategy:
    return mutations(size, max_flips=3, max_delete=64)


def _property(name: str, mutation: tuple) -> None:
    src, config, state, files = _saved()
    folder = WORK / "fuzzed"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(src, folder)
    (folder / name).write_bytes(apply_mutation(files[name], mutation))
    try:
        model = hub.load_pretrained(folder)
    except ValueError as exc:
        assert str(folder) in str(exc), f"unnamed error after {mutation} of {name}: {exc}"
        return
    assert model.config.to_dict() == config, f"another architecture loaded after {mutation} of {name}"
    got = model.state_dict()
    assert sorted(got) == sorted(state)
    for k, v in state.items():
        assert torch.equal(got[k], v), f"weight {k} loaded differently after {mutation} of {name}"


@pytest.mark.parametrize("name", [hub.CONFIG_NAME, hub.WEIGHTS_NAME])
def test_fuzz_load_pretrained(name) -> None:
    size = len(_saved()[3][name])

    @FAST
    @given(_mutations(size))
    def run(mutation):
        _property(name, mutation)

    run()


@pytest.mark.slow
@pytest.mark.parametrize("name", [hub.CONFIG_NAME, hub.WEIGHTS_NAME])
def test_fuzz_load_pretrained_long(name) -> None:
    size = len(_saved()[3][name])

    @LONG
    @given(_mutations(size))
    def run(mutation):
        _property(name, mutation)

    run()


def test_flipped_weight_bit_is_caught_and_old_folders_still_load(tmp_path) -> None:
    """One flipped mantissa bit keeps the weights finite and the file well-formed: only the checksum sees it."""
    src, _, state, files = _saved()
    folder = tmp_path / "m"
    shutil.copytree(src, folder)
    data = bytearray(files[hub.WEIGHTS_NAME])
    data[-3] ^= 1  # inside the last tensor's data
    (folder / hub.WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256") as info:
        hub.load_pretrained(folder)
    assert str(folder / hub.WEIGHTS_NAME) in str(info.value)
    payload = json.loads(files[hub.CONFIG_NAME])
    assert set(payload["checksums"]) == {hub.WEIGHTS_NAME, "config"}
    del payload["checksums"]  # a folder saved before checksums: loads, unchecked
    (folder / hub.CONFIG_NAME).write_text(json.dumps(payload))
    (folder / hub.WEIGHTS_NAME).write_bytes(files[hub.WEIGHTS_NAME])
    model = hub.load_pretrained(folder)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_meta_edited_after_saving_still_loads(tmp_path) -> None:
    """Cards add measured metrics to ``meta`` after saving; the checksum covers only what rebuilds the model."""
    src = _saved()[0]
    folder = tmp_path / "m"
    shutil.copytree(src, folder)
    payload = json.loads((folder / hub.CONFIG_NAME).read_text())
    payload["meta"]["metrics"] = {"psnr": 23.5}
    (folder / hub.CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True))
    assert hub.load_pretrained(folder).pretrained_meta["metrics"] == {"psnr": 23.5}
    payload["config"]["embodiments"][0]["name"] = "leg"  # but not the architecture
    (folder / hub.CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True))
    with pytest.raises(ValueError, match="checksum"):
        hub.load_pretrained(folder)
