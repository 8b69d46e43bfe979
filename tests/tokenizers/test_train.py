"""``train_tokenizer`` (a Lightning Trainer fitting TokenizerLitModule on frames in memory) on an ``*.npz`` frame
folder, with save and validation; it takes the same steps as the plain loop it replaced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
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


def _moving_square_frames(n: int = 12, size: int = 16) -> torch.Tensor:
    """uint8 ``[n, size, size, 3]``: a bright square moving one pixel per frame over a grey gradient."""
    x = torch.linspace(40, 120, size).expand(size, size)
    frames = x[None, :, :, None].expand(n, size, size, 3).clone()
    for t in range(n):
        frames[t, 4:8, 1 + t % 8 : 5 + t % 8] = 250
    return frames.to(torch.uint8)


def _reference_loop(name: str, frames: torch.Tensor, steps: int, batch_size: int, lr: float, warmup: int,
                    motion_weight: float, seed: int) -> torch.nn.Module:
    """The plain training loop train_tokenizer used to be (seed, AdamW, warm-up + cosine, clip 1, weighted L1+L2)."""
    from hma_zoo.schedules import warmup_schedule
    from hma_zoo.tokenizers.losses import TokenizerLoss
    from hma_zoo.tokenizers.train import motion_masks

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    tok = create_tokenizer(name, image_size=tuple(frames.shape[1:3]))
    crit = TokenizerLoss()
    opt = torch.optim.AdamW(tok.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    moving = motion_masks(frames)
    tok.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * warmup_schedule(step, warmup, "cosine", steps, 0.1)
        idx = torch.randint(0, frames.shape[0], (batch_size,), generator=gen)
        images = frames[idx].permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        out = tok(images)
        weight = 1.0 + motion_weight * moving[idx].unsqueeze(1).float()
        loss, _ = crit.generator_loss(images, out, step, pixel_weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tok.parameters(), 1.0)
        opt.step()
    return tok


@pytest.mark.parametrize("name", ["tok-vq-test", "tok-kl-test"])
def test_lightning_training_takes_the_plain_loops_steps(name: str) -> None:
    """Same seed, same batches, same schedule and motion weighting: the Lightning path ends on the very weights of
    the plain loop it replaced (the KL tokenizer's posterior noise included)."""
    frames = _moving_square_frames()
    kw = {"batch_size": 4, "lr": 3e-3, "motion_weight": 4.0, "seed": 3}
    ref = _reference_loop(name, frames, 8, warmup=3, **kw)
    tok = train_tokenizer(name, None, 8, frames={"arm": frames}, warmup_steps=3, progress=False, **kw)
    assert tok.train_metrics["steps"] == 8
    for (k, v), (k2, v2) in zip(ref.state_dict().items(), tok.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k


def test_motion_weights_come_from_the_batch_or_the_window() -> None:
    """TokenizerLitModule up-weights moving pixels: from ``batch["motion"]`` (the frame pool) or, for windows of
    episode shards, from the window's own frames."""
    from hma_zoo.lit.tokenizer import TokenizerLitModule

    frames = _moving_square_frames(4)[None]  # [1, 4, 16, 16, 3], in time order
    module = TokenizerLitModule("tok-vq-test", {"image_size": [16, 16]}, frames_per_sample=None, motion_weight=3.0)
    _, _, weight = module._images_and_weights({"frames": frames}, train=True)
    assert weight.shape == (4, 1, 16, 16)
    assert weight[0, 0, 5, 1] == 4.0 and weight[0, 0, 12, 12] == 1.0  # on the square / on the still background
    given = torch.zeros(1, 4, 16, 16, dtype=torch.bool)
    given[0, :, 0, 0] = True
    _, _, weight = module._images_and_weights({"frames": frames, "motion": given}, train=True)
    assert weight.sum() == 4 * 16 * 16 + 4 * 3.0
    plain = TokenizerLitModule("tok-vq-test", {"image_size": [16, 16]}, frames_per_sample=None)
    assert plain._images_and_weights({"frames": frames}, train=True)[2] is None


def test_time_limit_stops_training_early() -> None:
    tok = train_tokenizer("tok-vq-test", None, 1000, frames={"arm": _moving_square_frames()}, batch_size=2,
                          progress=False, time_limit_s=0.0)
    assert tok.train_metrics["steps"] == 1
