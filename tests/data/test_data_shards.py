import tarfile

import numpy as np
import pytest
from data_helpers import ARM, CART, make_episode

from hma_zoo.data.schema import EmbodimentInfo, Episode, EpisodeError, split_for_index, validate_episode
from hma_zoo.data.shards import DatasetWriter, ReadStats, ShardError, iter_episodes, load_manifest


def _write(tmp_path, encoding="npy", n=3, per_shard=64):
    eps = [make_episode(f"arm{i}", ARM, 5 + i, seed=i) for i in range(n)] + [make_episode("cart0", CART, 4)]
    with DatasetWriter(tmp_path, [ARM, CART], image_size=(8, 8), encoding=encoding,
                       episodes_per_shard=per_shard) as w:
        for i, ep in enumerate(eps):
            w.add(ep, split="val" if i == 1 else "train")
    return eps, load_manifest(tmp_path)


def _read_all(tmp_path, manifest, **kw):
    out = {}
    for shard in manifest["shards"]:
        for ep in iter_episodes(str(tmp_path / shard["path"]), **kw):
            out[ep.episode_id] = ep
    return out


def test_round_trip_npy(tmp_path):
    eps, manifest = _write(tmp_path)
    got = _read_all(tmp_path, manifest)
    assert set(got) == {e.episode_id for e in eps}
    for ep in eps:
        g = got[ep.episode_id]
        assert g.embodiment == ep.embodiment
        for name in ("frames", "actions", "proprio", "reward", "success"):
            np.testing.assert_array_equal(getattr(g, name), getattr(ep, name))
        assert g.frames.dtype == np.uint8 and g.actions.dtype == np.float32
        assert g.meta["meta"] == ep.meta and g.meta["stride"] == (2 if ep.embodiment == "arm" else 1)


def test_manifest_stats_and_split(tmp_path):
    eps, manifest = _write(tmp_path)
    arm = manifest["embodiments"]["arm"]
    assert arm["stride"] == 2 and arm["counts"]["val"]["episodes"] == 1 and arm["counts"]["train"]["episodes"] == 2
    train_actions = np.concatenate([eps[0].actions, eps[2].actions])  # stats are over the train split
    np.testing.assert_allclose(arm["action_stats"]["mean"], train_actions.mean(0), rtol=1e-6)
    np.testing.assert_allclose(arm["action_stats"]["std"], train_actions.std(0), rtol=1e-6)
    np.testing.assert_allclose(arm["action_stats"]["max"], train_actions.max(0))
    assert arm["counts"]["train"]["frames"] == 5 + 7
    assert {s["split"] for s in manifest["shards"]} == {"train", "val"}
    assert all(s["path"].startswith(s["split"] + "/") for s in manifest["shards"])


def test_round_trip_mp4_is_close(tmp_path):
    eps = [make_episode("a0", ARM, 6, size=16)]
    eps[0].frames[:] = 120
    with DatasetWriter(tmp_path, [ARM], image_size=(16, 16), encoding="mp4") as w:
        w.add(eps[0])
    (got,) = iter_episodes(str(tmp_path / load_manifest(tmp_path)["shards"][0]["path"]))
    assert got.frames.shape == eps[0].frames.shape
    assert np.abs(got.frames.astype(int) - eps[0].frames.astype(int)).mean() < 4


def test_shards_roll_over(tmp_path):
    _, manifest = _write(tmp_path, n=5, per_shard=2)
    arm_train = [s for s in manifest["shards"] if s["embodiment"] == "arm" and s["split"] == "train"]
    assert [len(s["episodes"]) for s in arm_train] == [2, 2]


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda e: e.actions.__setitem__((1, 0), np.nan), "actions"),
        (lambda e: e.actions.__setitem__((0, 1), np.inf), "actions"),
        (lambda e: setattr(e, "actions", e.actions[:-1]), "actions"),
        (lambda e: setattr(e, "actions", e.actions[:, :1].copy()), "actions"),
        (lambda e: setattr(e, "actions", e.actions.astype(np.int64)), "actions"),
        (lambda e: setattr(e, "frames", e.frames.astype(np.float32)), "frames"),
        (lambda e: setattr(e, "frames", e.frames[..., :1]), "frames"),
        (lambda e: setattr(e, "frames", e.frames[:, :4]), "frames"),
        (lambda e: setattr(e, "embodiment", "ghost"), "embodiment"),
        (lambda e: setattr(e, "proprio", e.proprio[:-1]), "proprio"),
        (lambda e: setattr(e, "reward", e.reward[:-1]), "reward"),
        (lambda e: setattr(e, "episode_id", "bad.id"), "episode_id"),
    ],
)
def test_validation_errors_name_episode_and_field(tmp_path, mutate, field):
    ep = make_episode("ep7", ARM, 5)
    mutate(ep)
    with DatasetWriter(tmp_path, [ARM], image_size=(8, 8)) as w, pytest.raises(EpisodeError) as info:
        w.add(ep)
    assert info.value.field_name == field
    assert repr(ep.episode_id) in str(info.value) and repr(field) in str(info.value)


def test_valid_lengths_accepted():
    validate_episode(make_episode("a", ARM, 5, extra_chunk=True), {"arm": ARM})
    validate_episode(make_episode("b", ARM, 5), {"arm": ARM})


def test_duplicate_episode_refused(tmp_path):
    with DatasetWriter(tmp_path, [ARM], image_size=(8, 8)) as w:
        w.add(make_episode("a", ARM, 3))
        with pytest.raises(EpisodeError, match="already"):
            w.add(make_episode("a", ARM, 3))


def test_embodiment_info_checks():
    assert EmbodimentInfo("x", 3, control_hz=30, frame_hz=10).stride == 3
    with pytest.raises(ValueError, match="not a positive integer"):
        EmbodimentInfo("x", 3, control_hz=30, frame_hz=7)
    with pytest.raises(ValueError, match="letters"):
        EmbodimentInfo("a b", 3, control_hz=1, frame_hz=1)


def test_split_for_index():
    splits = [split_for_index(i, 0.25) for i in range(8)]
    assert splits == ["train", "train", "train", "val"] * 2
    assert split_for_index(3, 0.0) == "train"


def _corrupt_member(path, member_suffix):
    with tarfile.open(path) as tar:
        items = [(ti, tar.extractfile(ti).read()) for ti in tar]
    with tarfile.open(path, "w") as tar:
        for ti, data in items:
            if ti.name.endswith(member_suffix):
                data = bytearray(data)
                data[-1] ^= 0xFF
                data = bytes(data)
            import io

            tar.addfile(ti, io.BytesIO(data))


def test_damaged_member_raise_or_skip(tmp_path):
    _, manifest = _write(tmp_path, n=3)
    shard = next(s for s in manifest["shards"] if s["embodiment"] == "arm" and s["split"] == "train")
    path = tmp_path / shard["path"]
    _corrupt_member(path, "arm0.frames.npy")
    with pytest.raises(ShardError, match="arm0.*frames.npy.*CRC32"):
        list(iter_episodes(str(path)))
    stats = ReadStats()
    got = [e.episode_id for e in iter_episodes(str(path), on_error="skip", stats=stats)]
    assert got == ["arm2"] and stats.skipped_episodes == 1 and stats.episodes == 1


def test_truncated_shard_raise_or_skip(tmp_path):
    _, manifest = _write(tmp_path, n=3)
    shard = next(s for s in manifest["shards"] if s["embodiment"] == "arm" and s["split"] == "train")
    path = tmp_path / shard["path"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(ShardError):
        list(iter_episodes(str(path)))
    stats = ReadStats()
    got = list(iter_episodes(str(path), on_error="skip", stats=stats))
    assert stats.skipped_shards + stats.skipped_episodes >= 1
    assert len(got) == stats.episodes < 2


def test_missing_manifest_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="hma-zoo data build"):
        load_manifest(tmp_path)


def test_token_dataset_needs_tokens(tmp_path):
    info = {"kind": "vq", "shape": [2, 2], "dtype": "int32", "tokenizer": "t"}
    with DatasetWriter(tmp_path, [ARM], kind="tokens", token_info=info) as w:
        with pytest.raises(EpisodeError, match="tokens"):
            w.add(make_episode("a", ARM, 3))
        tokens = np.arange(3 * 4).reshape(3, 2, 2)
        w.add(Episode("b", "arm", make_episode("b", ARM, 3).actions, tokens=tokens))
    (got,) = iter_episodes(str(tmp_path / load_manifest(tmp_path)["shards"][0]["path"]))
    np.testing.assert_array_equal(got.tokens, tokens)
