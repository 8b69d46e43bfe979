"""Fuzz tests (hypothesis) of everything that reads bytes from disk: the shard reader, the manifest and the npz
importer (issue 15). Inputs are damaged by random truncation, bit flips and deleted ranges, and arrays get random
shapes and dtypes. The property: every input either reads exactly what was written, or fails with a named error
(``ShardError`` / ``DataError`` naming the shard, ``ValueError`` naming the manifest, ``ImporterError`` naming the
file); never a silent partial read.

The default suite runs a bounded, derandomised profile (25 examples per test); ``pytest -m slow`` runs a longer,
random one.
"""

from __future__ import annotations

import atexit
import io
import shutil
import tarfile
import tempfile
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from data_helpers import ARM, make_episode, rewrite_sample

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tests.fuzz_helpers import apply_mutation, mutations  # noqa: E402

from hma_zoo.data.schema import ImporterError  # noqa: E402
from hma_zoo.data.shards import (  # noqa: E402
    MANIFEST,
    DatasetWriter,
    ReadStats,
    ShardError,
    ShardExpectation,
    iter_episodes,
    join,
    load_manifest,
)
from hma_zoo.data.sources.files import import_folder  # noqa: E402

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = settings(max_examples=400, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
IDS = ["a0", "a1", "a2"]
WORK = Path(tempfile.mkdtemp(prefix="hma-fuzz-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------ mutations
def _same(a, b) -> bool:
    for name in ("frames", "actions", "proprio", "reward", "success"):
        x, y = getattr(a, name), getattr(b, name)
        if (x is None) != (y is None) or (x is not None and (x.dtype != y.dtype or not np.array_equal(x, y))):
            return False
    return a.episode_id == b.episode_id and a.embodiment == b.embodiment and a.meta == b.meta


# --------------------------------------------------------------------------------------------------- shard reader
@cache
def _dataset() -> tuple[Path, dict, dict, bytes, list[int]]:
    """A written dataset (3 arm episodes in one shard), its manifest, the episodes as read, the shard bytes and
    the offsets of its tar headers and records."""
    root = WORK / "ds"
    with DatasetWriter(root, [ARM], image_size=(8, 8)) as w:
        for i, eid in enumerate(IDS):
            w.add(make_episode(eid, ARM, 6, seed=i))
    manifest = load_manifest(root)
    (shard,) = manifest["shards"]
    path = root / shard["path"]
    original = {ep.episode_id: ep for ep in iter_episodes(str(path))}
    with tarfile.open(path) as tar:
        hot = [o for ti in tar for o in (ti.offset, ti.offset_data) if ti.name.endswith((".json", ".crc")) or
               o == ti.offset]
    return root, manifest, original, path.read_bytes(), sorted(set(hot))


def _shard_property(mutation: tuple, on_error: str = "raise") -> None:
    root, manifest, original, data, _ = _dataset()
    path = WORK / "fuzz.tar"
    path.write_bytes(apply_mutation(data, mutation))
    expect = ShardExpectation.from_manifest(manifest, manifest["shards"][0])
    stats = ReadStats()
    try:
        got = list(iter_episodes(str(path), on_error=on_error, stats=stats, expect=expect))
    except ShardError as exc:
        assert on_error == "raise" and str(path) in str(exc), f"unnamed error for {mutation}: {exc}"
        return
    for ep in got:
        assert _same(ep, original[ep.episode_id]), f"episode {ep.episode_id} read differently after {mutation}"
    if len(got) < len(IDS) or on_error == "raise":
        assert sorted(e.episode_id for e in got) == IDS or stats.damaged > 0, f"silent partial read: {mutation}"


def _shard_mutations() -> st.SearchStrategy:
    _, _, _, data, hot = _dataset()
    return mutations(len(data), hot)


@FAST
@given(st.data())
def test_fuzz_shard_reader(data) -> None:
    _shard_property(data.draw(_shard_mutations()))


@FAST
@given(st.data())
def test_fuzz_shard_reader_skip_mode_counts_what_it_skips(data) -> None:
    _shard_property(data.draw(_shard_mutations()), on_error="skip")


def _buggy_rewrite(path: Path, key: str, suffix: str, arr: np.ndarray) -> None:
    """Replace one member by ``arr`` with CRCs that pass (a buggy writer), so only the content checks can see it."""
    rewrite_sample(path, key, {suffix: arr})


_DTYPES = st.sampled_from(["uint8", "uint16", "int64", "float16", "float32", "float64", "bool"])
_SHAPES = st.lists(st.integers(0, 9), min_size=0, max_size=5).map(tuple)


def _wrong_shape_property(member: str, shape: tuple, dtype: str, fill: float) -> None:
    root, manifest, original, data, _ = _dataset()
    path = WORK / "shape.tar"
    path.write_bytes(data)
    arr = np.full(shape, fill).astype(dtype)
    _buggy_rewrite(path, "a1", f"{member}.npy", arr)
    expect = ShardExpectation.from_manifest(manifest, manifest["shards"][0])
    try:
        got = {ep.episode_id: ep for ep in iter_episodes(str(path), expect=expect)}
    except ShardError as exc:  # DataError for contents
        assert str(path) in str(exc) and "'a1'" in str(exc)
        return
    assert sorted(got) == IDS
    stored = getattr(got["a1"], member)
    assert stored.dtype == arr.dtype and np.array_equal(stored, arr)  # only what the format allows got through
    assert stored.shape == getattr(original["a1"], member).shape


@FAST
@given(member=st.sampled_from(["frames", "actions", "proprio", "reward", "success"]), shape=_SHAPES, dtype=_DTYPES,
       fill=st.sampled_from([0.0, 1.0, 7.0, float("nan"), float("inf")]))
def test_fuzz_wrong_shapes_and_dtypes_are_named_errors(member, shape, dtype, fill) -> None:
    _wrong_shape_property(member, shape, dtype, fill)


# ------------------------------------------------------------------------------------------------------- manifest
def _manifest_property(mutation: tuple) -> None:
    root, manifest, original, _, _ = _dataset()
    copy = WORK / "mcopy"
    if not copy.exists():
        shutil.copytree(root, copy)
    text = (root / MANIFEST).read_bytes()
    (copy / MANIFEST).write_bytes(apply_mutation(text, mutation))
    try:
        m = load_manifest(copy)
        got = {ep.episode_id: ep for s in m["shards"]
               for ep in iter_episodes(join(str(copy), s["path"]), expect=ShardExpectation.from_manifest(m, s))}
    except ShardError as exc:
        assert str(copy) in str(exc), f"unnamed error for {mutation}: {exc}"
        return
    except ValueError as exc:  # the manifest itself
        assert str(copy / MANIFEST) in str(exc), f"unnamed error for {mutation}: {exc}"
        return
    want = {k: v for k, v in manifest.items() if k != "root"}
    assert {k: v for k, v in m.items() if k != "root"} == want, f"manifest read differently after {mutation}"
    assert sorted(got) == IDS and all(_same(got[k], original[k]) for k in IDS)


def _manifest_mutations() -> st.SearchStrategy:
    root = _dataset()[0]
    text = (root / MANIFEST).read_bytes()
    hot = [i for i in range(len(text)) if text[i:i + 1] in (b'"', b":", b"[")][::7]
    return mutations(len(text), hot)


@FAST
@given(st.data())
def test_fuzz_manifest(data) -> None:
    _manifest_property(data.draw(_manifest_mutations()))


# --------------------------------------------------------------------------------------------------- npz importer
@cache
def _npz() -> tuple[bytes, np.ndarray, np.ndarray, list[int]]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 8, 8, 3)).astype(np.uint8)
    actions = rng.normal(size=(4, 2)).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, frames=frames, actions=actions)
    data = buf.getvalue()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        hot = [i.header_offset for i in zf.infolist()] + [data.rfind(b"PK\x01\x02"), data.rfind(b"PK\x05\x06")]
    hot += [data.find(b"{'descr'", h) for h in hot[:2]]
    return data, frames, actions, sorted(h for h in set(hot) if h >= 0)


def _import_property(raw: bytes, frames: np.ndarray | None, actions: np.ndarray | None, tag: str) -> None:
    """Import a folder holding ``ep0.npz`` = ``raw``: it fails with an ImporterError naming the file (and writes
    nothing), or stores exactly ``frames`` / ``actions``."""
    src, out = WORK / f"src-{tag}", WORK / f"out-{tag}"
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    src.mkdir()
    (src / "ep0.npz").write_bytes(raw)
    try:
        import_folder(src, out, embodiment="arm", control_hz=10, image_size=(8, 8), val_fraction=0)
    except ImporterError as exc:
        assert str(src) in str(exc), f"unnamed error: {exc}"
        assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), "a refused import wrote files"
        return
    m = load_manifest(out)
    (ep,) = [ep for s in m["shards"] for ep in iter_episodes(join(str(out), s["path"]))]
    assert frames is not None and np.array_equal(ep.frames, frames), "frames imported differently"
    assert np.array_equal(ep.actions, actions.astype(np.float32).reshape(len(actions), -1))


@FAST
@given(st.data())
def test_fuzz_npz_importer_damaged_file(data) -> None:
    raw, frames, actions, hot = _npz()
    _import_property(apply_mutation(raw, data.draw(mutations(len(raw), hot))), frames, actions, "bytes")


_FRAME_SHAPES = st.tuples(st.integers(0, 6), st.sampled_from([1, 8]), st.sampled_from([1, 8]),
                          st.sampled_from([1, 3, 4]))


_VALID = {"fshape": (5, 8, 8, 3), "fdtype": "uint8", "k": 4, "a": 2, "adtype": "float32", "bad": None}
_FREE = {"fshape": _FRAME_SHAPES, "fdtype": _DTYPES, "k": st.integers(0, 8), "a": st.integers(0, 3),
         "adtype": _DTYPES, "bad": st.sampled_from([None, "nan", "inf"])}


@FAST
@given(st.data())
def test_fuzz_npz_importer_shapes_and_dtypes(data) -> None:
    """A valid episode, or one with one parameter (or, half the time, all of them) drawn at random."""
    if data.draw(st.booleans(), label="all random"):
        p = {name: data.draw(strategy, label=name) for name, strategy in _FREE.items()}
    else:
        changed = data.draw(st.sampled_from(["none", *sorted(_FREE)]), label="changed")
        p = dict(_VALID) if changed == "none" else dict(_VALID, **{changed: data.draw(_FREE[changed], label=changed)})
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, p["fshape"]).astype(p["fdtype"])
    actions = rng.normal(size=(p["k"], p["a"])).astype(p["adtype"])
    floating = np.issubdtype(actions.dtype, np.floating)
    if p["bad"] and actions.size and floating:
        actions.flat[0] = float(p["bad"])
    buf = io.BytesIO()
    np.savez(buf, frames=frames, actions=actions)
    # what may be imported: uint8 [T, 8, 8, 3] frames, T-1 or T finite numeric actions of width >= 1
    n = p["fshape"][0]
    ok = p["fdtype"] == "uint8" and p["fshape"][1:] == (8, 8, 3) and n >= 1 and p["k"] in (n - 1, n) and \
        p["a"] >= 1 and p["adtype"] != "bool" and not (p["bad"] and actions.size and floating)
    _import_property(buf.getvalue(), frames if ok else None, actions, "shapes")


# ----------------------------------------------------------------------------------------------- longer profiles
@pytest.mark.slow
@LONG
@given(st.data())
def test_fuzz_shard_reader_long(data) -> None:
    _shard_property(data.draw(_shard_mutations()), on_error=data.draw(st.sampled_from(["raise", "skip"])))


@pytest.mark.slow
@LONG
@given(st.data())
def test_fuzz_manifest_long(data) -> None:
    _manifest_property(data.draw(_manifest_mutations()))


@pytest.mark.slow
@LONG
@given(st.data())
def test_fuzz_npz_importer_long(data) -> None:
    raw, frames, actions, hot = _npz()
    _import_property(apply_mutation(raw, data.draw(mutations(len(raw), hot))), frames, actions, "bytes")
