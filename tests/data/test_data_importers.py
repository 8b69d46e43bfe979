
import numpy as np
import pytest

from hma_zoo.data.schema import ImporterError
from hma_zoo.data.shards import iter_episodes, join, load_manifest
from hma_zoo.data.sources.files import import_folder


def _episodes(root):
    m = load_manifest(root)
    return m, {ep.episode_id: ep for s in m["shards"] for ep in iter_episodes(join(str(root), s["path"]))}


def _raw(n, a_dim=3, size=16, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    return frames, rng.normal(size=(n, a_dim)).astype(np.float32)


def test_import_npz_and_npy_folders(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    f0, a0 = _raw(9, seed=0)
    np.savez(src / "ep0.npz", rgb=f0, act=a0, state=a0[:, :2])
    f1, a1 = _raw(7, seed=1)
    (src / "ep1").mkdir()
    np.save(src / "ep1" / "rgb.npy", f1)
    np.save(src / "ep1" / "act.npy", a1)
    manifest = import_folder(src, tmp_path / "out", embodiment="arm", control_hz=10, stride=2, frames_key="rgb",
                             actions_key="act", proprio_key="state", image_size=(16, 16), val_fraction=0)
    _, eps = _episodes(tmp_path / "out")
    e0 = eps["arm_ep0"]
    np.testing.assert_array_equal(e0.frames, f0[::2])  # 5 kept frames, actions cut to 4 chunks of 2
    np.testing.assert_array_equal(e0.actions, a0[:8])
    np.testing.assert_array_equal(e0.proprio, a0[::2, :2])
    np.testing.assert_array_equal(eps["arm_ep1"].actions, a1[:6])
    assert manifest["embodiments"]["arm"]["stride"] == 2 and manifest["embodiments"]["arm"]["frame_hz"] == 5


def test_import_robomimic_hdf5_with_resize(tmp_path):
    h5py = pytest.importorskip("h5py")
    frames, actions = _raw(6, a_dim=7, size=32)
    with h5py.File(tmp_path / "demo.hdf5", "w") as f:
        for d in range(3):
            g = f.create_group(f"data/demo_{d}")
            g.create_dataset("obs/agentview_image", data=frames)
            g.create_dataset("actions", data=actions + d)
    import_folder(tmp_path / "demo.hdf5", tmp_path / "out", embodiment="panda", control_hz=20, robomimic=True,
                  image_size=(16, 16), val_fraction=0.5)
    m, eps = _episodes(tmp_path / "out")
    assert sorted(eps) == ["panda_demo_demo_0", "panda_demo_demo_1", "panda_demo_demo_2"]
    np.testing.assert_array_equal(eps["panda_demo_demo_2"].actions, actions + 2)
    assert eps["panda_demo_demo_0"].frames.shape == (6, 16, 16, 3)
    assert m["embodiments"]["panda"]["counts"]["val"]["episodes"] == 1


def test_import_missing_key_is_clear(tmp_path):
    (tmp_path / "src").mkdir()
    f0, a0 = _raw(4)
    np.savez(tmp_path / "src" / "e.npz", frames=f0, actions=a0)
    with pytest.raises(ImporterError, match="--actions-key"):  # a ValueError naming the file and the option
        import_folder(tmp_path / "src", tmp_path / "out", embodiment="x", control_hz=5, actions_key="act",
                      image_size=(16, 16))


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_import_lerobot(tmp_path, version):
    pytest.importorskip("pyarrow")
    from data_helpers import make_lerobot

    from hma_zoo.data.sources.lerobot import import_lerobot

    root = tmp_path / "ds"
    lengths = [6, 8]
    actions, frames = make_lerobot(root, version, lengths)
    import_lerobot(root, tmp_path / "out", image_size=(16, 16), val_fraction=0)
    m, eps = _episodes(tmp_path / "out")
    assert m["embodiments"]["so100"]["action_names"] == ["a", "b"]
    for i, n in enumerate(lengths):
        ep = eps[f"so100_{i:06d}"]
        np.testing.assert_array_equal(ep.actions, actions[i])
        assert ep.frames.shape == (n, 16, 16, 3)
        assert np.abs(ep.frames.astype(int) - frames[i].astype(int)).mean() < 4  # lossy h264
        np.testing.assert_array_equal(ep.proprio, actions[i])  # observation.state -> proprio (the probe's state)
    with pytest.raises(KeyError, match="state column"):
        import_lerobot(root, tmp_path / "out2", image_size=(16, 16), val_fraction=0, state_key="observation.pose")


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_import_lerobot_keeps_task_strings(tmp_path, version):
    """Each episode's task (``meta/tasks.*`` looked up by its rows' ``task_index``) lands in its ``meta["task"]``;
    a dataset without a task table imports as before, with no task."""
    pytest.importorskip("pyarrow")
    from data_helpers import make_lerobot

    from hma_zoo.data.sources.lerobot import import_lerobot

    tasks = ["pick up the cube", "open the drawer", "pick up the cube"]
    make_lerobot(tmp_path / "ds", version, [5, 6, 4], tasks=tasks)
    import_lerobot(tmp_path / "ds", tmp_path / "out", image_size=(16, 16), val_fraction=0)
    _, eps = _episodes(tmp_path / "out")
    assert [eps[f"so100_{i:06d}"].meta["meta"]["task"] for i in range(3)] == tasks
    make_lerobot(tmp_path / "plain", version, [5])
    import_lerobot(tmp_path / "plain", tmp_path / "out2", image_size=(16, 16), val_fraction=0)
    _, eps = _episodes(tmp_path / "out2")
    assert "task" not in eps["so100_000000"].meta["meta"]
