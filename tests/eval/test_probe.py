"""The action-following state probe: it learns to read a square's position, saves safely, and tells true-state
frames from wrong-state frames (what ``state_error`` in evaluate relies on)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hma_zoo.cli import main as cli_main
from hma_zoo.data.schema import EmbodimentInfo, Episode
from hma_zoo.data.shards import DatasetWriter
from hma_zoo.eval.probe import (
    ProbeInputError,
    ProbeTarget,
    StateProbe,
    context_frames,
    fit_probe,
    load_probe,
    parse_dims,
    probe_floor,
    probe_inputs,
    save_probe,
)

SIZE = 32
FRAMES = 10
# "dot": a red 6x6 square, proprio (x, y) = its top-left corner; "box": a green square, proprio (x, y, side).
DOT = EmbodimentInfo("dot", action_dim=2, control_hz=10.0, frame_hz=10.0)
BOX = EmbodimentInfo("box", action_dim=1, control_hz=10.0, frame_hz=10.0)


def render(state: np.ndarray, embodiment: str) -> np.ndarray:
    """Frames uint8 ``[F, 32, 32, 3]`` with a square at each row of ``state`` ``[F, 2 or 3]`` (x, y[, side])."""
    frames = np.zeros((state.shape[0], SIZE, SIZE, 3), np.uint8)
    channel = 0 if embodiment == "dot" else 1
    for f, row in enumerate(state):
        x, y = int(round(row[0])), int(round(row[1]))
        side = int(round(row[2])) if len(row) > 2 else 6
        frames[f, y:y + side, x:x + side, channel] = 255
    return frames


def random_states(rng: np.random.Generator, embodiment: str, n: int = FRAMES) -> np.ndarray:
    """A random walk of the square: float32 ``[n, 2]`` (dot) or ``[n, 3]`` (box) that stays inside the image."""
    side = int(rng.integers(4, 11)) if embodiment == "box" else 6
    pos = rng.integers(0, SIZE - side + 1, 2).astype(np.float64)
    rows = []
    for _ in range(n):
        pos = np.clip(pos + rng.integers(-4, 5, 2), 0, SIZE - side)
        rows.append([*pos, side] if embodiment == "box" else list(pos))
    return np.asarray(rows, np.float32)


def write_dataset(root: Path, train: int = 12, val: int = 2, proprio: bool = True, with_val: bool = True) -> Path:
    """A two-embodiment dataset of square videos whose proprio is the square's position."""
    rng = np.random.default_rng(0)
    with DatasetWriter(root, [DOT, BOX], image_size=(SIZE, SIZE)) as w:
        for info in (DOT, BOX):
            for i in range(train + (val if with_val else 0)):
                state = random_states(rng, info.name)
                ep = Episode(f"{info.name}_{i:03d}", info.name, np.zeros((FRAMES - 1, info.action_dim), np.float32),
                             frames=render(state, info.name), proprio=state if proprio else None)
                w.add(ep, "val" if i >= train else "train")
    return root


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[StateProbe, Path]:
    """A probe trained 120 steps on the square dataset (~5 s on one idle thread), saved beside the data."""
    torch.set_num_threads(1)
    root = write_dataset(tmp_path_factory.mktemp("squares") / "data")
    probe = fit_probe(str(root), steps=120, batch_size=32, lr=4e-3, log_every=40)
    return probe, root / "probe"


def test_probe_learns_the_state_and_stores_its_floor(fitted: tuple[StateProbe, Path]) -> None:
    probe, folder = fitted
    assert probe.embodiments == ("box", "dot")
    assert [t.width for t in probe.targets] == [3, 2]
    floor = probe_floor(probe)
    assert set(floor) == {"box", "dot"}
    for name, f in floor.items():
        assert f["frames"] == 2 * FRAMES
        # a constant predictor scores ~1.0 normalised; a probe that reads the square does far better
        assert f["normalised"] < 0.5, (name, f)
    assert probe.meta["floor_source"] == {"box": "val", "dot": "val"}
    saved = json.loads((folder / "config.json").read_text())
    assert saved["meta"]["floor"]["dot"]["normalised"] == pytest.approx(floor["dot"]["normalised"])


def test_state_error_separates_true_from_shuffled_positions(fitted: tuple[StateProbe, Path]) -> None:
    probe, _ = fitted
    rng = np.random.default_rng(123)
    for name in ("dot", "box"):
        states = np.stack([random_states(rng, name) for _ in range(4)])  # [4, F, P]
        true_frames = torch.from_numpy(np.stack([render(s, name) for s in states]))
        wrong = states.reshape(-1, states.shape[-1])[rng.permutation(4 * FRAMES)].reshape(states.shape)
        wrong_frames = torch.from_numpy(np.stack([render(s, name) for s in wrong]))
        state = torch.zeros(4, FRAMES, 5)  # full proprio, zero-padded wider than any embodiment
        state[..., :states.shape[-1]] = torch.from_numpy(states)
        raw_true, norm_true = probe.state_error(true_frames, state, [name] * 4)
        raw_wrong, norm_wrong = probe.state_error(wrong_frames, state, [name] * 4)
        assert raw_true.shape == norm_true.shape == (4, FRAMES)
        assert norm_true.mean() < 0.4 * norm_wrong.mean(), (name, norm_true.mean(), norm_wrong.mean())
        assert raw_true.mean() < 0.4 * raw_wrong.mean()


def test_predict_shapes_padding_resize_and_unknown_embodiment(fitted: tuple[StateProbe, Path]) -> None:
    probe, _ = fitted
    rng = np.random.default_rng(5)
    dot = torch.from_numpy(render(random_states(rng, "dot"), "dot"))
    box = torch.from_numpy(render(random_states(rng, "box"), "box"))
    pred = probe.predict(torch.stack([dot, box]), ["dot", "box"])
    assert pred.shape == (2, FRAMES, 3)
    assert (pred[0, :, 2] == 0).all()  # "dot" has 2 dims: zero-padded past its width
    big = torch.nn.functional.interpolate(torch.stack([dot]).permute(0, 1, 4, 2, 3).flatten(0, 1).float(),
                                          scale_factor=2, mode="nearest").round().to(torch.uint8)
    big = big.reshape(1, FRAMES, 3, 2 * SIZE, 2 * SIZE).permute(0, 1, 3, 4, 2)
    assert probe.predict(big, ["dot"]).shape == (1, FRAMES, 3)  # resized to the probe's image size
    with pytest.raises(KeyError, match="knows"):
        probe.predict(torch.stack([dot]), ["cheetah"])
    with pytest.raises(TypeError, match="uint8"):
        probe.predict(torch.stack([dot]).float(), ["dot"])


def test_save_load_round_trip_is_safetensors(fitted: tuple[StateProbe, Path], tmp_path: Path) -> None:
    probe, folder = fitted
    loaded = load_probe(folder)
    frames = torch.from_numpy(render(random_states(np.random.default_rng(1), "box"), "box"))[None]
    assert torch.equal(loaded.predict(frames, ["box"]), probe.predict(frames, ["box"]))
    assert loaded.meta["floor"] == probe.meta["floor"]
    assert probe_floor(loaded) == probe_floor(probe)
    assert loaded.targets == probe.targets
    weights = (folder / "model.safetensors").read_bytes()
    header = int.from_bytes(weights[:8], "little")
    json.loads(weights[8:8 + header])  # a safetensors header, not a pickle
    assert weights[:1] != b"\x80" and weights[:2] != b"PK"  # neither a pickle nor a torch zip
    again = save_probe(loaded, tmp_path / "copy")
    assert load_probe(again).meta == probe.meta


def test_context_two_uses_frame_zero_twice() -> None:
    video = torch.arange(3, dtype=torch.uint8).view(1, 3, 1, 1, 1).expand(1, 3, 2, 2, 3).contiguous()
    stack = context_frames(video, 2)
    assert stack.shape == (1, 3, 2, 2, 2, 3)
    assert stack[0, 0, 0].eq(0).all() and stack[0, 0, 1].eq(0).all()  # frame 0: (frame 0, frame 0)
    assert stack[0, 2, 0].eq(1).all() and stack[0, 2, 1].eq(2).all()  # frame 2: (frame 1, frame 2)
    x = probe_inputs(video, 2, (2, 2))
    assert x.shape == (3, 6, 2, 2)
    assert torch.allclose(x[1, :3], torch.full((3, 2, 2), 0 / 127.5 - 1))  # oldest frame first
    assert torch.allclose(x[1, 3:], torch.full((3, 2, 2), 1 / 127.5 - 1))
    assert probe_inputs(video, 1, (2, 2)).shape == (3, 3, 2, 2)


def test_state_error_selects_dims_and_normalises() -> None:
    target = ProbeTarget("arm", dims=(2, 0), mean=(0.0, 0.0), std=(2.0, 0.0))
    assert target.std == (2.0, 1e-6)
    probe = StateProbe([ProbeTarget("arm", dims=(2, 0), mean=(1.0, -1.0), std=(2.0, 4.0))], image_size=(32, 32))
    frames = torch.zeros(2, 3, SIZE, SIZE, 3, dtype=torch.uint8)
    pred = probe.predict(frames, ["arm", "arm"])
    state = torch.zeros(2, 3, 4)
    state[..., 2], state[..., 0] = pred[..., 0] + 2.0, pred[..., 1] - 4.0  # -1 and +1 std
    raw, norm = probe.state_error(frames, state, ["arm", "arm"])
    assert torch.allclose(raw, torch.full((2, 3), ((4 + 16) / 2) ** 0.5), atol=1e-4)
    assert torch.allclose(norm, torch.full((2, 3), ((1 + 1) / 2) ** 0.5), atol=1e-4)
    with pytest.raises(ValueError, match="full stored proprio"):
        probe.state_error(frames, state[..., :2], ["arm", "arm"])


def test_no_val_split_holds_out_train_episodes_and_dims_select(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "noval", train=10, with_val=False)
    probe = fit_probe(str(root), tmp_path / "p", steps=2, batch_size=4, dims={"box": [2]}, embodiments=["box"])
    assert probe.embodiments == ("box",)
    assert probe.targets[0].dims == (2,)
    assert "held out" in probe.meta["floor_source"]["box"]
    assert probe_floor(probe)["box"]["frames"] == FRAMES  # last 1 of 10 episodes


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "noprop", train=2, val=0, proprio=False)
    with pytest.raises(ValueError, match="import-files --proprio-key"):
        fit_probe(str(root), steps=1)
    with pytest.raises(ProbeInputError, match="unknown embodiments"):
        fit_probe(str(root), steps=1, dims={"cheetah": [0]})
    with pytest.raises(ProbeInputError, match="does not exist"):
        fit_probe(str(tmp_path / "missing"), steps=1)
    assert parse_dims(["pusht:0,1", "metaworld_sawyer:0-2,5"]) == {"pusht": [0, 1], "metaworld_sawyer": [0, 1, 2, 5]}
    with pytest.raises(ProbeInputError, match="EMBODIMENT:DIMS"):
        parse_dims(["pusht"])


def test_cli_fit_show_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_dataset(tmp_path / "data", train=3, val=1)
    out = tmp_path / "probe"
    assert cli_main(["probe", "fit", "--data", str(root), "--out", str(out), "--steps", "50", "--batch-size", "8",
                     "--dims", "box:0-1", "--threads", "1"]) == 0
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    printed = capsys.readouterr().out
    assert "| box | 10 |" in printed and "| dot | 10 |" in printed
    assert cli_main(["probe", "show", str(out)]) == 0
    assert "normalised RMS" in capsys.readouterr().out
    assert cli_main(["probe", "fit", "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["probe", "fit", "--data", str(root), "--dims", "cheetah:0"]) == 2
    assert cli_main(["probe", "show", str(tmp_path / "missing")]) == 2
