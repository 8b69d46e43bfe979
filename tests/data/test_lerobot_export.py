"""``hma-zoo data export-lerobot``: a LeRobot v3.0 folder that ``import-lerobot`` (and LeRobot itself) reads back."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from data_helpers import ARM, CART, make_episode

pytest.importorskip("pyarrow")

from hma_zoo.data.commands import main  # noqa: E402
from hma_zoo.data.lerobot_export import ExportError, export_lerobot  # noqa: E402
from hma_zoo.data.shards import DatasetWriter, iter_episodes, join, load_manifest  # noqa: E402
from hma_zoo.data.sources.lerobot import import_lerobot  # noqa: E402

TASKS = ["reach the red block", "push the puck", "reach the red block", "open the drawer", "push the puck"]
LENGTHS = [6, 7, 5, 8, 6]


def smooth_frames(n: int, seed: int, size: int = 16) -> np.ndarray:
    """Smooth moving colour gradients (what a camera sees more than flat frames or noise)."""
    y, x = np.mgrid[0:size, 0:size]
    t = np.arange(n)[:, None, None]
    chans = [40 + 6 * x + 3 * y + 9 * t + 20 * seed, 200 - 5 * y + 4 * t, 90 + 4 * x - 3 * t + 10 * seed]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


def arm_dataset(root: Path, generated: dict | None = None) -> dict:
    """Five ARM episodes (stride 2; with and without the action chunk after the last frame), 16x16 smooth frames,
    task strings in meta, episode 4 in val; ``generated`` marks them as ``hma-zoo generate`` output."""
    eps = {}
    w = DatasetWriter(root, [ARM], image_size=(16, 16))
    for i, (n, task) in enumerate(zip(LENGTHS, TASKS)):
        ep = make_episode(f"ep{i}", ARM, n, seed=i, extra_chunk=i % 2 == 0, size=16)
        ep.frames = smooth_frames(n, i)
        ep.success = np.arange(len(ep.actions)) >= len(ep.actions) - 2
        ep.meta = {"seed": i, "task": task, **({"generated": True, **generated} if generated else {})}
        w.add(ep, split="val" if i == 4 else "train")
        eps[ep.episode_id] = ep
    w.close(extra={"generated": generated} if generated else None)
    return eps


def _read(root) -> tuple[dict, list]:
    m = load_manifest(root)
    return m, [ep for s in m["shards"] for ep in iter_episodes(join(str(root), s["path"]))]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("file_mb", [100, 1e-6])  # one file of each kind / a new parquet and mp4 per episode
def test_export_round_trip(tmp_path, file_mb):
    eps = arm_dataset(tmp_path / "ds")
    done = export_lerobot(str(tmp_path / "ds"), tmp_path / "lr", data_file_mb=file_mb, video_file_mb=file_mb)
    assert (done["episodes"], done["frames"], done["tasks"], done["control_steps_per_row"]) == (5, 32, 3, 2)
    info = json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 5 and info["splits"] == {"train": "0:4", "val": "4:5"}
    assert info["features"]["action"]["shape"] == [4] and info["features"]["action"]["names"][:3] == ["x@0", "y@0",
                                                                                                      "x@1"]
    n_videos = len(list((tmp_path / "lr" / "videos").rglob("*.mp4")))
    assert n_videos == (1 if file_mb == 100 else 5)

    import_lerobot(tmp_path / "lr", tmp_path / "back", image_size=(16, 16), val_fraction=0)
    m, back = _read(tmp_path / "back")
    emb = m["embodiments"]["arm"]
    assert (emb["action_dim"], emb["stride"], emb["control_hz"], emb["action_names"]) == (2, 2, 10.0, ["x", "y"])
    assert len(back) == len(eps)
    by_source = {ep.meta["meta"]["source_episode_id"]: ep for ep in back}
    for eid, ep in eps.items():
        got = by_source[eid]
        assert got.frames.shape == ep.frames.shape
        assert psnr(got.frames, ep.frames) > 30  # H.264 yuv420p, crf 18
        np.testing.assert_array_equal(got.actions, ep.actions)  # exact, padded last row dropped
        np.testing.assert_array_equal(got.proprio, ep.proprio)
        np.testing.assert_array_equal(got.reward, ep.reward)
        np.testing.assert_array_equal(got.success, ep.success)
        assert got.meta["meta"]["task"] == ep.meta["task"]
        assert got.meta["meta"]["seed"] == ep.meta["seed"]


def test_export_keeps_generation_provenance(tmp_path):
    import pyarrow.parquet as pq

    record = {"model": "hma-vq-t64.simmix", "actions": "replay", "seed": 3}
    arm_dataset(tmp_path / "gen", generated=record)
    export_lerobot(str(tmp_path / "gen"), tmp_path / "lr", split="train")
    rows = pq.read_table(next((tmp_path / "lr" / "meta" / "episodes").rglob("*.parquet"))).to_pylist()
    assert len(rows) == 4 and all(r["hma_zoo/generated"] for r in rows)
    assert [r["tasks"] for r in rows] == [[t] for t in TASKS[:4]]
    assert json.loads(rows[1]["hma_zoo/meta"])["model"] == "hma-vq-t64.simmix"
    saved = json.loads((tmp_path / "lr" / "meta" / "hma_zoo.json").read_text())
    assert saved["generated"]["model"] == "hma-vq-t64.simmix" and saved["embodiment"]["stride"] == 2
    import_lerobot(tmp_path / "lr", tmp_path / "back", image_size=(16, 16), val_fraction=0)
    _, back = _read(tmp_path / "back")
    assert all(ep.meta["meta"]["generated"] and ep.meta["meta"]["model"] == "hma-vq-t64.simmix" for ep in back)


def test_export_lower_fps_chunks_actions(tmp_path):
    eps = arm_dataset(tmp_path / "ds")
    export_lerobot(str(tmp_path / "ds"), tmp_path / "lr", fps=2.5)  # every 2nd frame, 4 control steps per row
    info = json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())
    assert info["fps"] == 2.5 and info["features"]["action"]["shape"] == [8]
    import_lerobot(tmp_path / "lr", tmp_path / "back", image_size=(16, 16), val_fraction=0)
    m, back = _read(tmp_path / "back")
    assert m["embodiments"]["arm"]["stride"] == 4
    for got in back:
        ep = eps[got.meta["meta"]["source_episode_id"]]
        f = len(ep.frames[::2])
        assert len(got.frames) == f
        k = f * 4 if len(ep.actions) >= f * 4 else (f - 1) * 4  # whole chunks after kept frames only
        np.testing.assert_array_equal(got.actions, ep.actions[:k])


def test_export_refuses_what_lerobot_cannot_hold(tmp_path, capsys):
    with DatasetWriter(tmp_path / "two", [ARM, CART], image_size=(8, 8)) as w:
        w.add(make_episode("a0", ARM, 4))
        w.add(make_episode("c0", CART, 4))
    with pytest.raises(ExportError, match="--embodiment"):
        export_lerobot(str(tmp_path / "two"), tmp_path / "lr")
    with pytest.raises(ExportError, match="divided by a whole number"):
        export_lerobot(str(tmp_path / "two"), tmp_path / "lr", embodiment="arm", fps=2)
    with pytest.raises(ExportError, match="no val episodes"):
        export_lerobot(str(tmp_path / "two"), tmp_path / "lr", embodiment="arm", split="val")
    assert not (tmp_path / "lr").exists() and not (tmp_path / "lr.partial").exists()

    spec = {"kind": "vq", "shape": [2, 2], "dtype": "uint16", "tokenizer": "t"}
    with DatasetWriter(tmp_path / "tok", [ARM], kind="tokens", token_info=spec) as w:
        ep = make_episode("a0", ARM, 4)
        ep.frames, ep.tokens = None, np.zeros((4, 2, 2), np.uint16)
        w.add(ep)
    assert main(["export-lerobot", "--data", str(tmp_path / "tok"), "--out", str(tmp_path / "lr")]) == 2
    assert "export the frame dataset" in capsys.readouterr().err

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a LeRobot dataset"):
        export_lerobot(str(tmp_path / "two"), tmp_path / "busy", embodiment="cart", overwrite=True)
    assert (tmp_path / "busy" / "notes.txt").exists()


def test_export_command(tmp_path, capsys):
    arm_dataset(tmp_path / "ds")
    argv = ["export-lerobot", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "lr"), "--split", "val"]
    assert main(argv) == 0
    assert "1 episodes, 6 frames, 1 tasks at 5 fps" in capsys.readouterr().out
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*argv[:-1], "train", "--overwrite"]) == 0
    assert "4 episodes" in capsys.readouterr().out


LEROBOT_PYTHON = Path(os.environ.get("HMA_LEROBOT_PYTHON", "/tmp/lerobot-venv/bin/python"))
LOAD = """
import json, sys
from lerobot.datasets.lerobot_dataset import LeRobotDataset
ds = LeRobotDataset("local/hma-export", root=sys.argv[1], video_backend="pyav",
                    delta_timestamps={"action": [0.0, 0.2]})
out = {"len": len(ds), "episodes": ds.num_episodes, "fps": ds.fps, "stats": sorted(ds.meta.stats), "items": []}
for i in range(len(ds)):
    item = ds[i]
    out["items"].append({"episode": int(item["episode_index"]), "task": item["task"],
                         "action": item["action"].tolist(), "action_is_pad": item["action_is_pad"].tolist(),
                         "frame": (item["observation.images.main"] * 255).round().byte().permute(1, 2, 0).tolist()})
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(not LEROBOT_PYTHON.is_file(), reason=f"no LeRobot virtualenv at {LEROBOT_PYTHON}: create one with "
                    "`python3 -m venv /tmp/lerobot-venv && /tmp/lerobot-venv/bin/pip install lerobot` or point "
                    "HMA_LEROBOT_PYTHON at its python")
def test_lerobot_loads_the_export(tmp_path):
    """LeRobot's own ``LeRobotDataset`` (in its own virtualenv, PyAV decoding) reads every frame of the export, with
    the actions, tasks and the action chunks of ``delta_timestamps`` (padding flagged at episode ends)."""
    eps = list(arm_dataset(tmp_path / "ds").values())
    export_lerobot(str(tmp_path / "ds"), tmp_path / "lr", data_file_mb=1e-6, video_file_mb=1e-6)
    run = subprocess.run([str(LEROBOT_PYTHON), "-c", LOAD, str(tmp_path / "lr")], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert (got["len"], got["episodes"], got["fps"]) == (32, 5, 5)
    assert {"action", "observation.images.main", "observation.state"} <= set(got["stats"])
    rows = iter(got["items"])
    for i, ep in enumerate(eps):
        chunks = np.concatenate([ep.actions, np.repeat(ep.actions[-1:], 2, 0)])[: len(ep.frames) * 2].reshape(-1, 4)
        for j in range(len(ep.frames)):
            item = next(rows)
            assert item["episode"] == i and item["task"] == TASKS[i]
            np.testing.assert_array_equal(np.float32(item["action"][0]), chunks[j])
            assert item["action_is_pad"] == [False, j + 1 >= len(ep.frames)]
            assert psnr(np.asarray(item["frame"], np.uint8), ep.frames[j]) > 30
