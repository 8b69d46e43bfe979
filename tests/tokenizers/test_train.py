"""Plain-python training (``train_tokenizer``) on an ``*.npz`` frame folder, with save and validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hma_zoo.tokenizers import create_tokenizer, load_tokenizer
from hma_zoo.tokenizers.train import evaluate_tokenizer, load_frames, train_tokenizer
from tests.tokenizers.helpers import smooth_images, to_frames


def _write_npz(root: Path) -> None:
    for i, emb in enumerate(["arm_a", "arm_b"]):
        frames = to_frames(smooth_images(6, size=16, seed=i))[0].numpy()
        np.savez(root / f"{emb}.npz", train=frames[:4], val=frames[:2])  # pipeline test: val seen in training


def test_train_tokenizer_learns_saves_and_reports(tmp_path: Path) -> None:
    _write_npz(tmp_path)
    val = load_frames(tmp_path, "val")
    assert set(val) == {"arm_a", "arm_b"} and val["arm_a"].shape == (2, 16, 16, 3)
    torch.manual_seed(0)
    untrained = evaluate_tokenizer(create_tokenizer("tok-kl-test", image_size=(16, 16)), val)["all"]["psnr"]
    out = tmp_path / "out"
    tok = train_tokenizer("tok-kl-test", tmp_path, steps=150, batch_size=4, lr=5e-3, warmup_steps=5,
                          out_dir=out, progress=False, num_threads=1)
    assert tok.train_metrics["steps"] == 150
    assert tok.val_metrics["all"]["psnr"] > untrained + 5.0, (untrained, tok.val_metrics["all"])
    assert set(tok.val_metrics) == {"arm_a", "arm_b", "all"}
    meta = json.loads((out / "config.json").read_text())["meta"]
    assert meta["variant"] == "tok-kl-test" and meta["val"]["all"]["psnr"] == tok.val_metrics["all"]["psnr"]
    assert (out / "README.md").read_text().startswith("# tok-kl-test")
    loaded = load_tokenizer(str(out))
    assert loaded.spec.scale == tok.spec.scale != 1.0
    # continuing from the saved folder keeps the weights as the starting point
    more = train_tokenizer("tok-kl-test", tmp_path, steps=1, batch_size=4, lr=1e-12, warmup_steps=1,
                           init_from=out, progress=False)
    assert torch.allclose(more.decoder.conv_out.weight, tok.decoder.conv_out.weight, atol=1e-6)
