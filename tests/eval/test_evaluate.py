"""evaluate(): table structure, fair baselines, shared sampler noise, horizons, state error, policy rows and the
loss-only mode on the synthetic square world; delta-PSNR separates a model that follows actions from an action-free
one (slow: trains two tiny models)."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

import hma_zoo
from hma_zoo.eval import evaluate
from hma_zoo.eval.metrics import psnr
from hma_zoo.eval.rollout import evaluate_loss, next_frame_cross_entropy

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from eval.helpers import (  # noqa: E402
    EMB,
    TOKENS,
    PixelClassTokenizer,
    frames_from_tokens,
    make_model,
    square_videos,
    train_tiny,
)


def square_state(tokens: torch.Tensor) -> torch.Tensor:
    """The square's top-left corner (x, y) of token grids ``[B, T, 8, 8]`` -> ``[B, T, 2]`` float."""
    cols = tokens.amax(2).float()  # [B, T, 8]: 1 where a column holds the square
    rows = tokens.amax(3).float()
    return torch.stack((cols.argmax(-1), rows.argmax(-1)), -1).float()


class OracleProbe:
    """A 'probe' that reads the square's corner exactly off decoded frames (so ground truth scores 0)."""

    embodiments = ("square",)

    def state_error(self, frames: torch.Tensor, state: torch.Tensor, names: list[str]):
        err = (square_state((frames[..., 0] > 127).long()) - state[..., :2]).square().mean(-1).sqrt()
        return err, err / 2.0


class _Batches:
    """The smallest datamodule evaluate() accepts: ``val_dataloader()`` -> batches of the data contract."""

    def __init__(self, n: int, t: int = 4, seed: int = 0, frames: bool = True) -> None:
        tokens, actions = square_videos(n, t, torch.Generator().manual_seed(seed))
        self.batch = {"actions": actions, "embodiment": ["square"] * n,
                      "action_valid": torch.ones(n, t, dtype=torch.bool), "state": square_state(tokens),
                      "state_valid": torch.ones(n, dtype=torch.bool)}
        self.batch["frames" if frames else "tokens"] = frames_from_tokens(tokens) if frames else tokens
        self.tokens = tokens

    def val_dataloader(self) -> list[dict]:
        return [self.batch]


def _rows(result: dict) -> dict:
    return {(r["mode"], r["method"], r["embodiment"], r["horizon"]): r for r in result["rows"]}


def test_evaluate_table_and_baselines(tmp_path) -> None:
    model, tok = make_model(conditioned=True, seed=1), PixelClassTokenizer()
    data = _Batches(3, t=3)
    result = evaluate(model, tok, data, max_windows=2, rollout=True, random_draws=1, out_dir=tmp_path, steps=1,
                      probe=OracleProbe(), progress=False)
    rows = _rows(result)
    assert result["settings"]["windows"] == 2
    # copy-last-frame, teacher forced: PSNR of frame t-1 against frame t, computed by hand
    gt = frames_from_tokens(data.tokens[:2])
    expected = psnr(gt[:, :-1], gt[:, 1:]).mean(1).mean().item()
    assert rows[("teacher_forced", "copy_last_frame", "all", "all")]["psnr"] == pytest.approx(expected, rel=1e-5)
    # the identity tokenizer reconstructs exactly: the ceiling is (near) infinite
    assert rows[("teacher_forced", "tokenizer_recon", "square", "all")]["psnr"] > 60
    for method in ("model", "model_random_actions", "model_zero_actions", "copy_last_frame",
                   "copy_last_frame_tokenized"):
        assert {"psnr", "ssim", "state_error_norm"} <= set(rows[("rollout", method, "all", "all")])
        assert "state_error" in rows[("rollout", method, "square", "all")]
    model_row = rows[("rollout", "model", "all", "all")]
    assert {"delta_psnr", "own_fvd", "token_acc"} <= set(model_row)
    # delta-PSNR is the model row minus the random-actions row (one draw), per sample then averaged
    rand_row = rows[("rollout", "model_random_actions", "all", "all")]
    assert model_row["delta_psnr"] == pytest.approx(model_row["psnr"] - rand_row["psnr"], abs=1e-4)
    # the oracle probe reads real frames exactly: the floor is 0; the copy baseline is off wherever the square moved
    floor = rows[("rollout", "ground_truth", "square", "all")]
    assert floor["state_error"] == pytest.approx(0.0) and "psnr" not in floor
    assert "perplexity" in rows[("teacher_forced", "model", "all", "all")]
    assert "delta_psnr" not in rows[("rollout", "copy_last_frame", "all", "all")]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert len(saved["rows"]) == len(result["rows"])
    assert "| mode | method |" in (tmp_path / "metrics.md").read_text()
    assert (tmp_path / "rollout_square.gif").exists()


def test_tokenized_copy_and_token_copy_accuracy_by_hand() -> None:
    model, tok = make_model(conditioned=True, seed=1), PixelClassTokenizer()
    data = _Batches(4, t=4, seed=3)
    result = evaluate(model, tok, data, rollout=False, random_draws=1, steps=1, progress=False)
    rows = _rows(result)
    tokens = data.tokens
    acc = (tokens[:, 1:] == tokens[:, :-1]).flatten(2).float().mean(2).mean().item()
    row = rows[("teacher_forced", "copy_last_frame_tokenized", "all", "all")]
    assert row["token_acc"] == pytest.approx(acc, rel=1e-6)
    gt = frames_from_tokens(tokens)
    recon = frames_from_tokens(tokens)  # exact tokenizer: the tokenized copy equals the raw copy here
    assert row["psnr"] == pytest.approx(psnr(recon[:, :-1], gt[:, 1:]).mean(1).mean().item(), rel=1e-5)


def test_action_free_model_has_zero_delta_psnr_even_when_sampling() -> None:
    """True- and random-action runs share sampler noise and unmasking order: an action-free model scores exactly
    0, even at temperature 1 with random unmasking (it did not when the runs drew their own noise)."""
    model, tok = make_model(conditioned=False, seed=4), PixelClassTokenizer()
    result = evaluate(model, tok, _Batches(4, t=4, seed=5), rollout=True, random_draws=2, steps=2,
                      temperature=1.0, progress=False)
    rows = _rows(result)
    for mode in ("teacher_forced", "rollout"):
        assert rows[(mode, "model", "all", "all")]["delta_psnr"] == 0.0


def test_rollout_horizons_past_the_window(tmp_path) -> None:
    model, tok = make_model(conditioned=True, seed=1), PixelClassTokenizer()
    window = model.config.trunk.max_frames  # 4
    data = _Batches(2, t=3 * window, seed=6)
    result = evaluate(model, tok, data, rollout=True, random_draws=1, steps=1, out_dir=tmp_path,
                      probe=OracleProbe(), progress=False)
    rows = _rows(result)
    steps = sorted(r["horizon"] for r in result["rows"] if r["mode"] == "rollout" and r["horizon"] != "all"
                   and r["method"] == "copy_last_frame" and r["embodiment"] == "all")
    assert steps == list(range(1, 3 * window))
    gt = frames_from_tokens(data.tokens)
    per_step = psnr(gt[:, :1].expand(-1, 3 * window - 1, -1, -1, -1), gt[:, 1:]).mean(0)  # [steps]
    for h in (1, window, 2 * window):
        assert rows[("rollout", "copy_last_frame", "all", h)]["psnr"] == pytest.approx(per_step[h - 1].item(),
                                                                                        rel=1e-5)
        assert "state_error_norm" in rows[("rollout", "model", "all", h)]
    # the aggregate rollout row averages the first window only
    first = psnr(gt[:, :1].expand(-1, window - 1, -1, -1, -1), gt[:, 1:window]).mean(1).mean().item()
    assert rows[("rollout", "copy_last_frame", "all", "all")]["psnr"] == pytest.approx(first, rel=1e-5)
    assert (tmp_path / "horizons.png").stat().st_size > 1000
    assert "Rollout by horizon" in result["markdown"]


def test_policy_rows_and_baselines_by_hand() -> None:
    torch.manual_seed(0)
    model = hma_zoo.create_model("hma-vq-test", embodiments=[EMB], tokens=TOKENS,
                                 trunk={"d_model": 32, "depth": 2, "num_heads": 2, "max_frames": 4}).eval()
    data = _Batches(3, t=4, seed=8)
    result = evaluate(model, PixelClassTokenizer(), data, rollout=False, random_draws=1, steps=1, progress=False)
    rows = _rows(result)
    assert {("policy", m, "all", "all") for m in ("model", "zero_action", "mean_action", "repeat_previous_action")} \
        <= set(rows)
    acts = data.batch["actions"][:, 1:]  # EMB has mean 0, std 1: normalised == raw; rows t >= 1 are scored
    expected_mean = acts.square().mean(-1).mean(1).mean().item()
    assert rows[("policy", "mean_action", "all", "all")]["action_mse"] == pytest.approx(expected_mean, rel=1e-5)
    prev = data.batch["actions"][:, :-1]
    expected_rep = (acts - prev).square().mean(-1).mean(1).mean().item()
    assert rows[("policy", "repeat_previous_action", "all", "all")]["action_mse"] == pytest.approx(expected_rep,
                                                                                                   rel=1e-5)


def test_loss_only_mode() -> None:
    model, tok = make_model(conditioned=True, seed=2), PixelClassTokenizer()
    data = _Batches(3, t=4, seed=9)
    result = evaluate_loss(model, tok, data, progress=False)
    row = _rows(result)[("loss", "model", "all", "all")]
    changed = (data.tokens[:, 1:] != data.tokens[:, :-1]).flatten(1).float().mean(1).mean().item()
    assert row["changed_share"] == pytest.approx(changed, rel=1e-6)
    assert {"video_loss", "perplexity", "ce_changed", "ce_static"} <= set(row)
    again = evaluate_loss(model, tok, data, progress=False)
    assert _rows(again)[("loss", "model", "all", "all")]["video_loss"] == row["video_loss"]  # fixed masks + noise


def test_token_batches_and_perplexity_bounds() -> None:
    model, tok = make_model(conditioned=True, seed=2), PixelClassTokenizer()
    data = _Batches(2, t=3, frames=False)
    result = evaluate(model, tok, data, rollout=False, random_draws=1, steps=1, progress=False)
    assert any("reconstruction" in n for n in result["notes"])
    ce = next_frame_cross_entropy(model, data.tokens, data.batch["actions"], ["square"] * 2)
    assert ce.shape == (2,) and (ce > 0).all()
    # an untrained model on a binary vocabulary is close to chance: perplexity near 2
    ppl = [r for r in result["rows"] if r["method"] == "model" and r["embodiment"] == "all"][0]["perplexity"]
    assert 1.3 < ppl < 4.0


@pytest.mark.slow
def test_delta_psnr_positive_for_action_following_model_only() -> None:
    data = _Batches(16, seed=7)
    tok = PixelClassTokenizer()
    follows = evaluate(train_tiny(conditioned=True), tok, data, rollout=False, random_draws=3, steps=1,
                       progress=False)
    blind = evaluate(train_tiny(conditioned=False), tok, data, rollout=False, random_draws=3, steps=1,
                     progress=False)

    def delta(result: dict) -> float:
        return _rows(result)[("teacher_forced", "model", "all", "all")]["delta_psnr"]

    assert delta(follows) > 1.0
    assert abs(delta(blind)) < 0.05
