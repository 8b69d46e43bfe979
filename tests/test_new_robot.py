"""``hma-zoo new-robot`` end to end on a small imported dataset: import files, fine-tune the bundled tokenizer,
tokenize, add the robot to a pretrained world model and fine-tune it, train the same from scratch, evaluate both."""

from __future__ import annotations

import json

import numpy as np

import hma_zoo
from hma_zoo.configs import EmbodimentSpec
from tests.shipped_helpers import ship_tiny


def _write_episodes(folder, n: int = 6, t: int = 12) -> None:
    """A dot on a grey 64x64 board moved by 2-D velocity actions (frame t+1 = frame t moved by action t)."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        pos = rng.uniform(16, 48, 2)
        actions = rng.uniform(-3, 3, (t - 1, 2)).astype(np.float32)
        frames = np.full((t, 64, 64, 3), 90, np.uint8)
        for k in range(t):
            y, x = np.clip(pos.astype(int), 4, 59)
            frames[k, y - 3 : y + 3, x - 3 : x + 3] = (240, 200, 40)
            if k < t - 1:
                pos = pos + actions[k]
        np.savez(folder / f"ep{i:03d}.npz", frames=frames, actions=actions)


def test_new_robot_path_end_to_end(tmp_path, monkeypatch) -> None:
    from hma_zoo.cli import main as cli

    ship_tiny(tmp_path / "pretrained", monkeypatch, EmbodimentSpec("old_arm", action_dim=3))

    _write_episodes(tmp_path / "raw")
    data = tmp_path / "data" / "dot"
    assert cli(["data", "import-files", "--src", str(tmp_path / "raw"), "--out", str(data), "--embodiment", "dot",
                "--control-hz", "10", "--val-fraction", "0.34"]) == 0
    out = tmp_path / "new"
    assert cli(["new-robot", "--data", str(data), "--model", "hma-vq-test.unit", "--out", str(out),
                "--tokenizer-steps", "6", "--wm-steps", "4", "--batch-size", "2", "--eval-windows", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["embodiments"] == ["dot"] and report["tokenizer"]["steps"] == 6
    before, after = report["tokenizer"]["before"]["all"]["psnr"], report["tokenizer"]["after"]["all"]["psnr"]
    assert np.isfinite(before) and np.isfinite(after) and after != before
    for arm in ("finetuned", "scratch"):
        row = report["arms"][arm]["model/dot"]
        assert np.isfinite(row["psnr"]) and row["delta_psnr"] is not None
    tuned = hma_zoo.load_pretrained(str(out / "finetuned" / "model"))
    scratch = hma_zoo.load_pretrained(str(out / "scratch" / "model"))
    assert tuned.config.embodiment_names == ("old_arm", "dot")  # the new robot joins the pretrained ones
    assert scratch.config.embodiment_names == ("dot",)
    sim = hma_zoo.load_simulator(str(out / "finetuned" / "model"), temperature=0.0)
    assert sim.model is not None and "| finetuned | dot |" in (out / "report.md").read_text()
    # the result evaluates by its folder alone (bundled tokenizer) and gets a card rendered from the measurement
    assert cli(["evaluate", "--model", str(out / "finetuned" / "model"), "--data", str(data), "--max-windows", "2",
                "--no-policy", "--out", str(tmp_path / "eval"), "--write-card", "unit"]) == 0
    card = (out / "finetuned" / "model" / "README.md").read_text()
    assert "hma-vq-test.unit" in card and "dot (teacher_forced)" in card


def test_new_robot_says_what_is_missing(tmp_path, capsys) -> None:
    from hma_zoo.new_robot import main

    assert main(["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "import it first" in capsys.readouterr().out
