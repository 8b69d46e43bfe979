"""The two uses run from a fresh clone on the shipped files: the Sawyer world model, its success judges and state
probes in pretrained/ (no dataset needed for policy-eval; a few recorded demos for generate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("metaworld")

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "pretrained" / "hma-vq-t64.sawyer-tasks"
EVAL = ROOT / "pretrained" / "eval"


def test_policy_eval_runs_on_the_shipped_model_judge_and_probe(tmp_path: Path) -> None:
    from hma_zoo.cli import main

    out = tmp_path / "pe"
    rc = main(["policy-eval", "--task", "reach", "--model", "hma-vq-t64.sawyer-tasks",
               "--judge", str(EVAL / "judge-reach"), "--probe", str(EVAL / "probe-reach"), "--also-probe-rule",
               "--policy", "scripted", "--policy", "random", "--episodes", "1", "--horizon", "3", "--gifs", "1",
               "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary["policies"]] == ["scripted(noise=0)", "random"]
    assert "probe-rule" in summary["other_judges"] and summary["meta"]["model"] == "hma-vq-t64.sawyer-tasks"
    assert len(list((out / "gifs").glob("*.gif"))) == 2


def test_generate_policy_mode_on_the_shipped_model(tmp_path: Path) -> None:
    from hma_zoo.cli import main
    from hma_zoo.data.commands import validate_dataset
    from hma_zoo.policy.nets import load_task_frames
    from hma_zoo.policy.tasks import get_task

    demos = tmp_path / "demos"
    assert main(["policy", "demos", "--task", "reach", "--episodes", "2", "--policy", "scripted", "--horizon", "3",
                 "--val-fraction", "0", "--out", str(demos)]) == 0
    gen = tmp_path / "gen"
    assert main(["generate", "--model", str(MODEL), "--data", str(demos), "--split", "train", "--episodes", "2",
                 "--frames", "3", "--actions", "policy", "--policy", "scripted:noise=0.1", "--task", "reach",
                 "--probe", str(EVAL / "probe-reach"), "--out", str(gen)]) == 0
    assert validate_dataset(str(gen), False)["episodes"] == 2
    data = load_task_frames(demos, get_task("reach"), "train", extra=[gen])
    assert len(data.episode_ids) == 4 and data.frames.shape[0] == 4 * 4
