"""With ``on_error="skip"``, what DataLoader workers skip reaches the main process (issue 15): the counts of every
worker are summed in the main process's ``WindowDataset.read_stats``, logged there, and no private key is left in
the batches."""

import logging

import pytest
from data_helpers import ARM, make_episode

from hma_zoo.data.datamodule import HMADataModule
from hma_zoo.data.shards import DatasetWriter


@pytest.fixture()
def damaged(tmp_path):
    """Two train shards of 3 episodes; the first episode of each is damaged (a flipped byte in its frames)."""
    with DatasetWriter(tmp_path, [ARM], image_size=(8, 8), episodes_per_shard=3) as w:
        for i in range(6):
            w.add(make_episode(f"a{i}", ARM, 6, seed=i))
    shards = sorted((tmp_path / "train").glob("*.tar"))
    assert len(shards) == 2
    for shard in shards:
        data = bytearray(shard.read_bytes())
        i = data.find(b"\x93NUMPY")
        data[i + 130] ^= 0xFF
        shard.write_bytes(bytes(data))
    return tmp_path


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_counts_of_every_worker_reach_the_main_process(damaged, workers, caplog):
    dm = HMADataModule(str(damaged), window=3, num_workers=workers, train_mode="finite", on_error="skip",
                       batch_size=2)
    with caplog.at_level(logging.WARNING):
        batches = list(dm.train_dataloader())
    assert all(not any(k.startswith("_") for k in b) for b in batches)
    assert {e for b in batches for e in b["episode_id"]} == {"a1", "a2", "a4", "a5"}
    stats = dm.datasets["train"].read_stats
    assert stats.skipped_episodes == 2 and stats.episodes == 4 and stats.damaged == 2
    assert len(stats.messages) == 2 and all("CRC32" in m for m in stats.messages)
    main_process = [r for r in caplog.records if r.name == "hma_zoo.data.datamodule"]
    assert main_process and "2 damaged episodes" in main_process[-1].getMessage()
    # a second pass adds its own counts
    list(dm.train_dataloader())
    assert dm.datasets["train"].read_stats.skipped_episodes == 4
