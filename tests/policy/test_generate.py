"""hma-zoo generate: synthetic episodes from a (tiny) world model in the project's dataset format.

A two-embodiment ``vq`` model on the 8x8 pixel-class tokenizer (``square``: stride 1 x 2 dims, ``arm``: stride 2 x 3
dims) and a small real dataset written here. Checked: the output validates and holds the requested episodes and
frames; prompts are the tokenizer round trip of the real frames; replay stores the recorded actions (cycled when the
recording is short) and noise perturbs them within the data's range; model mode stores what the policy head
predicts on the generated context; policy mode reads the goal from proprio; the DataModule reads the output; usage
errors return 2 with a message naming the fix.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import hma_zoo
from hma_zoo.configs import EmbodimentSpec
from hma_zoo.data.commands import validate_dataset
from hma_zoo.data.schema import EmbodimentInfo, Episode
from hma_zoo.data.shards import DatasetWriter, iter_episodes, join, load_manifest
from hma_zoo.policy import generate as gen
from hma_zoo.policy.generate import generate_dataset, replay_chunks
from hma_zoo.policy.tasks import TaskSpec
from hma_zoo.sim import Simulator
from tests.eval.helpers import EMB, TOKENS, PixelClassTokenizer

ARM = EmbodimentSpec("arm", action_dim=3, stride=2, action_mean=(0.0,) * 3, action_std=(1.0,) * 3)
INFOS = [EmbodimentInfo("square", 2, 10.0, 10.0, ("x", "y"), camera="top", source="toy"),
         EmbodimentInfo("arm", 3, 20.0, 10.0, ("a", "b", "c"), camera="side", source="toy")]
# (id, embodiment, frames, trailing action chunk, split); sq_short holds 1 frame of actions after a 2-frame prompt
EPISODES = [("sq_a", "square", 9, False, "val"), ("sq_b", "square", 8, True, "val"),
            ("sq_short", "square", 3, False, "val"), ("sq_tiny", "square", 1, True, "val"),
            ("arm_a", "arm", 8, False, "val"), ("arm_b", "arm", 7, True, "val"),
            ("sq_t", "square", 6, False, "train"), ("arm_t", "arm", 6, False, "train")]
SQ_TASK = TaskSpec("sq", "square", stride=1, action_dim=2, state_dim=2, goal_dim=2, horizon=8, score="success")


def _model(predict_actions: bool = True, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = hma_zoo.create_model("hma-vq-test", embodiments=[EMB, ARM], tokens=TOKENS,
                                 conditioning={"mode": "add", "action_dropout": 0.0},
                                 trunk={"d_model": 32, "depth": 2, "num_heads": 2, "max_frames": 4},
                                 predict_actions=predict_actions, label_smoothing=0.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _sim(predict_actions: bool = True) -> Simulator:
    return Simulator(_model(predict_actions), PixelClassTokenizer(), steps=1, temperature=1.0)


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> tuple[str, dict[str, Episode]]:
    """The real dataset folder and its episodes by id."""
    root = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(0)
    strides = {i.name: i.stride for i in INFOS}
    dims = {i.name: i.action_dim for i in INFOS}
    eps = {}
    with DatasetWriter(root, INFOS, image_size=(8, 8)) as w:
        for eid, name, n, trailing, split in EPISODES:
            rows = (n - (0 if trailing else 1)) * strides[name]
            proprio = rng.normal(size=(n, 4)).astype(np.float32) if name == "square" else None
            ep = Episode(eid, name, rng.normal(size=(rows, dims[name])).astype(np.float32),
                         frames=rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), proprio=proprio)
            w.add(ep, split)
            eps[eid] = ep
    return str(root), eps


def _read(out) -> list[Episode]:
    manifest = load_manifest(out)
    return [ep for s in manifest["shards"] for ep in iter_episodes(join(str(out), s["path"]))]


def _roundtrip(frames: np.ndarray) -> np.ndarray:
    tok = PixelClassTokenizer()
    return tok.decode(tok.encode(torch.from_numpy(frames)[None]))[0].numpy()


def test_replay_writes_a_valid_dataset_with_real_prompts_and_recorded_actions(real, tmp_path) -> None:
    data, eps = real
    out = tmp_path / "gen"
    k, f, n = 2, 5, 7
    summary = generate_dataset(_sim(), data, out, episodes=n, frames=f, prompt_frames=k, seed=3, model_tag="tiny",
                               batch_size=2)
    assert summary["episodes"] == n and summary["frames"] == n * (k + f)
    assert validate_dataset(str(out))["damaged"] == 0
    manifest = load_manifest(out)
    for info in INFOS:  # names, rates, camera carry over from the prompt dataset
        e = manifest["embodiments"][info.name]
        assert (e["action_names"], e["control_hz"], e["frame_hz"], e["camera"]) == \
               (list(info.action_names), info.control_hz, info.frame_hz, info.camera)
    counts = {name: e["counts"] for name, e in manifest["embodiments"].items()}
    assert counts["arm"]["train"]["episodes"] == 4 and counts["square"]["train"]["episodes"] == 3  # round robin
    assert sum(c["val"]["episodes"] for c in counts.values()) == 0
    assert manifest["generated"]["actions"] == "replay"
    got = _read(out)
    assert len(got) == n
    seen_cycled = False
    for ep in got:
        meta = ep.meta["meta"]
        pid = meta["prompt_episode"]
        assert ep.episode_id == f"gen_{pid}_{meta['index']:04d}"
        assert pid not in ("sq_tiny", "sq_t", "arm_t")  # too short for a 2-frame prompt / not the val split
        assert {k_: meta[k_] for k_ in ("generated", "model", "prompt_frames", "seed", "actions", "noise", "policy",
                                        "task")} == {"generated": True, "model": "tiny", "prompt_frames": k,
                                                     "seed": 3, "actions": "replay", "noise": 0.0, "policy": None,
                                                     "task": None}
        src = eps[pid]
        stride = 1 if src.embodiment == "square" else 2
        assert ep.frames.shape == (k + f, 8, 8, 3) and ep.actions.shape == ((k - 1 + f) * stride, src.actions.shape[1])
        assert np.array_equal(ep.frames[:k], _roundtrip(src.frames[:k]))
        assert not np.array_equal(ep.frames[k:], np.repeat(ep.frames[k - 1:k], f, 0))  # frames were generated
        expect, cycled = replay_chunks(gen.Prompt(pid, src.embodiment, src.frames[:k], src.actions, None), k, f,
                                       stride)
        assert meta["actions_cycled"] == cycled
        assert np.array_equal(ep.actions[: (k - 1) * stride], src.actions[: (k - 1) * stride])
        assert np.array_equal(ep.actions[(k - 1) * stride:], expect.reshape(-1, src.actions.shape[1]))
        if not cycled:
            assert np.array_equal(ep.actions, src.actions[: (k - 1 + f) * stride])
        else:
            seen_cycled = True
            assert pid == "sq_short"  # 1 recorded frame of actions after the prompt, repeated
            assert np.array_equal(ep.actions[k - 1:], np.repeat(src.actions[k - 1:k], f, 0))
    assert seen_cycled


def test_noise_perturbs_within_the_data_range_and_the_seed_decides(real, tmp_path) -> None:
    data, eps = real
    kw = dict(episodes=4, frames=4, prompt_frames=1, embodiments=["arm"])
    generate_dataset(_sim(), data, tmp_path / "clean", seed=0, **kw)
    generate_dataset(_sim(), data, tmp_path / "n1", noise=0.5, seed=0, **kw)
    generate_dataset(_sim(), data, tmp_path / "n1b", noise=0.5, seed=0, **kw)
    generate_dataset(_sim(), data, tmp_path / "n2", noise=0.5, seed=1, **kw)
    clean, n1, n1b, n2 = (sorted(_read(tmp_path / d), key=lambda e: e.episode_id) for d in ("clean", "n1", "n1b",
                                                                                            "n2"))
    stats = load_manifest(data)["embodiments"]["arm"]["action_stats"]
    for a, b in zip(clean, n1):
        assert a.episode_id == b.episode_id and {a.meta["meta"]["noise"], b.meta["meta"]["noise"]} == {0.0, 0.5}
        assert not np.allclose(a.actions, b.actions)
        src = eps[a.meta["meta"]["prompt_episode"]].actions
        low, high = np.minimum(stats["min"], src.min(0)), np.maximum(stats["max"], src.max(0))
        assert (b.actions >= low - 1e-6).all() and (b.actions <= high + 1e-6).all()
        assert np.abs(b.actions - a.actions).mean() > 0.05
    for a, b in zip(n1, n1b):  # the same seed: the same episodes, frames and actions
        assert a.episode_id == b.episode_id
        assert np.array_equal(a.actions, b.actions) and np.array_equal(a.frames, b.frames)
    assert any(not np.array_equal(a.actions, b.actions) for a, b in zip(n1, n2))


@torch.no_grad()
def test_model_mode_stores_the_policy_heads_actions(real, tmp_path) -> None:
    data, eps = real
    sim = _sim()
    model = sim.model
    k, f = 2, 6  # 8 frames: the context window (4 frames) slides
    generate_dataset(sim, data, tmp_path / "m", episodes=4, frames=f, prompt_frames=k, actions="model", seed=5)
    manifest = load_manifest(tmp_path / "m")
    stats = load_manifest(data)["embodiments"]
    tok = PixelClassTokenizer()
    got = _read(tmp_path / "m")
    assert len(got) == 4 and {e.embodiment for e in got} == {"square", "arm"}
    assert manifest["generated"]["actions"] == "model"
    window, a_max = model.config.trunk.max_frames, model.config.max_chunk_dim
    for ep in got:
        assert ep.meta["meta"]["actions"] == "model" and "actions_cycled" not in ep.meta["meta"]
        spec = model.config.embodiment(ep.embodiment)
        src = eps[ep.meta["meta"]["prompt_episode"]]
        assert np.array_equal(ep.frames[:k], _roundtrip(src.frames[:k]))
        assert np.array_equal(ep.actions[: (k - 1) * spec.stride], src.actions[: (k - 1) * spec.stride])
        tokens = tok.encode(torch.from_numpy(ep.frames)[None])  # exact: pixel classes round-trip
        rows = torch.zeros(1, k + f, a_max)
        rows[0, : k + f - 1, : spec.chunk_dim] = torch.from_numpy(ep.actions).reshape(k + f - 1, spec.chunk_dim)
        st = stats[ep.embodiment]["action_stats"]
        for t in range(k - 1, k + f - 1):  # the action after frame t, from frames <= t
            lo = max(0, t + 1 - window)
            ctx_rows = rows[:, lo: t + 1].clone()
            ctx_rows[:, -1] = 0.0
            pred = model.predict_action(tokens[:, lo: t + 1], ctx_rows, [ep.embodiment])[0, : spec.chunk_dim]
            pred = np.clip(pred.numpy().reshape(spec.stride, -1), st["min"], st["max"])
            stored = ep.actions[t * spec.stride: (t + 1) * spec.stride]
            np.testing.assert_allclose(stored, pred, atol=1e-4)
        gen_part = ep.actions[(k - 1) * spec.stride:]
        assert np.abs(gen_part).max() > 1e-3 and not np.allclose(gen_part, src.actions[(k - 1) * spec.stride:
                                                                                      (k - 1 + f) * spec.stride])


def test_model_mode_needs_action_heads(real, tmp_path) -> None:
    data, _ = real
    with pytest.raises(ValueError, match="action heads"):
        generate_dataset(_sim(predict_actions=False), data, tmp_path / "x", episodes=1, frames=1, actions="model")
    assert not (tmp_path / "x").exists()


def test_policy_mode_reads_the_goal_from_proprio(real, tmp_path) -> None:
    pytest.importorskip("gymnasium")
    data, eps = real
    k, f = 2, 3
    summary = generate_dataset(_sim(), data, tmp_path / "p", episodes=3, frames=f, prompt_frames=k,
                               actions="policy", policy="random", task=SQ_TASK, seed=1, val_fraction=0.5)
    assert summary["per_embodiment"] == {"square": 3}
    got = _read(tmp_path / "p")
    manifest = load_manifest(tmp_path / "p")
    assert manifest["embodiments"]["square"]["counts"]["val"]["episodes"] == 1  # every 2nd episode with 0.5
    assert set(manifest["embodiments"]) == {"square"}
    for ep in got:
        meta = ep.meta["meta"]
        assert (meta["actions"], meta["policy"], meta["task"]) == ("policy", "random", "sq")
        src = eps[meta["prompt_episode"]]
        np.testing.assert_allclose(meta["goal"], src.proprio[k - 1, 2:4], rtol=1e-6)
        assert ep.frames.shape == (k + f, 8, 8, 3)
        assert np.array_equal(ep.frames[:k], _roundtrip(src.frames[:k]))
        assert np.array_equal(ep.actions[: k - 1], src.actions[: k - 1])
        policy_part = ep.actions[k - 1:]
        assert policy_part.shape == (f, 2) and (np.abs(policy_part) <= 1.0).all()  # the random policy's range
        # exactly the chunks the policy, seeded per episode, acted with (noise 0)
        acted = np.random.default_rng(meta["seed_episode"]).uniform(-1.0, 1.0, (f, 2))
        np.testing.assert_allclose(policy_part, acted, rtol=1e-6)
    with pytest.raises(ValueError, match="--task"):
        generate_dataset(_sim(), data, tmp_path / "q", episodes=1, frames=1, actions="policy", policy="random")
    other = TaskSpec("r", "robot_x", stride=1, action_dim=2, state_dim=0, goal_dim=0, horizon=8, score="success")
    with pytest.raises(ValueError, match="model serves"):
        generate_dataset(_sim(), data, tmp_path / "q", episodes=1, frames=1, actions="policy", policy="random",
                         task=other)


def test_output_is_read_by_the_datamodule(real, tmp_path) -> None:
    from hma_zoo.data import HMADataModule

    data, _ = real
    generate_dataset(_sim(), data, tmp_path / "d", episodes=4, frames=3, prompt_frames=1)
    dm = HMADataModule(str(tmp_path / "d"), window=3, batch_size=2, num_workers=0, epoch_windows=4)
    assert dm.kind == "episodes" and dm.image_size == (8, 8) and {e.name for e in dm.embodiments} == {"square", "arm"}
    assert dm.max_chunk_dim == 6
    batches = list(dm.train_dataloader())
    assert sum(len(b["embodiment"]) for b in batches) == 4
    assert batches[0]["frames"].shape == (2, 3, 8, 8, 3) and batches[0]["actions"].shape == (2, 3, 6)


def test_usage_errors(real, tmp_path) -> None:
    data, _ = real
    with pytest.raises(KeyError, match="fix --embodiment"):
        generate_dataset(_sim(), data, tmp_path / "e", episodes=1, frames=1, embodiments=["nope"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        generate_dataset(_sim(), tmp_path / "missing", tmp_path / "e", episodes=1, frames=1)
    with pytest.raises(ValueError, match="prompt-frames"):
        generate_dataset(_sim(), data, tmp_path / "e", episodes=1, frames=1, prompt_frames=20)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_dataset(_sim(), data, tmp_path / "full", episodes=1, frames=1)
    assert (tmp_path / "full" / "keep.txt").exists()
    with pytest.raises(ValueError, match="holds the prompt dataset"):
        generate_dataset(_sim(), data, data, episodes=1, frames=1, overwrite=True)
    assert (load_manifest(data)["shards"])  # the prompt dataset is untouched
    generate_dataset(_sim(), data, tmp_path / "full", episodes=1, frames=1, overwrite=True)
    assert not (tmp_path / "full" / "keep.txt").exists() and len(_read(tmp_path / "full")) == 1


def test_cli(real, tmp_path, monkeypatch, capsys) -> None:
    import hma_zoo.pretrained

    data, _ = real
    monkeypatch.setattr(hma_zoo.pretrained, "load_simulator", lambda *a, **kw: _sim())
    out = tmp_path / "cli"
    base = ["--model", "tiny", "--data", data, "--out", str(out), "--episodes", "2", "--frames", "2"]
    assert gen.main(base + ["--prompt-frames", "2", "--noise", "0.1"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("generated 2 episodes (8 frames)") and "validated" in line
    assert json.loads((out / "manifest.json").read_text())["generated"]["model"] == "tiny"
    cases = [
        (base, "--overwrite"),  # out exists
        (base + ["--overwrite", "--embodiment", "nope"], "fix --embodiment"),
        (["--model", "tiny", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--episodes", "1",
          "--frames", "1"], "hma-zoo data build"),
        (base + ["--overwrite", "--actions", "policy", "--policy", "random"], "--task"),
        (base + ["--overwrite", "--actions", "policy", "--policy", "random", "--task", "reach"], "model serves"),
    ]
    for argv, fix in cases:
        assert gen.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("hma-zoo generate:") and fix in err and len(err.splitlines()) == 1, err
    assert len(_read(out)) == 2  # failed runs left the earlier output alone
