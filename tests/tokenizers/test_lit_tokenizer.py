"""TokenizerLitModule: a few real Lightning steps on synthetic frame batches (the HMADataModule batch contract)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from hma_zoo.lit.synthetic import SyntheticDataModule
from hma_zoo.lit.tokenizer import TokenizerLitModule
from hma_zoo.tokenizers import KLTokenizer, load_tokenizer


@pytest.mark.parametrize(("name", "adv_weight"), [("tok-vq-test", 0.0), ("tok-kl-test", 0.0), ("tok-vq-test", 0.1)])
def test_fit_logs_metrics_images_and_exports(name: str, adv_weight: float, tmp_path: Path) -> None:
    pl.seed_everything(0)
    module = TokenizerLitModule(
        tokenizer=name, tokenizer_overrides={"image_size": [32, 32]}, warmup_steps=1, frames_per_sample=1,
        adv_weight=adv_weight, adv_start_step=2, disc_width=8,
        log_images_every_n_steps=2, num_log_images=2, export_dir=str(tmp_path / "export"),
    )
    data = SyntheticDataModule(window=2, image_size=(32, 32), train_size=8, val_size=2, batch_size=2, square=8)
    trainer = pl.Trainer(
        # with the adversarial loss, global_step also counts discriminator steps (batches 3 and 4 here)
        accelerator="cpu", max_steps=6 if adv_weight else 4, limit_val_batches=1, val_check_interval=4,
        enable_checkpointing=False,
        logger=TensorBoardLogger(str(tmp_path), name="tb"), enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == (6 if adv_weight else 4)
    assert module.lr_schedulers().last_epoch == 4  # generator steps
    metrics = trainer.callback_metrics
    assert "val/psnr" in metrics and torch.isfinite(metrics["val/psnr"])
    assert "val/ssim" in metrics and any(k.startswith("val/psnr/") for k in metrics)
    if name.startswith("tok-vq"):
        assert 0 < float(metrics["val/codebook_usage"]) <= 1
    assert ("train/d" in metrics) == (adv_weight > 0)
    events = list((tmp_path / "tb").rglob("events.out.tfevents*"))
    assert events and max(e.stat().st_size for e in events) > 2000  # images were written
    loaded = load_tokenizer(str(tmp_path / "export"))
    for (k, v), (k2, v2) in zip(module.tokenizer.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v.cpu(), v2)
    if isinstance(module.tokenizer, KLTokenizer):
        assert module.tokenizer.spec.scale != 1.0 and loaded.spec.scale == module.tokenizer.spec.scale


def test_token_batches_are_refused_with_a_clear_message() -> None:
    module = TokenizerLitModule(tokenizer="tok-vq-test")
    with pytest.raises(KeyError, match="episode \\(frame\\) shards"):
        module._images({"tokens": torch.zeros(1, 2, 8, 8, dtype=torch.long)}, train=True)
