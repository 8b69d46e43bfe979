"""Real Lightning DDP (2 CPU processes, gloo) x 2 DataLoader workers: finite epochs cover every window (slow)."""

import json

import lightning as L
import pytest
import torch
from data_helpers import ARM, CART, make_episode

from hma_zoo.data.datamodule import HMADataModule
from hma_zoo.data.shards import DatasetWriter


class Recorder(L.LightningModule):
    def __init__(self, out: str) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)
        self.out = out
        self.seen: list = []

    def training_step(self, batch, i):
        self.seen += list(zip(batch["episode_id"], batch["start"].tolist()))
        return self.lin(batch["actions"][..., :1]).mean()

    def on_train_epoch_end(self) -> None:
        with open(f"{self.out}/rank{self.global_rank}.json", "w") as f:
            json.dump(self.seen, f)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), 0.01)


@pytest.mark.slow
def test_ddp_two_ranks_two_workers_cover_every_window(tmp_path):
    with DatasetWriter(tmp_path / "d", [ARM, CART], image_size=(8, 8), episodes_per_shard=1) as w:
        for i in range(5):
            w.add(make_episode(f"arm{i}", ARM, 6 + i, seed=i))
        for i in range(3):
            w.add(make_episode(f"cart{i}", CART, 7, seed=i))
    dm = HMADataModule(str(tmp_path / "d"), window=3, batch_size=2, num_workers=2, train_mode="finite")
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0)
    trainer.fit(Recorder(str(tmp_path)), dm)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    expected = {(f"arm{i}", s) for i in range(5) for s in range(0, 6 + i - 2, 3)}
    expected |= {(f"cart{i}", s) for i in range(3) for s in (0, 3)}
    got = [tuple(x) for r in seen for x in r]
    assert set(got) == expected
    assert len(seen[0]) == len(seen[1])  # equal batches per rank (padding), so DDP never hangs
