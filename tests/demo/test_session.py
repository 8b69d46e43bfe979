"""Demo sessions without a browser: the cap, idle freeing, malformed input, bounded memory on a long drive, and that
the three action sources (manual, replay, policy head) reach the simulator as they should."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hma_zoo.demo.prompts import load_examples
from hma_zoo.demo.session import DemoError, _resize, parse_action
from tests.demo.helpers import tiny_manager


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _frame(reply: dict) -> str:
    assert reply["type"] in ("frame", "started")
    return reply["image"]


def test_cap_refuses_one_more_session_with_a_message_and_frees_a_slot_on_close() -> None:
    manager = tiny_manager(max_sessions=2)
    a, b = manager.open(), manager.open()
    with pytest.raises(DemoError, match="at most 2 sessions"):
        manager.open()
    manager.close(a.id)
    c = manager.open()
    assert set(manager.sessions) == {b.id, c.id} and a.closed
    manager.close_all()
    assert not manager.sessions and b.closed and c.closed


def test_idle_sessions_are_freed_and_active_ones_kept() -> None:
    clock = FakeClock()
    manager = tiny_manager(idle_timeout_s=60)
    manager.clock = clock
    idle, busy = manager.open(), manager.open()
    idle.last_seen = busy.last_seen = clock.t
    clock.t += 45
    manager.touch(busy)
    assert manager.reap() == []  # nobody idle for more than 60 s yet
    clock.t += 30  # idle: 75 s without a message, busy: 30 s
    assert manager.reap() == [idle.id]
    assert idle.closed and not busy.closed
    with pytest.raises(DemoError, match="reload the page"):
        manager.get(idle.id)
    with pytest.raises(DemoError, match="closed"):
        idle.step([1.0, 2.0])
    manager.close_all()


@pytest.mark.parametrize("bad", ["left", None, [1.0], [1.0, 2.0, 3.0], [1.0, "a"], [True, 1.0], [math.nan, 1.0],
                                 [1.0, math.inf], {"x": 1}])
def test_malformed_actions_give_a_message_and_the_session_keeps_working(bad) -> None:
    manager = tiny_manager()
    s = manager.open()
    s.start("tiny", "pusht")
    with pytest.raises(DemoError, match="malformed action"):
        s.step(bad)
    assert s.step([100.0, 200.0])["step"] == 1  # the session survives
    manager.close_all()


def test_action_widths_one_control_step_is_held_for_the_frame() -> None:
    np.testing.assert_array_equal(parse_action([1, 2, 3], 3, 2), [1, 2, 3, 1, 2, 3])
    np.testing.assert_array_equal(parse_action([1, 2, 3, 4, 5, 6], 3, 2), [1, 2, 3, 4, 5, 6])
    with pytest.raises(DemoError, match=r"3 numbers \(one control step\) or 6"):
        parse_action([1, 2, 3, 4], 3, 2)


@pytest.mark.parametrize("kwargs, match", [
    ({"model": "hma-vq-nope", "embodiment": "pusht"}, "unknown model 'hma-vq-nope'; this demo serves: tiny"),
    ({"model": "tiny", "embodiment": "hopper"}, "unknown embodiment 'hopper' for tiny; it knows: pusht, arm"),
    ({"model": "tiny", "embodiment": "pusht", "prompt": "episode:x"}, "--data DIR"),
    ({"model": "tiny", "embodiment": "pusht", "prompt": "nonsense"}, "unknown prompt"),
    ({"model": "tiny", "embodiment": "pusht", "steps": 0}, "steps must be an integer"),
    ({"model": "tiny", "embodiment": "pusht", "temperature": "hot"}, "temperature must be a number"),
])
def test_bad_setup_is_refused_with_what_exists(kwargs, match) -> None:
    manager = tiny_manager()
    s = manager.open()
    with pytest.raises(DemoError, match=match):
        s.start(**kwargs)
    with pytest.raises(DemoError, match="press Start first"):
        s.step([1.0, 2.0])
    manager.close_all()


def test_unknown_mode_is_refused() -> None:
    manager = tiny_manager()
    s = manager.open()
    s.start("tiny", "pusht")
    with pytest.raises(DemoError, match="unknown mode 'dance'; modes: manual, replay, policy"):
        s.step([1.0, 2.0], mode="dance")
    manager.close_all()


def test_different_actions_give_different_frames_and_the_same_actions_the_same() -> None:
    manager = tiny_manager()
    s = manager.open()

    def drive(action: list[float]) -> list[str]:
        s.start("tiny", "pusht", seed=1)
        return [_frame(s.step(action)) for _ in range(3)]

    left, right, left_again = drive([0.0, 40.0]), drive([472.0, 512.0]), drive([0.0, 40.0])
    assert left == left_again
    assert left != right
    manager.close_all()


@pytest.mark.parametrize("frames", [200, pytest.param(1200, marks=pytest.mark.slow)])
def test_a_long_drive_holds_constant_memory(frames: int) -> None:
    """A drive of 50 (300) windows of 4 frames: the KV cache, the simulator's context and the recording stop growing
    once the window and the recording buffer are full."""
    manager = tiny_manager(record_frames=16)
    s = manager.open()
    s.start("tiny", "arm")
    s.set_recording(True)
    sizes = []
    for t in range(frames):
        s.step([math.sin(t / 7), math.cos(t / 5), 0.3], mode="manual")
        if t in (40, frames // 2, frames - 1):
            sizes.append(s.held_nbytes())
    assert sizes[0] == sizes[1] == sizes[2] > 0
    assert len(s.frames) == 16
    assert s.sim.stepper.frames.shape[1] == s.sim.stepper.window - 1
    assert not hasattr(s.sim, "_frames") or s.sim._frames == []  # the simulator itself records nothing
    manager.close_all()


def test_replay_sends_the_recorded_chunks_after_the_prompt_and_cycles() -> None:
    manager = tiny_manager(prompt_frames=2)
    s = manager.open()
    s.start("tiny", "arm")
    ex = manager.examples["arm"]
    # 40 control steps, stride 2: 20 frames of chunks, the first one leads into prompt frame 1; 19 remain
    sent = [s.step(mode="replay")["action"] for _ in range(21)]
    np.testing.assert_allclose(sent[0], ex.actions[2], atol=1e-4)  # chunk of frame 2 starts at control step 2
    np.testing.assert_allclose(sent[18], ex.actions[38], atol=1e-4)
    np.testing.assert_allclose(sent[19], sent[0], atol=1e-6)  # cycled
    manager.close_all()


def test_policy_mode_is_the_action_heads_prediction_from_the_prompt() -> None:
    """Right after the prompt, the policy action equals ``predict_action`` on the prompt's tokens with the recorded
    chunk *after* frame 0 (rows are shifted: the simulator keeps the row that led to each frame)."""
    manager = tiny_manager(prompt_frames=2)
    s = manager.open()
    s.start("tiny", "arm")
    ex = manager.examples["arm"]
    model, tok = s.drive.loaded.model, s.drive.loaded.tokenizer
    tokens = tok.encode(torch.from_numpy(_resize(ex.frames[:2], (8, 8)))[None])
    rows = torch.zeros(1, 2, model.config.max_chunk_dim)
    rows[0, 0, :6] = torch.from_numpy(ex.prompt_rows(2)[0])
    expected = model.predict_action(tokens, rows, ["arm"])[0, :6].clamp(-1, 1)
    reply = s.step(mode="policy")
    np.testing.assert_allclose(reply["action"], expected[:3].numpy(), atol=1e-3)
    assert all(-1 <= a <= 1 for a in reply["action"])
    s.start("tiny-no-policy", "arm")
    with pytest.raises(DemoError, match="no action head"):
        s.step(mode="policy")
    manager.close_all()


def test_recording_is_a_gif_or_mp4_of_the_recorded_frames() -> None:
    from hma_zoo.video import read_video

    manager = tiny_manager()
    s = manager.open()
    s.start("tiny", "pusht")
    with pytest.raises(DemoError, match="nothing recorded"):
        s.video("gif")
    s.set_recording(True)
    for t in range(5):
        s.step([50.0 * t, 100.0])
    data = s.video("gif")
    assert data[:6] == b"GIF89a"
    assert s.video("mp4")[4:8] == b"ftyp"
    with pytest.raises(DemoError, match="gif or mp4"):
        s.video("avi")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a.gif").write_bytes(data)
        assert read_video(Path(tmp) / "a.gif").shape[1:] == (8, 8, 3)
    manager.close_all()


def test_packaged_examples_cover_the_shipped_embodiments() -> None:
    ex = load_examples()
    assert set(ex) == {"dmc_cartpole", "dmc_cheetah", "metaworld_sawyer", "pusht"}
    for name, p in ex.items():
        assert p.frames.dtype == np.uint8 and p.frames.shape[1:] == (64, 64, 3) and len(p.frames) >= 2
        assert p.actions.shape[0] >= 4 * p.stride and np.all(p.low <= p.actions.min(0)), name
    assert ex["pusht"].control == "position" and ex["dmc_cheetah"].control == "velocity"


@pytest.mark.slow
def test_real_twin_steps_beside_the_prediction() -> None:
    pytest.importorskip("gym_pusht", reason="the real Push-T simulator is in the sim extra")
    manager = tiny_manager()
    s = manager.open()
    try:
        info = s.executor.submit(s.start, "tiny", "pusht", real=True, seed=3).result()
        assert info["real"] and info["real_image"] and info["source"] == "real simulator, seed 3"
        start = np.asarray(info["neutral"])  # the real pusher's position: the position target starts there
        replies = [s.executor.submit(s.step, [400.0, 400.0]).result() for _ in range(5)]
        assert all(r["real_image"] and r["action"] == [400.0, 400.0] for r in replies)
        moved = s.executor.submit(s.drive.real.position).result()
        assert np.linalg.norm(moved - 400) < np.linalg.norm(start - 400) - 20  # the real pusher went to the target
        with pytest.raises(DemoError, match="nothing to replay"):
            s.executor.submit(s.step, None, "replay").result()
    finally:
        manager.close_all()


def test_dataset_episodes_are_prompts_and_rebuild_the_examples(tmp_path) -> None:
    """``--data DIR``: its episodes are offered per embodiment, a chosen one is the prompt and its recorded actions are
    replayed; a wrong id says so; :func:`build_examples` writes a file that loads back the same episode."""
    from hma_zoo.data.schema import EmbodimentInfo
    from hma_zoo.data.shards import DatasetWriter
    from hma_zoo.demo.prompts import build_examples
    from tests.data.data_helpers import make_episode

    arm = EmbodimentInfo("arm", action_dim=3, control_hz=10.0, frame_hz=5.0)  # stride 2, as the tiny model's arm
    with DatasetWriter(tmp_path / "data", [arm], image_size=(8, 8)) as w:
        for i in range(4):
            w.add(make_episode(f"arm_{i}", arm, 6, seed=i), split="val" if i >= 2 else "train")
    manager = tiny_manager(data_dir=str(tmp_path / "data"), prompt_frames=2)
    s = manager.open()
    arm_desc = next(e for e in s.describe("tiny")["embodiments"] if e["name"] == "arm")
    episodes = [p for p in arm_desc["prompts"] if p.startswith("episode:")]
    assert episodes == ["episode:arm_2", "episode:arm_3", "episode:arm_0", "episode:arm_1"]  # validation first
    info = s.start("tiny", "arm", prompt=episodes[0])
    assert info["source"].endswith(episodes[0].removeprefix("episode:")) and info["replay"]
    recorded = manager.data.load(episodes[0].removeprefix("episode:")).actions
    np.testing.assert_allclose(s.step(mode="replay")["action"], recorded[2], atol=1e-4)  # after the 2-frame prompt
    with pytest.raises(DemoError, match="has no episode 'arm_9'"):
        s.start("tiny", "arm", prompt="episode:arm_9")
    with pytest.raises(DemoError, match="is of 'arm', not 'pusht'"):
        s.start("tiny", "pusht", prompt=episodes[0])
    path = build_examples(tmp_path / "data", tmp_path / "examples.npz")
    (ex,) = load_examples(path).values()
    assert ex.embodiment == "arm" and ex.frame_hz == 5.0 and ex.stride == 2 and ex.frames.shape == (4, 8, 8, 3)
    assert ex.source.endswith("arm_2")  # the first validation episode
    np.testing.assert_array_equal(ex.actions, manager.data.load("arm_2").actions)
    manager.close_all()
