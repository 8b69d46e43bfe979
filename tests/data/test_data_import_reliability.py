"""Importers refuse what they cannot read correctly (issue 15, findings 3 and 5): a LeRobot layout that does not
match its version label or lacks its episode index, action/frame counts that do not fit the stride, non-uint8
frames, invalid fractions and strides, a contradicting ``info.json``. Nothing is written when they refuse."""

import shutil
import tracemalloc

import numpy as np
import pytest
from data_helpers import make_lerobot

from hma_zoo.data.commands import main
from hma_zoo.data.schema import ImporterError
from hma_zoo.data.shards import iter_episodes, join, load_manifest
from hma_zoo.data.sources.files import import_folder, to_uint8_frames

pytest.importorskip("pyarrow")


def _episodes(root):
    m = load_manifest(root)
    return m, {ep.episode_id: ep for s in m["shards"] for ep in iter_episodes(join(str(root), s["path"]))}


def _lerobot(root, out, **kw):
    from hma_zoo.data.sources.lerobot import import_lerobot

    return import_lerobot(root, out, image_size=(16, 16), val_fraction=0, **kw)


# --------------------------------------------------------------------------------------------- LeRobot (finding 3)
def test_lerobot_v3_without_episode_index_is_refused(tmp_path, capsys):
    root = tmp_path / "ds"
    make_lerobot(root, "v3.0", [6, 8])
    shutil.rmtree(root / "meta" / "episodes")
    with pytest.raises(ImporterError) as info:
        _lerobot(root, tmp_path / "out")
    msg = str(info.value)
    assert str(root / "meta" / "episodes") in msg and "v3.0" in msg
    assert not (tmp_path / "out" / "manifest.json").exists()
    # the command exits 2 with one line naming the folder, and writes nothing
    code = main(["import-lerobot", "--src", str(root), "--out", str(tmp_path / "out"), "--image-size", "16"])
    err = capsys.readouterr().err
    assert code == 2 and str(root / "meta" / "episodes") in err and "Traceback" not in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_lerobot_v3_with_empty_episode_index_is_refused(tmp_path):
    root = tmp_path / "ds"
    make_lerobot(root, "v3.0", [6, 8])
    for f in (root / "meta" / "episodes").rglob("*.parquet"):
        f.unlink()
    with pytest.raises(ImporterError, match="no .*parquet"):
        _lerobot(root, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize(("label", "layout"), [("v3.0", "v2"), ("v2.1", "v3")])
def test_lerobot_version_label_that_does_not_match_layout_is_refused(tmp_path, label, layout):
    root = tmp_path / "ds"
    make_lerobot(root, label, [6, 8], layout=layout)
    with pytest.raises(ImporterError) as info:
        _lerobot(root, tmp_path / "out")
    msg = str(info.value)
    assert str(root) in msg and label in msg and "layout" in msg
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_lerobot_missing_episode_file_is_refused_before_writing(tmp_path):
    root = tmp_path / "ds"
    make_lerobot(root, "v2.1", [6, 8])
    missing = root / "videos" / "chunk-000" / "observation.images.top" / "episode_000001.mp4"
    missing.unlink()
    with pytest.raises(ImporterError, match=str(missing)):
        _lerobot(root, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.tar"))


def test_lerobot_v3_episode_index_missing_columns_named(tmp_path):
    import pyarrow.parquet as pq

    root = tmp_path / "ds"
    make_lerobot(root, "v3.0", [6, 8])
    (f,) = (root / "meta" / "episodes").rglob("*.parquet")
    pq.write_table(pq.read_table(f).drop(["videos/observation.images.top/from_timestamp"]), f)
    with pytest.raises(ImporterError) as info:
        _lerobot(root, tmp_path / "out")
    assert str(f) in str(info.value) and "videos/observation.images.top/from_timestamp" in str(info.value)


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_lerobot_video_decoded_streaming_and_resized_as_it_goes(tmp_path, version):
    """A 240x320 video: the import keeps about one full-resolution frame in memory, not the whole file, and gives
    the same frames as decoding everything then resizing."""
    from hma_zoo.data.codec import mp4_load

    lengths = [30, 25, 35]
    rng = np.random.default_rng(0)
    frames = {i: np.repeat(rng.integers(0, 255, (n, 30, 40, 3), dtype=np.uint8), 8, axis=1).repeat(8, axis=2)
              for i, n in enumerate(lengths)}
    root = tmp_path / "ds"
    make_lerobot(root, version, lengths, size=0, frames=frames, per_file=2)
    _lerobot(root, tmp_path / "warm")  # imports modules, which tracemalloc would count
    tracemalloc.start()
    try:
        _lerobot(root, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    per_episode = max(lengths) * 240 * 320 * 3
    assert peak < per_episode / 4, f"peak {peak / 1e6:.1f} MB while one episode is {per_episode / 1e6:.1f} MB"
    _, eps = _episodes(tmp_path / "out")
    assert len(eps) == 3
    videos = sorted((root / "videos").rglob("*.mp4"))
    decoded = np.concatenate([mp4_load(str(v)) for v in videos])
    expected = to_uint8_frames(decoded, (16, 16))
    start = 0
    for i, n in enumerate(lengths):
        ep = eps[f"so100_{i:06d}"]
        np.testing.assert_array_equal(ep.frames, expected[start:start + n])
        start += n


def test_lerobot_v3_episodes_out_of_file_order(tmp_path):
    """Episodes listed in an order that differs from their order inside the mp4 are still cut correctly."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "ds"
    actions, frames = make_lerobot(root, "v3.0", [6, 8, 5])
    (f,) = (root / "meta" / "episodes").rglob("*.parquet")
    table = pq.read_table(f).to_pylist()
    # swap the labels of episodes 0 and 2: episode "0" is now the last segment of the file
    for r, src in ((table[0], 2), (table[2], 0)):
        r["episode_index"] = src
    pq.write_table(pa.Table.from_pylist(table), f)
    data = root / "data" / "chunk-000" / "file-000.parquet"
    t = pq.read_table(data).to_pydict()
    t["episode_index"] = [{0: 2, 2: 0}.get(i, i) for i in t["episode_index"]]
    pq.write_table(pa.table(t), data)
    _lerobot(root, tmp_path / "out")
    _, eps = _episodes(tmp_path / "out")
    for new, old in ((0, 2), (1, 1), (2, 0)):
        ep = eps[f"so100_{new:06d}"]
        np.testing.assert_array_equal(ep.actions, actions[old])
        assert np.abs(ep.frames.astype(int) - frames[old].astype(int)).mean() < 4


def test_lerobot_info_json_not_json_names_file(tmp_path):
    root = tmp_path / "ds"
    make_lerobot(root, "v2.1", [6])
    (root / "meta" / "info.json").write_text("{not json")
    with pytest.raises(ImporterError, match=str(root / "meta" / "info.json")):
        _lerobot(root, tmp_path / "out")



def test_lerobot_invalid_stride_and_val_fraction_refused(tmp_path):
    root = tmp_path / "ds"
    make_lerobot(root, "v2.1", [6])
    with pytest.raises(ImporterError, match="stride"):
        _lerobot(root, tmp_path / "o1", stride=0)
    from hma_zoo.data.sources.lerobot import import_lerobot

    with pytest.raises(ImporterError, match=r"val.fraction"):
        import_lerobot(root, tmp_path / "o2", image_size=(16, 16), val_fraction=1.5)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


# ---------------------------------------------------------------------------------------- import-files (finding 5)
def _npz(folder, name="ep0", n=6, k=None, size=8, seed=0, dtype=np.uint8, **extra):
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    frames = rng.integers(0, 255, (n, size, size, 3)).astype(dtype)
    actions = rng.normal(size=(n - 1 if k is None else k, 2)).astype(np.float32)
    np.savez(folder / f"{name}.npz", frames=frames, actions=actions, **extra)
    return frames, actions


def _files(src, out, **kw):
    kw = {"embodiment": "arm", "control_hz": 10, "image_size": (8, 8), "val_fraction": 0, **kw}
    return import_folder(src, out, **kw)


def _nothing_written(out):
    return not out.exists() or not any(p.is_file() for p in out.rglob("*"))


@pytest.mark.parametrize("k", [9, 3, 7])
def test_files_action_count_that_does_not_fit_is_refused(tmp_path, k):
    """6 frames take 5 actions (none after the last frame) or 6; 9 used to be cut to 6 silently."""
    _npz(tmp_path / "src", "a_ok", n=6, k=5)
    _npz(tmp_path / "src", "b_bad", n=6, k=k)
    with pytest.raises(ImporterError) as info:
        _files(tmp_path / "src", tmp_path / "out")
    msg = str(info.value)
    assert "b_bad.npz" in msg and f"{k} actions" in msg and "6 frames" in msg and "5 or 6" in msg
    assert _nothing_written(tmp_path / "out")  # the good episode written before is removed too


def test_files_source_stride_counts(tmp_path):
    """Files holding one frame every 2 control steps: 5 frames take 8 or 10 actions, stored at stride 2."""
    frames, actions = _npz(tmp_path / "src", n=5, k=8)
    m = _files(tmp_path / "src", tmp_path / "out", source_stride=2)
    assert m["embodiments"]["arm"]["stride"] == 2 and m["embodiments"]["arm"]["frame_hz"] == 5
    _, eps = _episodes(tmp_path / "out")
    np.testing.assert_array_equal(eps["arm_ep0"].frames, frames)
    np.testing.assert_array_equal(eps["arm_ep0"].actions, actions)
    _npz(tmp_path / "src2", n=5, k=9)
    with pytest.raises(ImporterError, match="8 or 10"):
        _files(tmp_path / "src2", tmp_path / "out2", source_stride=2)


def test_files_last_frame_is_kept_or_refused_with_how(tmp_path):
    rng = np.random.default_rng(1)
    last = rng.integers(0, 255, (8, 8, 3)).astype(np.uint8)
    frames, actions = _npz(tmp_path / "src", n=5, k=5, last_frame=last)
    with pytest.raises(ImporterError, match="--last-frame-key last_frame"):
        _files(tmp_path / "src", tmp_path / "out")
    _files(tmp_path / "src", tmp_path / "out", last_frame_key="last_frame")
    _, eps = _episodes(tmp_path / "out")
    np.testing.assert_array_equal(eps["arm_ep0"].frames, np.concatenate([frames, last[None]]))
    np.testing.assert_array_equal(eps["arm_ep0"].actions, actions)


def test_files_uint16_frames_refused_without_frame_scale(tmp_path):
    frames, _ = _npz(tmp_path / "src", n=4, dtype=np.uint16)
    frames16 = (frames.astype(np.uint16) * 257)  # full 16-bit range
    np.savez(tmp_path / "src" / "ep0.npz", frames=frames16, actions=np.zeros((3, 2), np.float32))
    with pytest.raises(ImporterError) as info:
        _files(tmp_path / "src", tmp_path / "out")
    assert "uint16" in str(info.value) and "--frame-scale" in str(info.value) and "ep0.npz" in str(info.value)
    assert _nothing_written(tmp_path / "out")
    _files(tmp_path / "src", tmp_path / "out", frame_scale=1 / 257)
    _, eps = _episodes(tmp_path / "out")
    np.testing.assert_array_equal(eps["arm_ep0"].frames, frames)
    with pytest.raises(ImporterError, match="0..255"):  # a scale that does not fit is refused, not clipped
        _files(tmp_path / "src", tmp_path / "out3", frame_scale=1.0)


def test_files_float_frames_need_frame_scale(tmp_path):
    (tmp_path / "src").mkdir()
    frames = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    np.savez(tmp_path / "src" / "ep0.npz", frames=frames, actions=np.zeros((3, 2), np.float32))
    with pytest.raises(ImporterError, match="--frame-scale 255"):
        _files(tmp_path / "src", tmp_path / "out")
    _files(tmp_path / "src", tmp_path / "out", frame_scale=255)
    _, eps = _episodes(tmp_path / "out")
    np.testing.assert_array_equal(eps["arm_ep0"].frames, (frames * 255).round().astype(np.uint8))


@pytest.mark.parametrize("args", [{"val_fraction": 1.5}, {"val_fraction": -0.1}, {"val_fraction": 1.0},
                                  {"stride": 0}, {"stride": -1}, {"source_stride": 0}, {"frame_scale": 0.0}])
def test_files_invalid_options_refused(tmp_path, args):
    _npz(tmp_path / "src")
    with pytest.raises(ImporterError):
        _files(tmp_path / "src", tmp_path / "out", **args)
    assert _nothing_written(tmp_path / "out")


@pytest.mark.parametrize("flag", [["--val-fraction", "1.5"], ["--stride", "0"]])
def test_files_invalid_options_exit_2(tmp_path, capsys, flag):
    _npz(tmp_path / "src")
    code = main(["import-files", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--embodiment", "r",
                 "--control-hz", "5", "--image-size", "8", *flag])
    err = capsys.readouterr().err
    assert code == 2 and flag[0] in err and "Traceback" not in err


@pytest.mark.parametrize("where", ["info.json", "meta/info.json"])
def test_files_info_json_fps_checked(tmp_path, where):
    _npz(tmp_path / "src")
    info = tmp_path / "src" / where
    info.parent.mkdir(exist_ok=True)
    info.write_text('{"fps": 30}')
    with pytest.raises(ImporterError) as exc:
        _files(tmp_path / "src", tmp_path / "out")
    assert str(info) in str(exc.value) and "30" in str(exc.value) and "--control-hz" in str(exc.value)
    info.write_text('{"fps": 10}')
    _files(tmp_path / "src", tmp_path / "out")  # agrees: imported (the meta/ folder is not an episode)
    info.write_text('{"fps": 5}')  # frames at 5 Hz = 10 Hz control with --source-stride 2
    _npz(tmp_path / "src", k=10)
    _files(tmp_path / "src", tmp_path / "out2", source_stride=2)


def test_files_success_and_reward_carried(tmp_path):
    rng = np.random.default_rng(0)
    success = np.array([0, 0, 0, 1, 1], np.int64)
    reward = rng.normal(size=5).astype(np.float32)
    _npz(tmp_path / "src", n=6, k=5, done=success, rew=reward)
    _files(tmp_path / "src", tmp_path / "out", success_key="done", reward_key="rew")
    _, eps = _episodes(tmp_path / "out")
    np.testing.assert_array_equal(eps["arm_ep0"].success, success.astype(bool))
    np.testing.assert_array_equal(eps["arm_ep0"].reward, reward)
    _npz(tmp_path / "src2", n=6, k=5, done=np.array([0, 2, 0, 0, 0]))
    with pytest.raises(ImporterError, match="0 or 1"):
        _files(tmp_path / "src2", tmp_path / "out2", success_key="done")
    _npz(tmp_path / "src3", n=6, k=5, rew=np.zeros(6, np.float32))
    with pytest.raises(ImporterError, match="one per action"):
        _files(tmp_path / "src3", tmp_path / "out3", reward_key="rew")
    with pytest.raises(ImporterError, match="--success-key"):  # a key that names nothing is an error
        _files(tmp_path / "src", tmp_path / "out4", success_key="succ")


def test_files_success_key_on_the_command_line(tmp_path):
    _npz(tmp_path / "src", n=6, k=5, done=np.ones(5, bool))
    assert main(["import-files", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--embodiment",
                 "r", "--control-hz", "5", "--image-size", "8", "--success-key", "done", "--val-fraction", "0"]) == 0
    _, eps = _episodes(tmp_path / "out")
    assert eps["r_ep0"].success.all()


def test_files_stride_help_matches_the_docs():
    from hma_zoo.data.commands import _parser

    sub = next(a for a in _parser()._actions if a.dest == "cmd").choices["import-files"]
    helps = {a.dest: a.help for a in sub._actions}
    assert "keep every" in helps["stride"] and "one frame per control step" in helps["stride"]
    assert "control steps" in helps["source_stride"]


def test_files_frame_scale_fraction_on_the_command_line(tmp_path):
    (tmp_path / "src").mkdir()
    frames = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 3)).astype(np.uint16)
    np.savez(tmp_path / "src" / "ep0.npz", frames=frames * 257, actions=np.zeros((3, 2), np.float32))
    args = ["import-files", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--embodiment", "r",
            "--control-hz", "5", "--image-size", "8", "--val-fraction", "0"]
    assert main(args) == 2
    assert main([*args, "--frame-scale", "1/257"]) == 0
    _, eps = _episodes(tmp_path / "out")
    np.testing.assert_array_equal(eps["r_ep0"].frames, frames.astype(np.uint8))
