"""Plain-python training (``train_tokenizer``) on an ``*.npz`` frame folder, with save and validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hma_zoo.cards import card_problems
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
    card = (out / "README.md").read_text()  # the one card renderer, fed the keys this writer writes
    assert "\n# tok-kl-test\n" in card and "not recorded" not in card and "No metrics" not in card
    assert card_problems(card) == [] and f"datasets:\n- {tmp_path.name}\n" in card
    loaded = load_tokenizer(str(out))
    assert loaded.spec.scale == tok.spec.scale != 1.0
    # continuing from the saved folder keeps the weights as the starting point
    more = train_tokenizer("tok-kl-test", tmp_path, steps=1, batch_size=4, lr=1e-12, warmup_steps=1,
                           init_from=out, progress=False)
    assert torch.allclose(more.decoder.conv_out.weight, tok.decoder.conv_out.weight, atol=1e-6)


def test_motion_masks_mark_what_moves_and_weights_steer_the_loss() -> None:
    from hma_zoo.tokenizers.losses import TokenizerLoss, TokenizerOutput
    from hma_zoo.tokenizers.train import motion_masks

    ep = np.zeros((3, 16, 16, 3), np.uint8)
    ep[0, 2, 2] = ep[1, 2, 6] = ep[2, 2, 6] = 200  # a dot moves from (2, 2) to (2, 6), then stays
    m = motion_masks(ep, dilate=0)
    assert m.shape == (3, 16, 16)
    assert m[0, 2, 2] and m[0, 2, 6] and m[1, 2, 2] and m[1, 2, 6]
    assert not m[2].any() and m.sum() == 4
    assert motion_masks(ep, dilate=1)[0, 3, 3]  # grown by a pixel
    images = torch.zeros(1, 3, 4, 4)
    recon = torch.zeros(1, 3, 4, 4)
    recon[..., 0, 0] = 1.0  # the only error sits on pixel (0, 0)
    out = TokenizerOutput(recon, torch.zeros(()), torch.zeros(1))
    crit = TokenizerLoss(l1_weight=1.0, l2_weight=0.0)
    plain, parts = crit.generator_loss(images, out)
    w = torch.ones(1, 1, 4, 4)
    w[..., 0, 0] = 0.0
    assert crit.generator_loss(images, out, pixel_weight=w)[0] == 0  # weight 0 where the error is
    w[..., 0, 0] = 16.0
    weighted, parts_w = crit.generator_loss(images, out, pixel_weight=w)
    assert weighted > plain and torch.equal(parts_w["l1"], parts["l1"])
