"""HMALitModule without a Trainer: optimiser groups, schedule, a loss that falls, fine-tuning paths, validation
metrics (named by their ground truth, action-free delta-PSNR exactly 0)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hma_zoo.configs import EmbodimentSpec
from hma_zoo.lit.synthetic import SyntheticDataModule
from hma_zoo.lit.world_model import HMALitModule, load_world_model, warmup_schedule, weight_decay_groups

from .conftest import token_batch


def test_weight_decay_excludes_norms_biases_embeddings(embodiments) -> None:
    lit = HMALitModule("hma-vq-test", embodiments=embodiments)
    groups, names = weight_decay_groups(lit.model, 0.1)
    params = dict(lit.model.named_parameters())
    assert set(names["decay"]) | set(names["no_decay"]) == set(params)
    assert not set(names["decay"]) & set(names["no_decay"])
    modules = dict(lit.model.named_modules())
    for name in names["decay"]:
        owner = modules[name.rpartition(".")[0]]
        assert isinstance(owner, nn.Linear) and name.endswith(".weight"), name
    for name in params:
        owner = modules.get(name.rpartition(".")[0])
        if name.endswith("bias") or isinstance(owner, (nn.LayerNorm, nn.Embedding)) or owner is lit.model:
            assert name in names["no_decay"], name
    assert "pos" in names["no_decay"] and "mask_token" in names["no_decay"]
    assert any("tables" in n for n in names["no_decay"])
    opt = lit.configure_optimizers()["optimizer"]
    assert opt.defaults["betas"] == (0.9, 0.95)
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert wd[id(lit.model.pos)] == 0.0
    assert wd[id(lit.model.trunk.blocks[0].mlp.fc1.weight)] == 0.05


def test_warmup_then_constant_or_cosine() -> None:
    assert warmup_schedule(0, 10, "constant", None, 0.1) == pytest.approx(0.1)
    assert warmup_schedule(9, 10, "constant", None, 0.1) == pytest.approx(1.0)
    assert warmup_schedule(500, 10, "constant", None, 0.1) == 1.0
    assert warmup_schedule(10, 10, "cosine", 110, 0.1) == pytest.approx(1.0)
    assert warmup_schedule(60, 10, "cosine", 110, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert warmup_schedule(110, 10, "cosine", 110, 0.1) == pytest.approx(0.1)
    assert warmup_schedule(999, 10, "cosine", 110, 0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="total_steps"):
        warmup_schedule(20, 10, "cosine", None, 0.1)
    # a progress floor (train_tokenizer's time budget) moves the cosine along, never back
    assert warmup_schedule(10, 10, "cosine", 110, 0.1, progress_floor=1.0) == pytest.approx(0.1)
    assert warmup_schedule(60, 10, "cosine", 110, 0.1, progress_floor=0.2) == pytest.approx(0.1 + 0.9 * 0.5)


def test_one_schedule_for_every_trainer(monkeypatch) -> None:
    """The world model and the Lightning tokenizer (which train_tokenizer runs) call
    hma_zoo.schedules.warmup_schedule."""
    import hma_zoo.lit.tokenizer as lit_tok
    import hma_zoo.lit.world_model as lit_wm
    import hma_zoo.schedules as schedules

    assert lit_wm.warmup_schedule is schedules.warmup_schedule is lit_tok.warmup_schedule


def _train(lit: HMALitModule, steps: int, batch: dict) -> list[float]:
    opt = lit.configure_optimizers()["optimizer"]
    losses = []
    for _ in range(steps):
        tokens, actions, names, valid = lit.prepare_batch(batch)
        m = lit._masks(tokens.shape[0], tokens.shape[1], tokens.device, torch.Generator().manual_seed(0))
        out = lit.model.compute_loss(tokens, actions, names, m.token_mask, m.action_mask, valid, m.corrupt)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    return losses


def test_loss_falls_on_a_learnable_batch(embodiments) -> None:
    torch.manual_seed(0)
    lit = HMALitModule("hma-vq-test", embodiments=embodiments, lr=3e-3, warmup_steps=0)
    losses = _train(lit, 15, token_batch())
    assert losses[-1] < 0.7 * losses[0], losses


def test_prepare_batch_pads_narrow_actions_and_rejects_frames_without_tokenizer(embodiments) -> None:
    lit = HMALitModule("hma-vq-test", embodiments=embodiments)
    batch = token_batch(a_max=4)
    _, actions, names, valid = lit.prepare_batch(batch)
    assert actions.shape[-1] == 6 and (actions[..., 4:] == 0).all()
    assert names == ["arm", "hand", "arm", "hand"] and valid.all()
    with pytest.raises(ValueError, match="tokenizer"):
        lit.prepare_batch({"frames": torch.zeros(1, 2, 64, 64, 3, dtype=torch.uint8), "actions": torch.zeros(1, 2, 6),
                           "embodiment": ["arm"]})
    with pytest.raises(ValueError, match="embodiments"):
        HMALitModule("hma-vq-test")


def test_window_from_data_raises_max_frames(embodiments) -> None:
    lit = HMALitModule("hma-vq-test", embodiments=embodiments, window=6)
    assert lit.model.config.trunk.max_frames == 6


def test_explicit_max_frames_trains_on_longer_windows(embodiments) -> None:
    """``window: 8`` with ``trunk.max_frames: 4`` keeps the 4-frame span and trains on 8-frame windows."""
    lit = HMALitModule("hma-vq-test", embodiments=embodiments, window=8, overrides={"trunk": {"max_frames": 4}},
                       lr=3e-3, warmup_steps=0)
    assert lit.model.config.trunk.max_frames == 4
    losses = _train(lit, 3, token_batch(t=8))
    assert all(math.isfinite(x) for x in losses)


def test_freeze_trunk_and_ema(embodiments) -> None:
    lit = HMALitModule("hma-vq-test", embodiments=embodiments, freeze_trunk=True, ema_decay=0.5, lr=1e-2,
                       warmup_steps=0)
    trunk_before = [p.detach().clone() for p in lit.model.trunk.parameters()]
    stem_before = lit.model.action_stems[0].net[0].weight.detach().clone()
    _train(lit, 2, token_batch())
    assert all(torch.equal(a, b) for a, b in zip(trunk_before, lit.model.trunk.parameters()))
    assert not torch.equal(stem_before, lit.model.action_stems[0].net[0].weight)
    _, names = weight_decay_groups(lit.model, 0.1)
    assert not any(n.startswith("trunk.") for n in names["decay"] + names["no_decay"])
    # EMA warm-up: the first update uses decay min(0.5, 1/10) = 0.1: ema <- 0.1 ema + 0.9 model
    assert int(lit.ema_num_updates) == 0 and lit.ema_decay_now() == pytest.approx(0.1)
    ema_w = lit.ema.action_stems[0].net[0].weight.detach().clone()
    lit._update_ema()
    expect = 0.1 * ema_w + 0.9 * lit.model.action_stems[0].net[0].weight.detach()
    assert torch.allclose(lit.ema.action_stems[0].net[0].weight, expect)
    # warmed up: decay 0.5: ema <- 0.5 ema + 0.5 model
    lit.ema_num_updates.fill_(100)
    assert lit.ema_decay_now() == 0.5
    ema_w = lit.ema.action_stems[0].net[0].weight.detach().clone()
    lit._update_ema()
    expect = 0.5 * ema_w + 0.5 * lit.model.action_stems[0].net[0].weight.detach()
    assert torch.allclose(lit.ema.action_stems[0].net[0].weight, expect)
    assert int(lit.ema_num_updates) == 101
    assert lit.eval_model() is lit.ema


def test_from_pretrained_adds_embodiment_and_keeps_trunk(tmp_path, embodiments) -> None:
    base = HMALitModule("hma-vq-test", embodiments=embodiments[:1])
    base.save_pretrained(tmp_path / "base")
    new = EmbodimentSpec("gripper", 4, 1)
    ft = HMALitModule("hma-vq-test", embodiments=(embodiments[0], new), from_pretrained=str(tmp_path / "base"),
                      freeze_trunk=True)
    assert ft.model.config.embodiment_names == ("arm", "gripper")
    for (k, a), b in zip(base.model.trunk.state_dict().items(), ft.model.trunk.state_dict().values()):
        assert torch.equal(a, b), k
    assert ft.model.config.max_chunk_dim == 4
    batch = token_batch(names=("gripper",), a_max=4)
    assert math.isfinite(_train(ft, 1, batch)[0])
    # the fine-tune's metadata names its base model (its card's base_model / "Fine-tuned from")
    assert ft.save_pretrained(tmp_path / "ft").joinpath("config.json").read_text().count(
        f'"base_model": "{tmp_path / "base"}"') == 1
    assert "base_model" not in (tmp_path / "base" / "config.json").read_text()


def test_ckpt_roundtrip_through_load_world_model(tmp_path, embodiments) -> None:
    lit = HMALitModule("hma-vq-test", embodiments=embodiments)
    ckpt = {"state_dict": lit.state_dict(), "hma_config": lit.model.config.to_dict()}
    torch.save(ckpt, tmp_path / "x.ckpt")
    model = load_world_model(str(tmp_path / "x.ckpt"))
    for k, v in lit.model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_one_psnr_for_validation_evaluation_and_tokenizers() -> None:
    import hma_zoo.lit.tokenizer as lit_tok
    import hma_zoo.lit.world_model as lit_wm
    import hma_zoo.tokenizers.train as tok_train
    from hma_zoo.eval import metrics

    assert lit_wm.psnr is metrics.psnr and tok_train.psnr is metrics.psnr
    assert lit_tok.image_psnr is tok_train.image_psnr
    assert not hasattr(lit_wm, "psnr_uint8")
    # images in [-1, 1] ([N, 3, H, W]): data range 2, values clamped to it; identical images read MAX_PSNR
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[0, 0, 0, 0] = 2.0  # clamped to 1: one of 48 values off by 1 -> mse 1/48 on a range of 2
    p = tok_train.image_psnr(y, x)
    assert p[0].item() == pytest.approx(10 * math.log10(4 * 48), rel=1e-6)
    assert p[1].item() == metrics.MAX_PSNR


def _val_lit(mode: str = "concat+adaln") -> tuple[HMALitModule, dict]:
    torch.manual_seed(0)
    data = SyntheticDataModule(window=3, batch_size=2, train_size=2, val_size=2)
    lit = HMALitModule("hma-vq-test", embodiments=data.embodiments, max_chunk_dim=data.max_chunk_dim,
                       window=data.window, tokenizer="tok-vq-test", overrides={"conditioning": {"mode": mode}})
    batch = next(iter(data.val_dataloader()))
    return lit, batch


def test_validation_psnr_is_named_by_its_ground_truth_and_has_a_copy_baseline(monkeypatch) -> None:
    import hma_zoo.lit.world_model as lit_wm
    from hma_zoo.eval import metrics

    calls = []
    monkeypatch.setattr(lit_wm, "psnr", lambda *a, **k: calls.append(1) or metrics.psnr(*a, **k))
    lit, batch = _val_lit()
    real = lit.prediction_metrics(batch, 2)
    assert set(real) == {"psnr", "delta_psnr", "copy_psnr"} and calls  # the one PSNR of hma_zoo.eval.metrics
    frames = batch["frames"][:2]
    assert real["copy_psnr"].item() == pytest.approx(metrics.psnr(frames[:, :-1], frames[:, 1:]).mean().item())
    tokens_only = {k: v for k, v in batch.items() if k != "frames"}
    tokens_only["tokens"] = lit.tokenizer.encode(batch["frames"])
    recon = lit.prediction_metrics(tokens_only, 2)
    assert set(recon) == {"psnr_vs_recon", "delta_psnr_vs_recon", "copy_psnr_vs_recon"}
    assert all(torch.isfinite(v) for v in (*real.values(), *recon.values()))


def test_action_free_model_has_exactly_zero_delta_psnr() -> None:
    """Both teacher-forced runs share the sampler's noise and unmasking order: only the actions differ, and an
    action-free model ignores them."""
    lit, batch = _val_lit("none")
    assert lit.model.action_stems is None
    for _ in range(2):
        metrics = lit.prediction_metrics(batch, 2)
        assert metrics["delta_psnr"].item() == 0.0


def test_nonfinite_loss_stops_training_naming_the_batch_or_skips_a_bounded_number(embodiments) -> None:
    batch = token_batch()
    batch["episode_id"] = ["ep0", "ep1", "ep2", "ep3"]
    batch["start"] = torch.tensor([0, 4, 0, 8])
    batch["actions"][1, 2, 0] = float("nan")  # one NaN action in one window
    lit = HMALitModule("hma-vq-test", embodiments=embodiments)
    lit.flops_per_token = 1.0
    with pytest.raises(FloatingPointError, match=r"step 0.*hand/ep1@4.*non-finite actions in hand/ep1@4"):
        lit.training_step(batch, 0)
    lit = HMALitModule("hma-vq-test", embodiments=embodiments, max_nonfinite_skips=1)
    lit.flops_per_token = 1.0
    assert lit.training_step(batch, 0) is None  # skipped, counted
    with pytest.raises(FloatingPointError, match="max_nonfinite_skips"):
        lit.training_step(batch, 1)
    clean = token_batch()
    assert torch.isfinite(lit.training_step(clean, 2))


def test_nonfinite_weights_are_never_saved_or_loaded(tmp_path, embodiments) -> None:
    import json

    from safetensors.torch import load_file, save_file

    from hma_zoo import create_model, hub

    model = create_model("hma-vq-test", embodiments=embodiments)
    hub.save_pretrained(model, tmp_path / "ok")
    with torch.no_grad():
        model.trunk.blocks[0].mlp.fc1.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"non-finite.*trunk\.blocks\.0\.mlp\.fc1\.weight"):
        hub.save_pretrained(model, tmp_path / "bad")
    state = load_file(str(tmp_path / "ok" / "model.safetensors"))
    state["pos"][0, 0] = float("inf")
    save_file(state, str(tmp_path / "ok" / "model.safetensors"))
    with pytest.raises(ValueError, match="non-finite values.*pos"):
        hub.load_pretrained(tmp_path / "ok")
    cfg = json.loads((tmp_path / "ok" / "config.json").read_text())
    cfg["format_version"] = 99
    (tmp_path / "ok" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="format_version 99"):
        hub.load_pretrained(tmp_path / "ok")
