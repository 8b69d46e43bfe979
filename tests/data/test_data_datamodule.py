import collections

import numpy as np
import pytest
from data_helpers import ARM, CART, make_episode

from hma_zoo.data.datamodule import HMADataModule
from hma_zoo.data.shards import DatasetWriter

ARM_FRAMES = [9, 11, 6, 13, 8, 10, 12]
CART_FRAMES = [7, 5, 9]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    with DatasetWriter(root, [ARM, CART], image_size=(8, 8), episodes_per_shard=2) as w:
        for i, n in enumerate(ARM_FRAMES):
            w.add(make_episode(f"arm{i}", ARM, n, seed=i))  # 4 shards of arm -> shard-level split
        w.add(make_episode("armval", ARM, 9), split="val")
    with DatasetWriter(root / "b", [CART], image_size=(8, 8), episodes_per_shard=10) as w:
        for i, n in enumerate(CART_FRAMES):
            w.add(make_episode(f"cart{i}", CART, n, seed=10 + i, extra_chunk=True))  # 1 shard -> episode split
    return root


def _expected(window):
    out = set()
    for i, n in enumerate(ARM_FRAMES):
        out |= {(f"arm{i}", s) for s in range(0, n - window + 1, window)}
    for i, n in enumerate(CART_FRAMES):
        out |= {(f"cart{i}", s) for s in range(0, n - window + 1, window)}
    return out


def test_properties_before_setup(dataset):
    dm = HMADataModule([str(dataset), str(dataset / "b")], window=3, frame_skip={"arm": 2})
    specs = {e.name: e for e in dm.embodiments}
    assert specs["arm"].stride == 4 and specs["cart"].stride == 1
    assert dm.max_chunk_dim == 8 and dm.image_size == (8, 8) and dm.window == 3
    arm_actions = np.concatenate([make_episode(f"arm{i}", ARM, n, seed=i).actions for i, n in enumerate(ARM_FRAMES)])
    np.testing.assert_allclose(specs["arm"].action_mean, arm_actions.mean(0), rtol=1e-5)


@pytest.mark.parametrize("pad", [False, True])
def test_disjoint_coverage_two_ranks_two_workers(dataset, pad):
    window = 3
    dm = HMADataModule([str(dataset), str(dataset / "b")], window=window, train_mode="finite")
    ds = dm.make_dataset("train", mode="finite")
    ds.pad = pad
    per_consumer = []
    for rank in range(2):
        for worker in range(2):
            per_consumer.append([(s["episode_id"], s["start"]) for s in ds.iter_consumer(rank * 2 + worker, 4)])
    all_items = [x for c in per_consumer for x in c]
    assert set(all_items) == _expected(window)
    if not pad:
        assert len(all_items) == len(set(all_items))  # every window exactly once
        for a in range(4):
            for b in range(a + 1, 4):
                assert not {e for e, _ in per_consumer[a]} & {e for e, _ in per_consumer[b]}  # disjoint episodes
    else:
        assert len({len(c) for c in per_consumer}) == 1  # equal batches on every rank


def test_dataloader_workers_and_ranks_cover_once(dataset):
    seen = []
    for rank in range(2):
        dm = HMADataModule([str(dataset), str(dataset / "b")], window=3, batch_size=2, num_workers=2,
                           train_mode="finite", rank=rank, world_size=2)
        ds = dm.make_dataset("train")
        ds.pad = False
        for batch in dm._loader(ds):
            seen += list(zip(batch["episode_id"], batch["start"].tolist()))
    assert collections.Counter(seen) == collections.Counter(_expected(3))


def test_batches_match_source_frames_and_actions(dataset):
    dm = HMADataModule([str(dataset), str(dataset / "b")], window=3, batch_size=4, num_workers=0,
                       frame_skip={"arm": 2}, epoch_windows=40)
    batches = list(dm.train_dataloader())
    assert sum(len(b["embodiment"]) for b in batches) == 40
    for b in batches:
        assert b["frames"].dtype.is_floating_point is False and b["actions"].shape[-1] == 8
        for i, emb in enumerate(b["embodiment"]):
            k, s0, a = (2, 2, 2) if emb == "arm" else (1, 1, 1)
            start = int(b["start"][i])
            frame_idx = start + k * np.arange(3)
            np.testing.assert_array_equal(b["frames"][i, :, 1, 1, 0].numpy(), frame_idx)
            valid = b["action_valid"][i].numpy()
            first_step = frame_idx * s0
            np.testing.assert_array_equal(b["actions"][i, valid, 0].numpy(), first_step[valid])  # row t starts at t*s
            assert not b["actions"][i, :, k * s0 * a:].any()  # zero padding beyond the chunk


def test_explicit_weights_and_mixing(dataset):
    dm = HMADataModule([str(dataset), str(dataset / "b")], window=2, batch_size=8, num_workers=0,
                       epoch_windows=64, weights={"cart": 1.0})
    names = {n for b in dm.train_dataloader() for n in b["embodiment"]}
    assert names == {"cart"}
    dm2 = HMADataModule([str(dataset), str(dataset / "b")], window=2, batch_size=16, num_workers=0, epoch_windows=64)
    names2 = collections.Counter(n for b in dm2.train_dataloader() for n in b["embodiment"])
    assert set(names2) == {"arm", "cart"}


def test_val_split_and_errors(dataset):
    dm = HMADataModule(str(dataset), window=3, num_workers=0)
    ids = {e for b in dm.val_dataloader() for e in b["episode_id"]}
    assert ids == {"armval"}
    with pytest.raises(KeyError, match="unknown embodiments"):
        HMADataModule(str(dataset), embodiments=["ghost"])
    with pytest.raises(ValueError, match="no windows"):
        HMADataModule(str(dataset), window=50).make_dataset("train")


@pytest.mark.parametrize("mode, world", [("finite", 1), ("finite", 2), ("resampled", 2)])
def test_len_is_exact_batch_count(dataset, mode, world):
    for rank in range(world):
        dm = HMADataModule([str(dataset), str(dataset / "b")], window=3, batch_size=3, num_workers=2,
                           train_mode=mode, rank=rank, world_size=world, epoch_windows=30)
        loader = dm._loader(dm.make_dataset("train"))
        assert len(loader) == sum(1 for _ in loader)


def test_reads_webdataset_urls(dataset):
    dm = HMADataModule(f"pipe:cat {dataset}", window=3, batch_size=64, num_workers=0, train_mode="finite")
    (batch,) = list(dm.train_dataloader())
    local = HMADataModule(str(dataset), window=3, batch_size=64, num_workers=0, train_mode="finite")
    (ref,) = list(local.train_dataloader())
    assert sorted(zip(batch["episode_id"], batch["start"].tolist())) == sorted(
        zip(ref["episode_id"], ref["start"].tolist()))


def test_datamodule_skip_switch_counts_damage(tmp_path):
    with DatasetWriter(tmp_path, [ARM], image_size=(8, 8)) as w:
        for i in range(3):
            w.add(make_episode(f"a{i}", ARM, 6, seed=i))
    shard = next((tmp_path / "train").glob("*.tar"))
    data = bytearray(shard.read_bytes())
    i = data.find(b"\x93NUMPY")
    data[i + 130] ^= 0xFF  # first member of episode a0
    shard.write_bytes(bytes(data))
    from hma_zoo.data.shards import ShardError

    with pytest.raises(ShardError, match="on_error='skip'"):
        list(HMADataModule(str(tmp_path), window=3, num_workers=0, train_mode="finite").train_dataloader())
    dm = HMADataModule(str(tmp_path), window=3, num_workers=0, train_mode="finite", on_error="skip", batch_size=64)
    (batch,) = list(dm.train_dataloader())
    assert set(batch["episode_id"]) == {"a1", "a2"}
    assert dm.datasets["train"].read_stats.skipped_episodes == 1


def test_padding_when_a_consumer_owns_nothing(dataset):
    dm = HMADataModule(str(dataset), window=3, num_workers=0)  # val split: a single episode, 3 windows
    ds = dm.make_dataset("val")
    ds.pad = True
    per = [[(s["episode_id"], s["start"]) for s in ds.iter_consumer(c, 4)] for c in range(4)]
    assert len({len(p) for p in per}) == 1 and all(None not in p for p in per)
    assert {x for p in per for x in p} == {("armval", 0), ("armval", 3), ("armval", 6)}


@pytest.mark.parametrize("workers", [0, 2])
def test_max_episodes_keeps_first_train_episodes(dataset, workers):
    # arm: shards [arm0 arm1] [arm2 arm3] ...; a cap of 3 cuts the second shard, which 2 workers read "whole"
    dm = HMADataModule([str(dataset), str(dataset / "b")], window=3, batch_size=4, num_workers=workers,
                       train_mode="finite", max_episodes={"arm": 3})
    got = {(e, s) for b in dm.train_dataloader() for e, s in zip(b["episode_id"], b["start"].tolist())}
    want = {(e, s) for e, s in _expected(3) if not e.startswith("arm") or e in {"arm0", "arm1", "arm2"}}
    assert got == want
    assert {e for b in dm.val_dataloader() for e in b["episode_id"]} == {"armval"}  # val split is not capped
    one = HMADataModule(str(dataset / "b"), window=3, batch_size=64, num_workers=0, train_mode="finite",
                        max_episodes=1)
    assert {e for b in one.train_dataloader() for e in b["episode_id"]} == {"cart0"}
    with pytest.raises(KeyError, match="max_episodes names unknown"):
        HMADataModule(str(dataset), max_episodes={"ghost": 2})


def _keys(batch):
    return list(zip(batch["episode_id"], [int(s) for s in batch["start"]]))


@pytest.mark.parametrize("workers", [0, 2])
def test_train_loader_resumes_exactly_where_it_stopped(dataset, workers):
    """The train stream is a function of (seed, pass, batch): a DataModule restored from ``state_dict`` continues
    with exactly the batches the uninterrupted one yields next, including the following pass."""
    kw = dict(window=3, batch_size=2, num_workers=workers, epoch_windows=12, seed=5)
    dm = HMADataModule([str(dataset), str(dataset / "b")], **kw)
    loader = dm.train_dataloader()
    passes = [[_keys(b) for b in loader] for _ in range(3)]
    assert passes[0] != passes[1] != passes[2]  # each pass has its own order
    dm2 = HMADataModule([str(dataset), str(dataset / "b")], **kw)
    dm2.load_state_dict({"epoch": 1, "batches_done": 2, "seed": 5})
    loader2 = dm2.train_dataloader()
    assert [_keys(b) for b in loader2] == passes[1][2:]
    assert [_keys(b) for b in loader2] == passes[2]


def test_lightning_resume_from_checkpoint_sees_the_same_batches(dataset, tmp_path):
    """Through Lightning: 5 steps straight, or 2 steps + checkpoint + ``ckpt_path`` resume to 5, train on the same
    windows in the same order (the datamodule's state is saved in the checkpoint)."""
    import lightning as L
    import torch

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.seen = []

        def training_step(self, batch, batch_idx):
            self.seen.append(_keys(batch))
            return (self.w - 1.0) ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def run(max_steps, ckpt=None, save=None):
        dm = HMADataModule([str(dataset), str(dataset / "b")], window=3, batch_size=2, num_workers=0,
                           epoch_windows=8, seed=3)
        model = Recorder()
        trainer = L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            default_root_dir=tmp_path)
        trainer.fit(model, dm, ckpt_path=ckpt)
        if save:
            trainer.save_checkpoint(save)
        return model.seen

    straight = run(5)  # 4 batches per pass: crosses a pass boundary
    first = run(2, save=tmp_path / "mid.ckpt")
    rest = run(5, ckpt=str(tmp_path / "mid.ckpt"))
    assert first == straight[:2]
    assert rest == straight[2:5]
