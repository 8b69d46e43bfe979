"""EMA of the world model's weights: once per optimiser step (not per micro-batch), a warm-up whose count is
checkpointed, and ``load_world_model(ckpt)`` returns the EMA weights."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from hma_zoo.lit.synthetic import SyntheticDataModule
from hma_zoo.lit.world_model import HMALitModule, load_world_model


def _fit(tmp_path, accumulate: int, micro_batches: int, ema_decay: float = 0.99) -> tuple[HMALitModule, L.Trainer]:
    torch.manual_seed(0)
    data = SyntheticDataModule(window=3, batch_size=2, train_size=2 * micro_batches, val_size=2)
    lit = HMALitModule("hma-vq-test", embodiments=data.embodiments, max_chunk_dim=data.max_chunk_dim,
                       window=data.window, tokenizer="tok-vq-test", ema_decay=ema_decay, lr=1e-2, warmup_steps=0,
                       val_metric_samples=0)
    calls = []
    original = lit._update_ema
    lit._update_ema = lambda: (calls.append(lit.global_step), original())[1]  # type: ignore[method-assign]
    lit.ema_calls = calls  # type: ignore[attr-defined]
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, accumulate_grad_batches=accumulate,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(lit, data)
    return lit, trainer


def test_ema_updates_once_per_optimizer_step_and_is_what_load_world_model_returns(tmp_path) -> None:
    lit, trainer = _fit(tmp_path, accumulate=2, micro_batches=4)
    assert trainer.global_step == 2  # 4 micro-batches, 2 per optimiser step
    assert lit.ema_calls == [0, 1] and int(lit.ema_num_updates) == 2  # global_step before each step
    # the EMA differs from the raw weights (decay 0.99, warm-up 0.1 then 2/11)
    raw = lit.model.state_dict()
    ema = lit.ema.state_dict()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw if raw[k].is_floating_point())

    path = tmp_path / "x.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert any(k.startswith("ema.") for k in ckpt["state_dict"]) and int(ckpt["state_dict"]["ema_num_updates"]) == 2
    loaded = load_world_model(str(path))
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, ema[k]), k
    assert any(not torch.equal(v, raw[k]) for k, v in loaded.state_dict().items() if v.is_floating_point())

    # the update count resumes from the checkpoint, so the warm-up continues where it stopped
    resumed = HMALitModule.load_from_checkpoint(path, weights_only=True)
    assert int(resumed.ema_num_updates) == 2
    assert resumed.ema_decay_now() == pytest.approx(3 / 12)


def test_ema_without_accumulation_updates_every_step(tmp_path) -> None:
    lit, trainer = _fit(tmp_path, accumulate=1, micro_batches=3)
    assert trainer.global_step == 3 and lit.ema_calls == [0, 1, 2] and int(lit.ema_num_updates) == 3


def test_ema_warmup_schedule() -> None:
    from hma_zoo.configs import EmbodimentSpec

    lit = HMALitModule("hma-vq-test", embodiments=(EmbodimentSpec("arm", 2, 1),), ema_decay=0.5)
    decays = []
    for _ in range(4):
        decays.append(lit.ema_decay_now())
        lit._update_ema()
    assert decays == pytest.approx([1 / 10, 2 / 11, 3 / 12, 4 / 13])
    lit.ema_num_updates.fill_(10_000)
    assert lit.ema_decay_now() == 0.5
    with pytest.raises(RuntimeError, match="no EMA"):
        HMALitModule("hma-vq-test", embodiments=(EmbodimentSpec("arm", 2, 1),)).ema_decay_now()
