"""The per-episode ``.json`` record is checksummed too (issue 15, finding 4): a ``<id>.json.crc`` member holds its
CRC32, the reader verifies it, and a manifest written with record checksums requires them. Datasets written before
(no ``.json.crc`` member, no ``record_checksums`` in the manifest) stay readable, their records unchecked."""

import io
import json
import tarfile

import pytest
from data_helpers import THREE_IDS, three_episode_dataset

from hma_zoo.data.shards import (
    DataError,
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
    return {ep.episode_id: ep for ep in iter_episodes(str(root / shard["path"]), expect=expect, **kw)}


def test_writer_stores_record_checksum_and_manifest_says_so(tmp_path):
    manifest, shard = _dataset(tmp_path)
    with tarfile.open(tmp_path / shard["path"]) as tar:
        names = tar.getnames()
    assert all(f"{i}.json.crc" in names for i in IDS)
    assert manifest["record_checksums"] is True
    assert sorted(_read(tmp_path, manifest, shard)) == IDS


def test_changed_record_value_is_caught(tmp_path):
    """A flipped digit inside the record keeps it valid JSON with the same length (so the tar stays valid): only
    the record checksum can see it."""
    manifest, shard = _dataset(tmp_path)
    path = tmp_path / shard["path"]
    data = path.read_bytes()
    assert data.count(b'"seed": 1}') == 1
    path.write_bytes(data.replace(b'"seed": 1}', b'"seed": 7}'))
    with pytest.raises(ShardError) as info:
        _read(tmp_path, manifest, shard)
    msg = str(info.value)
    assert str(path) in msg and "'a1'" in msg and "record" in msg and "CRC32" in msg
    with pytest.raises(ShardError, match="record"):  # also without the manifest
        list(iter_episodes(str(path)))
    stats = ReadStats()
    assert sorted(_read(tmp_path, manifest, shard, on_error="skip", stats=stats)) == ["a0", "a2"]
    assert stats.skipped_episodes == 1 and stats.damaged == 1


def test_damaged_checksum_member_is_caught(tmp_path):
    manifest, shard = _dataset(tmp_path)
    path = tmp_path / shard["path"]
    _rewrite(path, lambda name, data: b"not a number" if name == "a2.json.crc" else data)
    with pytest.raises(ShardError, match="'a2'.*json.crc"):
        _read(tmp_path, manifest, shard)


def _rewrite(path, change):
    with tarfile.open(path) as tar:
        items = [(ti, tar.extractfile(ti).read()) for ti in tar]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for ti, data in items:
            data = change(ti.name, data)
            if data is None:
                continue
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))


def test_missing_checksum_member_is_an_error_when_the_manifest_promises_it(tmp_path):
    manifest, shard = _dataset(tmp_path)
    path = tmp_path / shard["path"]
    _rewrite(path, lambda name, data: None if name == "a0.json.crc" else data)
    with pytest.raises(DataError) as info:
        _read(tmp_path, manifest, shard)
    assert info.value.episode_id == "a0" and "json.crc" in str(info.value)


def test_old_dataset_without_record_checksums_still_reads(tmp_path):
    """Written before record checksums: no ``.json.crc`` members, no ``record_checksums`` nor ``checksum`` in the
    manifest."""
    _, shard = _dataset(tmp_path)
    _rewrite(tmp_path / shard["path"], lambda name, data: None if name.endswith(".json.crc") else data)
    m = json.loads((tmp_path / "manifest.json").read_text())
    del m["record_checksums"], m["checksum"]
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    manifest = load_manifest(tmp_path)
    eps = _read(tmp_path, manifest, manifest["shards"][0])
    assert sorted(eps) == IDS and eps["a1"].meta["meta"]["seed"] == 1
    from hma_zoo.data.commands import validate_dataset

    assert validate_dataset(str(tmp_path))["damaged"] == 0


def test_manifest_checksum_catches_a_changed_value_and_resave_accepts_an_edit(tmp_path):
    """A changed digit in the action statistics keeps the manifest valid JSON; its checksum sees it."""
    from hma_zoo.data.shards import resave_manifest

    _dataset(tmp_path)
    path = tmp_path / "manifest.json"
    m = json.loads(path.read_text())
    m["embodiments"]["arm"]["action_stats"]["mean"][0] += 1.0
    path.write_text(json.dumps(m, indent=1))
    with pytest.raises(ValueError, match="fails its checksum") as info:
        load_manifest(tmp_path)
    assert str(path) in str(info.value) and "resave_manifest" in str(info.value)
    del m["checksum"]  # removing the checksum does not switch the check off
    path.write_text(json.dumps(m, indent=1))
    with pytest.raises(ValueError, match="has no checksum"):
        load_manifest(tmp_path)
    resave_manifest(tmp_path)  # an edit on purpose
    assert load_manifest(tmp_path)["embodiments"]["arm"]["action_stats"]["mean"][0] == m["embodiments"]["arm"][
        "action_stats"]["mean"][0]
