"""``hma-zoo quickstart``: its help, and its tokenizer stage (trained through Lightning when asked to)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hma_zoo.cli import main
from tests.tokenizers.helpers import smooth_images, to_frames


def test_quickstart_help_prints_its_options(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["quickstart", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hma-zoo quickstart") and "--train-tokenizer" in out and "--pretrained" in out


def test_tokenizer_stage_trains_with_lightning_and_is_reused(tmp_path: Path, monkeypatch) -> None:
    from hma_zoo.lit.tokenizer import TokenizerLitModule
    from hma_zoo.quickstart import ensure_tokenizer

    data = tmp_path / "data"
    data.mkdir()
    frames = to_frames(smooth_images(6, size=16))[0].numpy()
    np.savez(data / "arm.npz", train=frames, val=frames[:2])
    fits = []
    original = TokenizerLitModule.on_train_start
    monkeypatch.setattr(TokenizerLitModule, "on_train_start", lambda self: (fits.append(1), original(self)))
    out = tmp_path / "tok"
    tok = ensure_tokenizer("tok-vq-test", data, out, steps=3, retrain=False, weights=None)
    assert fits == [1] and tok.train_metrics["steps"] == 3  # one Lightning fit
    meta = json.loads((out / "config.json").read_text())["meta"]
    assert meta["variant"] == "tok-vq-test" and meta["train"]["steps"] == 3 and "all" in meta["val"]
    again = ensure_tokenizer("tok-vq-test", data, out, steps=3, retrain=False, weights=None)
    assert fits == [1] and again.spec == tok.spec  # reused, not trained again
