"""The shard reader checks what it reads against the manifest: missing episodes, broken tar structure, empty
shards and wrong contents are named errors (``on_error="raise"``) or counted (``on_error="skip"``), never silent."""

import io
import itertools
import pickle
import tarfile

import numpy as np
import pytest
from data_helpers import ARM, THREE_IDS, make_episode, rewrite_sample, three_episode_dataset

from hma_zoo.data.commands import main, validate_dataset
from hma_zoo.data.datamodule import HMADataModule
from hma_zoo.data.shards import (
    DataError,
    DatasetWriter,
    ReadStats,
    ShardError,
    ShardExpectation,
    iter_episodes,
    load_manifest,
)

IDS = THREE_IDS


_dataset = three_episode_dataset


def _read(root, manifest, shard, **kw):
    expect = ShardExpectation.from_manifest(manifest, shard)
    return [ep.episode_id for ep in iter_episodes(str(root / shard["path"]), expect=expect, **kw)]


def _header_offset(path, prefix):
    with tarfile.open(path) as tar:
        return next(ti.offset for ti in tar if ti.name.startswith(prefix))


_rewrite = rewrite_sample


# ------------------------------------------------------------------------------------------------- tar structure
def test_truncated_between_samples_raises_naming_missing_episodes(tmp_path):
    manifest, shard = _dataset(tmp_path)
    path = tmp_path / shard["path"]
    cut = _header_offset(path, "a1.")  # the tar ends cleanly after sample a0, without the end-of-archive blocks
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(ShardError) as info:
        _read(tmp_path, manifest, shard)
    msg = str(info.value)
    assert str(path) in msg and "'a1'" in msg and "'a2'" in msg and "truncated" in msg
    with pytest.raises(ShardError, match="truncated"):  # also without the manifest
        list(iter_episodes(str(path)))
    stats = ReadStats()
    assert _read(tmp_path, manifest, shard, on_error="skip", stats=stats) == ["a0"]
    assert stats.skipped_shards == 1 and stats.missing_episodes == 2 and stats.damaged == 3


def test_rewritten_shard_missing_episodes_raise_or_count(tmp_path):
    manifest, shard = _dataset(tmp_path)
    path = tmp_path / shard["path"]
    with tarfile.open(path) as tar:
        items = [(ti, tar.extractfile(ti).read()) for ti in tar if ti.name.startswith("a0.")]
    with tarfile.open(path, "w") as tar:  # a well-formed tar that lacks a1 and a2
        for ti, data in items:
            tar.addfile(ti, io.BytesIO(data))
    with pytest.raises(DataError) as info:
        _read(tmp_path, manifest, shard)
    assert info.value.missing == ["a1", "a2"] and str(path) in str(info.value)
    with pytest.raises(DataError, match="'a2'"):  # the loader's way: an explicit episode set
        list(iter_episodes(str(path), keep={"a0", "a2"}))
    stats = ReadStats()
    assert _read(tmp_path, manifest, shard, on_error="skip", stats=stats) == ["a0"]
    assert stats.missing_episodes == 2 and stats.skipped_episodes == 0 and "'a1'" in stats.messages[0]


def test_flipped_header_byte_raises_or_counts(tmp_path, capsys):
    manifest, shard = _dataset(tmp_path)
    path = tmp_path / shard["path"]
    data = bytearray(path.read_bytes())
    data[_header_offset(path, "a1.") + 3] ^= 0x01  # a bit in the name field of a1's first member header
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="bad tar header") as info:
        _read(tmp_path, manifest, shard)
    assert str(path) in str(info.value) and "'a2'" in str(info.value)
    stats = ReadStats()
    assert _read(tmp_path, manifest, shard, on_error="skip", stats=stats) == ["a0"]
    assert stats.skipped_shards == 1 and stats.missing_episodes == 2
    assert main(["validate", str(tmp_path), "--skip-damaged"]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED" in out and "2 damaged episodes" in out and "bad tar header" in out


def test_zero_member_tar_raises_or_counts(tmp_path):
    manifest, shard = _dataset(tmp_path)
    path = tmp_path / shard["path"]
    with tarfile.open(path, "w"):
        pass  # a valid tar with zero members
    with pytest.raises(DataError, match="no tar members") as info:
        list(iter_episodes(str(path)))
    assert str(path) in str(info.value)
    stats = ReadStats()
    assert _read(tmp_path, manifest, shard, on_error="skip", stats=stats) == []
    assert stats.skipped_shards == 1 and stats.missing_episodes == 3
    assert validate_dataset(str(tmp_path), skip_damaged=True)["damaged"] == 4


def test_zero_member_tar_stops_training_instead_of_empty_epochs(tmp_path):
    _dataset(tmp_path)
    shard = next((tmp_path / "train").glob("*.tar"))
    with tarfile.open(shard, "w"):
        pass
    for mode in ("resampled", "finite"):
        dm = HMADataModule(str(tmp_path), window=3, num_workers=0, train_mode=mode, on_error="skip", batch_size=4)
        ds = dm.make_dataset("train")
        with pytest.raises(DataError, match="no readable window"):
            list(itertools.islice(iter(ds), 5))
        assert ds.read_stats.skipped_shards >= 1
    dm = HMADataModule(str(tmp_path), window=3, num_workers=0, train_mode="resampled", batch_size=4)
    with pytest.raises(DataError, match="no tar members"):
        list(itertools.islice(iter(dm.make_dataset("train")), 5))


# ------------------------------------------------------------------------------------------------------ contents
def _bad(ep):
    return ep.actions.copy(), ep.frames.copy()


def test_nan_action_raises_naming_episode_and_field(tmp_path):
    manifest, shard = _dataset(tmp_path)
    path = tmp_path / shard["path"]
    actions = make_episode("a1", ARM, 6, seed=1).actions
    actions[3, 1] = np.nan
    _rewrite(path, "a1", {"actions.npy": actions})
    with pytest.raises(DataError) as info:
        list(iter_episodes(str(path)))  # record checks alone catch it
    err = info.value
    assert isinstance(err, ValueError) and err.episode_id == "a1" and err.field_name == "actions"
    assert str(path) in str(err) and "NaN" in str(err)
    stats = ReadStats()
    assert _read(tmp_path, manifest, shard, on_error="skip", stats=stats) == ["a0", "a2"]
    assert stats.skipped_episodes == 1 and stats.missing_episodes == 0
    # training: raise names the episode; skip counts it and the batch holds no NaN
    with pytest.raises(DataError, match="'a1'.*'actions'"):
        list(HMADataModule(str(tmp_path), window=3, num_workers=0, train_mode="finite").train_dataloader())
    dm = HMADataModule(str(tmp_path), window=3, num_workers=0, train_mode="finite", on_error="skip", batch_size=64)
    (batch,) = list(dm.train_dataloader())
    assert set(batch["episode_id"]) == {"a0", "a2"} and bool(batch["actions"].isfinite().all())
    assert dm.datasets["train"].read_stats.skipped_episodes == 1


@pytest.mark.parametrize("record_agrees", [False, True])
def test_wrong_action_width_raises_or_counts(tmp_path, record_agrees, capsys):
    manifest, shard = _dataset(tmp_path)
    path = tmp_path / shard["path"]
    actions = np.zeros((10, 3), np.float32)  # the embodiment's action_dim is 2 (10 rows = 5 frames * stride 2)
    _rewrite(path, "a1", {"actions.npy": actions}, {"action_dim": 3} if record_agrees else None)
    with pytest.raises(DataError) as info:
        _read(tmp_path, manifest, shard)
    assert info.value.episode_id == "a1" and info.value.field_name == ("action_dim" if record_agrees else "actions")
    assert str(path) in str(info.value)
    stats = ReadStats()
    assert _read(tmp_path, manifest, shard, on_error="skip", stats=stats) == ["a0", "a2"]
    assert stats.skipped_episodes == 1
    assert main(["validate", str(tmp_path)]) == 1
    assert "'a1'" in capsys.readouterr().err
    assert main(["validate", str(tmp_path), "--skip-damaged"]) == 1
    assert "1 damaged episodes" in capsys.readouterr().out


@pytest.mark.parametrize("record_agrees", [False, True])
def test_wrong_frame_size_raises_or_counts(tmp_path, record_agrees):
    manifest, shard = _dataset(tmp_path)
    path = tmp_path / shard["path"]
    frames = np.zeros((6, 6, 6, 3), np.uint8)  # the dataset is 8x8
    _rewrite(path, "a1", {"frames.npy": frames}, {"image_size": [6, 6]} if record_agrees else None)
    with pytest.raises(DataError) as info:
        _read(tmp_path, manifest, shard)
    assert info.value.episode_id == "a1" and info.value.field_name == "frames" and str(path) in str(info.value)
    stats = ReadStats()
    assert _read(tmp_path, manifest, shard, on_error="skip", stats=stats) == ["a0", "a2"]
    assert stats.skipped_episodes == 1
    dm = HMADataModule(str(tmp_path), window=3, num_workers=0, train_mode="finite", on_error="skip", batch_size=64)
    (batch,) = list(dm.train_dataloader())
    assert set(batch["episode_id"]) == {"a0", "a2"} and tuple(batch["frames"].shape[2:]) == (8, 8, 3)


@pytest.mark.parametrize(
    "arrays, record, field",
    [
        ({"actions.npy": np.full((10, 2), np.inf, np.float32)}, None, "actions"),
        ({"actions.npy": np.zeros((10, 2), np.int64)}, None, "actions"),
        ({"actions.npy": np.zeros((4, 2), np.float32)}, {"num_actions": 4}, "actions"),
        ({"frames.npy": np.zeros((6, 8, 8, 3), np.float32)}, None, "frames"),
        ({"frames.npy": np.zeros((6, 8, 8, 1), np.uint8)}, None, "frames"),
        ({"frames.npy": np.zeros((4, 8, 8, 3), np.uint8), "actions.npy": np.zeros((6, 2), np.float32)},
         {"num_frames": 4, "num_actions": 6}, "frames"),  # consistent record, but the manifest lists 6 frames
        ({"actions.npy": np.zeros((10, 2), np.float32)}, {"num_actions": 8}, "actions"),  # record disagrees
        ({"proprio.npy": np.full((6, 3), np.nan, np.float32)}, None, "proprio"),
        ({}, {"embodiment": "cart", "action_dim": 2}, "embodiment"),
        ({}, {"frame_hz": 10.0, "stride": 1}, "stride"),
        ({}, {"episode_id": "zz"}, "episode_id"),
    ],
)
def test_bad_contents_are_named_errors_or_counted(tmp_path, arrays, record, field):
    manifest, shard = _dataset(tmp_path)
    path = tmp_path / shard["path"]
    _rewrite(path, "a1", arrays, record)
    with pytest.raises(DataError) as info:
        _read(tmp_path, manifest, shard)
    assert (info.value.episode_id, info.value.field_name) == ("a1", field)
    assert str(path) in str(info.value)
    stats = ReadStats()
    assert _read(tmp_path, manifest, shard, on_error="skip", stats=stats) == ["a0", "a2"]
    assert stats.skipped_episodes == 1 and stats.damaged == 1


def test_token_dtype_and_shape_checked_against_manifest(tmp_path):
    info = {"kind": "vq", "shape": [2, 2], "dtype": "uint16", "tokenizer": "t"}
    with DatasetWriter(tmp_path, [ARM], kind="tokens", token_info=info) as w:
        for eid in IDS:
            w.add(make_episode(eid, ARM, 3).__class__(eid, "arm", make_episode(eid, ARM, 3).actions,
                                                      tokens=np.ones((3, 2, 2), np.int64)))
    manifest = load_manifest(tmp_path)
    (shard,) = manifest["shards"]
    assert _read(tmp_path, manifest, shard) == IDS
    path = tmp_path / shard["path"]
    _rewrite(path, "a1", {"tokens.npy": np.ones((3, 2, 2), np.int32)})
    _rewrite(path, "a2", {"tokens.npy": np.ones((3, 2, 3), np.uint16)})
    with pytest.raises(DataError, match="uint16") as err:
        _read(tmp_path, manifest, shard)
    assert (err.value.episode_id, err.value.field_name) == ("a1", "tokens")
    stats = ReadStats()
    assert _read(tmp_path, manifest, shard, on_error="skip", stats=stats) == ["a0"]
    assert stats.skipped_episodes == 2


def test_extra_episode_not_in_manifest(tmp_path):
    manifest, shard = _dataset(tmp_path)
    shard = {**shard, "episodes": shard["episodes"][:2]}  # the manifest does not list a2
    with pytest.raises(DataError, match="not in the manifest") as info:
        _read(tmp_path, manifest, shard)
    assert info.value.episode_id == "a2"


def test_data_error_survives_pickling():
    err = DataError("shard s, episode 'a', field 'actions': bad", shard="s", episode_id="a", field_name="actions")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, DataError) and isinstance(back, ValueError) and isinstance(back, ShardError)
    assert (back.shard, back.episode_id, back.field_name, str(back)) == ("s", "a", "actions", str(err))
    assert DataError(str(err)).field_name is None  # DataLoader workers re-raise with the message alone


def test_intact_dataset_validates(tmp_path, capsys):
    _dataset(tmp_path)
    assert main(["validate", str(tmp_path), "--skip-damaged"]) == 0
    assert "OK: 3 episodes read" in capsys.readouterr().out
