"""Policy tasks, policies, BC, success judges and policy-eval on tiny models and synthetic datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hma_zoo
from hma_zoo.configs import EmbodimentSpec, TokenSpec
from hma_zoo.data.schema import EmbodimentInfo, Episode
from hma_zoo.data.shards import DatasetWriter
from hma_zoo.policy.policies import make_policy
from hma_zoo.policy.tasks import TaskSpec, get_task

gym = pytest.importorskip("gymnasium")

SAWYER = EmbodimentSpec("metaworld_sawyer", action_dim=4, stride=4, action_mean=(0.0,) * 4, action_std=(0.5,) * 4)


class Pool8Tokenizer:
    """uint8 ``[..., 64, 64, 3]`` frames <-> ``[..., 8, 8]`` ids in {0, 1} (8x8 block brightness above 127)."""

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        f = torch.as_tensor(frames).float().mean(-1)
        lead = f.shape[:-2]
        pooled = f.reshape(-1, 8, 8, 8, 8).mean((2, 4))
        return (pooled > 127).long().reshape(*lead, 8, 8)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        up = tokens.repeat_interleave(8, -1).repeat_interleave(8, -2)
        return (up * 255).to(torch.uint8).unsqueeze(-1).expand(*up.shape, 3).contiguous()


def tiny_sawyer_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    tokens = TokenSpec(kind="vq", grid=(8, 8), vocab_size=2, factor_sizes=(2,))
    return hma_zoo.create_model("hma-vq-test", embodiments=[SAWYER], tokens=tokens,
                                conditioning={"mode": "add", "action_dropout": 0.0},
                                trunk={"d_model": 32, "depth": 2, "num_heads": 2, "max_frames": 4},
                                predict_actions=False).eval()


class FakeProbe:
    """A probe stand-in: state dim k = mean brightness of the frame x (k + 1) / 255."""

    def __init__(self, width: int = 7, name: str = "metaworld_sawyer") -> None:
        self.embodiments = (name,)
        self.targets = [type("T", (), {"name": name, "width": width})()]
        self.width = width

    def predict(self, frames: torch.Tensor, names: list[str]) -> torch.Tensor:
        b = frames.float().mean((-1, -2, -3)) / 255  # [B, T]
        return b[..., None] * torch.arange(1, self.width + 1).float()


def _sim(seed: int = 0) -> hma_zoo.Simulator:
    return hma_zoo.Simulator(tiny_sawyer_model(seed), Pool8Tokenizer(), steps=2, temperature=1.0,
                             generator=torch.Generator().manual_seed(seed), record=False)


# ---------------------------------------------------------------------------------------------- real simulators
@pytest.fixture(scope="module")
def reach_env():
    from hma_zoo.policy.tasks import RealTaskEnv

    env = RealTaskEnv("reach", horizon=32)
    yield env
    env.close()


def test_reach_env_interface_expert_succeeds_random_does_not(reach_env) -> None:
    from hma_zoo.policy.tasks import run_episode

    obs, info = reach_env.reset(seed=3)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["state"].shape == (7,) and obs["goal"].shape == (3,)
    with pytest.raises(ValueError, match="chunk of 16"):
        reach_env.step(np.zeros(5))
    expert = run_episode(reach_env, make_policy("scripted", "reach"), seed=3)
    assert expert["success"] and expert["steps"] == 32 and expert["images"].shape == (33, 64, 64, 3)
    # the hand ended at the goal in the simulator's own state
    assert np.linalg.norm(reach_env.trace["state"][-1][:3] - reach_env.trace["goal"]) < 0.05
    randoms = [run_episode(reach_env, make_policy("random", "reach"), seed=s)["success"] for s in range(3)]
    assert sum(randoms) <= 1
    # one control step is held for the frame: the recorded rows repeat it
    reach_env.reset(seed=1)
    reach_env.step(np.array([0.5, -0.5, 0.0, 0.0], np.float32))
    assert np.allclose(np.stack(reach_env.trace["actions"]), np.tile([0.5, -0.5, 0.0, 0.0], (4, 1)))


def test_pusht_coverage_from_state_matches_the_simulator() -> None:
    from hma_zoo.policy.tasks import PushTCoverage, RealTaskEnv

    env = RealTaskEnv("pusht", horizon=4)
    cover = PushTCoverage()
    obs, info = env.reset(seed=0)
    for s in range(3):
        obs, progress, *_ = env.step(np.array([256.0, 256.0]) + 40 * s)
        assert abs(cover(obs["state"]) - progress) < 1e-6
    # a block on the goal pose covers it fully
    assert cover(np.array([0, 0, 256, 256, np.cos(np.pi / 4), np.sin(np.pi / 4)])) == pytest.approx(1.0)
    env.close()


def test_make_policy_errors_and_noise_grades_actions() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("expert", "reach")
    with pytest.raises(ValueError, match="noise=S"):
        make_policy("scripted:gain=2", "reach")
    with pytest.raises(KeyError, match="known tasks"):
        make_policy("random", "nope")
    obs = {"image": np.zeros((64, 64, 3), np.uint8), "state": np.zeros(7, np.float32),
           "goal": np.array([0.05, 0.0, 0.0], np.float32)}
    clean = make_policy("scripted", "reach").act(obs)
    assert clean.shape == (16,) and np.allclose(clean.reshape(4, 4), clean[:4])  # the expert's action held
    assert clean[0] > 0  # toward the goal on +x
    noisy = make_policy("scripted:noise=0.5", "reach")
    noisy.reset(0)
    assert np.abs(noisy.act(obs) - clean).max() > 0.1 and np.abs(noisy.act(obs)).max() <= 1.0


# ---------------------------------------------------------------------------------------------- datasets
def _write_synthetic(root: Path, episodes: int, frames: int = 6, seed: int = 0) -> Path:
    """A reach-task dataset: a bright 16x16 square appears from the frame where ``success`` turns on; the action
    chunk after a frame is +0.8 where the square is visible and -0.8 where it is not; goal = (1, 2, 3)."""
    rng = np.random.default_rng(seed)
    info = EmbodimentInfo("metaworld_sawyer", 4, 80.0, 20.0)
    with DatasetWriter(root, [info]) as w:
        for e in range(episodes):
            on = int(rng.integers(1, frames + 1))  # first frame with the square (frames = never)
            imgs = rng.integers(0, 60, (frames, 64, 64, 3)).astype(np.uint8)
            for f in range(on, frames):
                imgs[f, 24:40, 24:40] = 255
            success = np.zeros((frames - 1) * 4, bool)
            acts = np.zeros(((frames - 1) * 4, 4), np.float32)
            for f in range(frames - 1):
                acts[f * 4:(f + 1) * 4] = 0.8 if f >= on else -0.8
            for f in range(1, frames):
                success[f * 4 - 1] = f >= on
            proprio = np.concatenate([np.zeros((frames, 7)), np.tile([1.0, 2.0, 3.0], (frames, 1))], 1)
            w.add(Episode(f"ep_{e:03d}", "metaworld_sawyer", acts, frames=imgs, proprio=proprio.astype(np.float32),
                          success=success), "val" if e % 4 == 3 else "train")
    return root


def test_load_task_frames_aligns_chunks_labels_and_goals(tmp_path: Path) -> None:
    from hma_zoo.policy.nets import load_task_frames

    root = _write_synthetic(tmp_path / "d", 8)
    data = load_task_frames(root, get_task("reach"), "train")
    assert len(data.episode_ids) == 6 and data.frames.shape == (36, 64, 64, 3)
    visible = data.frames[:, 30, 30, 0] == 255
    assert np.array_equal(data.label >= 0.5, visible)  # the frame's label is the success of its last control step
    valid = data.has_chunk
    assert valid.sum() == 6 * 5 and not valid[5::6].any()  # the last frame of an episode has no chunk
    assert np.allclose(data.chunk[valid & visible], 0.8) and np.allclose(data.chunk[valid & ~visible], -0.8)
    assert np.allclose(data.goal, [1, 2, 3])
    assert np.array_equal(data.prev[:6], [0, 0, 1, 2, 3, 4])
    assert len(load_task_frames(root, get_task("reach"), "train", episodes=2).episode_ids) == 2
    with pytest.raises(ValueError, match="holds 6"):
        load_task_frames(root, get_task("reach"), "train", episodes=7)


def test_record_demos_writes_a_valid_task_dataset(tmp_path: Path) -> None:
    from hma_zoo.data.commands import validate_dataset
    from hma_zoo.policy.demos import record_demos
    from hma_zoo.policy.nets import load_task_frames

    out = tmp_path / "demos"
    summary = record_demos("reach", ["scripted", "random"], 4, out, horizon=3, val_fraction=0.5)
    assert summary["policies"]["scripted"]["episodes"] == 2
    assert validate_dataset(str(out), False)["episodes"] == 4
    data = load_task_frames(out, get_task("reach"), "train")
    assert data.frames.shape[0] == 2 * 4 and data.chunk.shape[1] == 16
    # every policy has held-out episodes (a split that followed the policy cycle once left val with random only)
    from hma_zoo.policy.nets import episode_meta, read_episodes

    for split in ("train", "val"):
        assert {episode_meta(e)["policy"] for e in read_episodes(out, split, "metaworld_sawyer")} == {"scripted",
                                                                                                     "random"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["embodiments"]["metaworld_sawyer"]["stride"] == 4
    with pytest.raises(FileExistsError, match="--overwrite"):
        record_demos("reach", ["random"], 1, out, horizon=2)


# ---------------------------------------------------------------------------------------------- BC and judges
def test_bc_learns_an_image_dependent_action_and_reloads_identically(tmp_path: Path) -> None:
    from hma_zoo.policy.bc import load_bc_policy, train_bc

    root = _write_synthetic(tmp_path / "d", 12)
    paths = train_bc(root, "reach", tmp_path / "bc", steps=120, save_steps=[10], backbone="test_resnet",
                     batch_size=32, progress=False)
    assert [p.name for p in paths] == ["step-000010", "step-000120"]
    policy = load_bc_policy(paths[-1], "reach")
    dark = np.full((64, 64, 3), 20, np.uint8)
    bright = dark.copy()
    bright[24:40, 24:40] = 255
    goal = np.array([1.0, 2.0, 3.0], np.float32)
    policy.reset(0)
    a_dark = policy.act({"image": dark, "goal": goal})
    policy.reset(0)
    policy.act({"image": bright, "goal": goal})
    a_bright = policy.act({"image": bright, "goal": goal})
    assert a_dark.mean() < -0.3 and a_bright.mean() > 0.3
    again = load_bc_policy(paths[-1], "reach")
    again.reset(0)
    assert np.array_equal(again.act({"image": dark, "goal": goal}), a_dark)
    with pytest.raises(ValueError, match="trained on task 'reach'"):
        load_bc_policy(paths[-1], "push")


def test_judge_learns_success_frames_and_probe_rule_thresholds(tmp_path: Path) -> None:
    from hma_zoo.policy.judge import ProbeRuleJudge, fit_judge, load_judge

    root = _write_synthetic(tmp_path / "d", 16)
    judge, metrics = fit_judge(root, "reach", tmp_path / "judge", steps=80, backbone="test_resnet", batch_size=32,
                               progress=False)
    m = metrics["classifier"]
    assert m["frame_auroc"] > 0.95 and m["episode_accuracy"] >= 0.75
    loaded = load_judge(tmp_path / "judge")
    assert loaded.meta["metrics"]["classifier"]["frame_auroc"] == pytest.approx(m["frame_auroc"])
    dark = np.full((2, 64, 64, 3), 20, np.uint8)
    bright = dark.copy()
    bright[:, 24:40, 24:40] = 255
    assert loaded.judge(bright, np.array([1, 2, 3]))[0] and not loaded.judge(dark, np.array([1, 2, 3]))[0]
    rule = ProbeRuleJudge(FakeProbe(), "reach")
    assert rule.judge(dark, np.zeros(3), state=np.array([0.01, 0.02, 0.0, 0, 0, 0, 0]))[0]
    assert not rule.judge(dark, np.zeros(3), state=np.array([0.06, 0.0, 0.0, 0, 0, 0, 0]))[0]
    with pytest.raises(ValueError, match="no state rule"):
        ProbeRuleJudge(FakeProbe(), "pusht")
    # without a state the rule reads it from the frames with the probe: (b, 2b, 3b) for brightness b
    at_dark = 20 / 255 * np.array([1.0, 2.0, 3.0])
    assert rule.judge(dark, at_dark)[0] and not rule.judge(bright, at_dark)[0]


class PrevProbe(FakeProbe):
    """A context-sensitive probe stand-in: reads frame t-1 (frame 0: itself), as a 2-frame context allows."""

    def predict(self, frames: torch.Tensor, names: list[str]) -> torch.Tensor:
        return super().predict(torch.cat([frames[:, :1], frames[:, :-1]], 1), names)


def test_evaluate_judges_probe_rule_reads_each_frame_with_its_previous_one(tmp_path: Path) -> None:
    from hma_zoo.policy.judge import evaluate_judges, judge_metrics
    from hma_zoo.policy.nets import load_task_frames

    task = get_task("reach")
    data = load_task_frames(_write_synthetic(tmp_path / "d", 8, frames=5), task, "train")
    got = evaluate_judges(data, task, probe=PrevProbe())["probe_rule"]
    b = data.frames[data.prev].reshape(len(data.prev), -1).mean(1) / 255  # each frame's previous frame
    d = np.linalg.norm(b[:, None] * np.array([1.0, 2.0, 3.0]) - data.goal, axis=1)
    want = judge_metrics(-d, d <= task.success_radius, data)
    assert got == pytest.approx(want, abs=1e-5) and 0.5 < got["frame_auroc"] < 1.0


# ---------------------------------------------------------------------------------------------- world model env
def test_world_model_env_steps_the_simulator_and_reads_state_with_the_probe() -> None:
    from hma_zoo.policy.wm_env import WorldModelTaskEnv

    env = WorldModelTaskEnv(_sim(), "reach", probe=FakeProbe(), horizon=3)
    prompt = np.zeros((1, 64, 64, 3), np.uint8)
    prompt[0, :32] = 255
    obs, info = env.reset(seed=0, options={"prompt_frames": prompt, "goal": [0.1, 0.2, 0.3]})
    assert np.array_equal(obs["image"], prompt[0]) and np.allclose(obs["goal"], [0.1, 0.2, 0.3])
    assert obs["state"][0] == pytest.approx(0.5, abs=1e-6)  # the fake probe's reading of the prompt frame
    for _ in range(3):
        obs, _, term, trunc, info = env.step(np.zeros(16))
        expected = FakeProbe().predict(torch.from_numpy(obs["image"])[None, None], ["metaworld_sawyer"])[0, 0]
        assert np.allclose(obs["state"], expected.numpy(), atol=1e-6)
    assert trunc and not info["success"] and len(env.actions) == 3
    with pytest.raises(ValueError, match="3-dim goal"):
        env.reset(options={"prompt_frames": prompt, "goal": [1.0]})
    with pytest.raises(ValueError, match="prompt_frames"):
        env.reset()
    with pytest.raises(ValueError, match="not 'pusht'"):
        WorldModelTaskEnv(_sim(), "pusht")
    with pytest.raises(ValueError, match="--dims metaworld_sawyer:0-6"):
        WorldModelTaskEnv(_sim(), "reach", probe=FakeProbe(width=3))


def test_world_model_env_reads_the_state_once_per_step_and_gives_the_judge_that_reading() -> None:
    from hma_zoo.policy.wm_env import WorldModelTaskEnv

    reads, judged = [], []

    class CountingProbe(FakeProbe):
        def predict(self, frames, names):
            reads.append(tuple(frames.shape[:2]))
            return super().predict(frames, names)

    class StateJudge:
        def judge(self, frames, goal, state=None):
            judged.append(state)
            return False, 0.0

    env = WorldModelTaskEnv(_sim(), "reach", probe=CountingProbe(), judge=StateJudge(), horizon=2)
    prompt = np.zeros((1, 64, 64, 3), np.uint8)
    obs, _ = env.reset(seed=0, options={"prompt_frames": prompt, "goal": [0.1, 0.2, 0.3]})
    for _ in range(2):
        obs, *_ = env.step(np.zeros(4))  # one control step, held for the frame
    assert reads == [(1, 1), (1, 2), (1, 2)]  # the newest frame with its previous one, read once
    assert len(judged) == 3 and np.array_equal(judged[-1], obs["state"])
    assert np.array_equal(env.actions[-1], np.zeros(16))
    # without a probe the state is the prompt's, and a reset without one does not keep the last episode's
    blind = WorldModelTaskEnv(_sim(), "reach", horizon=2)
    obs, _ = blind.reset(options={"prompt_frames": prompt, "goal": [0, 0, 0], "prompt_state": np.arange(7.0)})
    assert np.array_equal(obs["state"], np.arange(7.0))
    obs, _ = blind.reset(options={"prompt_frames": prompt, "goal": [0, 0, 0]})
    assert np.array_equal(obs["state"], np.zeros(7))
    with pytest.raises(ValueError, match="NaN or inf"):
        blind.step(np.full(16, np.inf))


def test_same_policy_object_runs_in_both_environments(reach_env) -> None:
    """The policy interface is environment-blind: one BC-free scripted policy drives the real and the world-model
    env with the same call, and the world model receives exactly the chunks the policy produced."""
    from hma_zoo.policy.tasks import run_episode
    from hma_zoo.policy.wm_env import WorldModelTaskEnv

    policy = make_policy("scripted:noise=0.3", "reach")
    real = run_episode(reach_env, policy, seed=5, frames=4)
    wm = WorldModelTaskEnv(_sim(), "reach", probe=FakeProbe(), horizon=4)
    seen = []

    class Spy:
        def reset(self, seed):
            policy.reset(seed)

        def act(self, obs):
            seen.append(policy.act(obs))
            return seen[-1]

    out = run_episode(wm, Spy(), seed=5, options={"prompt_frames": real["images"][:1],
                                                   "goal": reach_env.trace["goal"]})
    assert out["steps"] == 4 and np.allclose(np.stack(wm.actions), np.stack(seen))


# ---------------------------------------------------------------------------------------------- policy-eval
class BrightnessJudge:
    """Success iff the newest frame is more than half white (a stand-in judge for the tiny world)."""

    def judge(self, frames, goal, state=None):
        v = float(np.asarray(frames)[-1].mean() / 255)
        return v > 0.5, v


def test_policy_eval_end_to_end_report(tmp_path: Path, reach_env) -> None:
    from hma_zoo.data.sources.base import episode_seed
    from hma_zoo.policy.evaluate import policy_eval
    from hma_zoo.policy.tasks import run_episode

    policies = [make_policy("scripted", "reach"), make_policy("scripted:noise=1", "reach"),
                make_policy("random", "reach")]
    class NeverJudge:
        def judge(self, frames, goal, state=None):
            return False, 0.0

    class AlwaysJudge:
        def judge(self, frames, goal, state=None):
            return True, 1.0

    summary = policy_eval("reach", _sim(), policies, BrightnessJudge(), probe=FakeProbe(), episodes=2, horizon=4,
                          out_dir=tmp_path / "pe", gifs=1, progress=False,
                          other_judges={"never": NeverJudge(), "always": AlwaysJudge()})
    never = summary["other_judges"]["never"]
    assert all(r["world"]["mean"] == 0.0 and r["world_on_real"]["mean"] == 0.0 for r in never["policies"])
    always = summary["other_judges"]["always"]  # the judges' verdicts, not a constant, fill both columns
    assert all(r["world"]["mean"] == 1.0 and r["world_on_real"]["mean"] == 1.0 for r in always["policies"])
    assert [r["real"] for r in never["policies"]] == [r["real"] for r in summary["policies"]]
    rows = {r["name"]: r for r in summary["policies"]}
    assert set(rows) == {p.name for p in policies} and all(r["n"] == 2 for r in rows.values())
    # the real column is the simulator's own verdict on the same resets
    again = np.mean([run_episode(reach_env, make_policy("scripted", "reach"), seed=episode_seed(0, "reach", i),
                                 frames=4)["score"] for i in range(2)])
    assert rows["scripted(noise=0)"]["real"]["mean"] == pytest.approx(again)
    assert {"pearson", "spearman", "mmrv"} <= set(summary["agreement"])
    report = (tmp_path / "pe" / "report.md").read_text()
    assert "scripted(noise=1)" in report and json.loads((tmp_path / "pe" / "summary.json").read_text())
    assert "Judge `never` on the same rollouts" in report
    assert len(list((tmp_path / "pe" / "gifs").glob("*.gif"))) == 3
    with pytest.raises(ValueError, match="distinct"):
        policy_eval("reach", _sim(), [policies[0], make_policy("scripted", "reach")], BrightnessJudge(),
                    episodes=1, horizon=2, progress=False)


def test_policy_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from hma_zoo.cli import main

    assert main(["policy", "tasks"]) == 0
    assert "reach" in capsys.readouterr().out
    assert main(["policy", "demos", "--task", "nope", "--policy", "random", "--episodes", "1", "--out", "/tmp/x"]) == 2
    assert "known tasks" in capsys.readouterr().err
    assert main(["policy-eval", "--task", "reach", "--model", "m", "--judge", "probe-rule", "--policy", "random",
                 "--out", "/tmp/x"]) == 2
    assert "--probe" in capsys.readouterr().err


def test_task_spec_chunk_dim() -> None:
    spec = TaskSpec("t", "e", stride=3, action_dim=2, state_dim=1, goal_dim=0, horizon=8, score="success")
    assert spec.chunk_dim == 6


def test_generated_replay_episodes_keep_the_goal_and_use_only_the_first_prompts(tmp_path: Path) -> None:
    """`generate --prompt-episodes 2 --task reach`: prompts come from the first two episodes by id only, each
    generated episode keeps its prompt's goal, and BC data loading reads generated + real episodes together."""
    from hma_zoo.policy.generate import generate_dataset
    from hma_zoo.policy.nets import load_task_frames

    root = _write_synthetic(tmp_path / "d", 8)
    out = tmp_path / "gen"
    generate_dataset(_sim(), root, out, episodes=5, frames=3, actions="replay", noise=0.1, task="reach",
                     split="train", prompt_episodes=2, model_tag="tiny")
    real = load_task_frames(root, get_task("reach"), "train", episodes=2)
    both = load_task_frames(root, get_task("reach"), "train", episodes=2, extra=[out])
    generated = both.episode_ids[2:]
    assert len(generated) == 5 and {g.split("_", 1)[1].rsplit("_", 1)[0] for g in generated} <= set(real.episode_ids)
    assert np.allclose(both.goal, [1, 2, 3]) and both.frames.shape[0] == real.frames.shape[0] + 5 * 4


def test_synthetic_experiment_runs_resumes_and_tabulates(tmp_path: Path) -> None:
    """A tiny synthetic-data experiment end to end: generation from the first real prompts, BC runs for every data
    size, real-simulator scores, the table; a rerun reuses the finished runs instead of training again."""
    from hma_zoo.policy.synthetic import run_synthetic

    root = _write_synthetic(tmp_path / "d", 12)
    kw = dict(seeds=[0], real=2, generated=[1, 3], full=6, steps=3, eval_episodes=1, frames=2, batch_size=8,
              progress=False, model_tag="tiny")
    summary = run_synthetic("reach", root, _sim(), tmp_path / "exp", **kw)
    labels = [r["data"] for r in summary["rows"]]
    assert labels == ["real 2", "real 2 + generated 1", "real 2 + generated 3", "real 6"]
    assert all(0.0 <= r["mean"] <= 1.0 for r in summary["rows"])
    gen = tmp_path / "exp" / "generated-s0"
    metas = [json.loads(p.read_text()) for p in (tmp_path / "exp" / "runs").glob("*/step-*/config.json")]
    assert sorted(m["meta"]["extra_episodes"] or 0 for m in metas) == [0, 0, 1, 3]
    assert json.loads((gen / "manifest.json").read_text())["generated"]["episodes"] == 3
    table = (tmp_path / "exp" / "synthetic.md").read_text()
    assert "real 2 + generated 3" in table and "82%" in table
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "exp" / "runs").rglob("model.safetensors")}
    again = run_synthetic("reach", root, _sim(), tmp_path / "exp", **kw)
    assert again["rows"] == summary["rows"]
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp  # nothing retrained
