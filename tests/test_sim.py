"""hma_zoo.Simulator: step-by-step (cached) rollouts equal uncached recomputation past the window, batch = separate
runs, constant memory."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

import hma_zoo
from hma_zoo.configs import EmbodimentSpec, TokenSpec
from hma_zoo.sim import Simulator
from hma_zoo.video import read_video

sys.path.insert(0, os.path.dirname(__file__))
from eval.helpers import EMB, PixelClassTokenizer, frames_from_tokens, make_model, square_videos  # noqa: E402


@pytest.fixture(scope="module")
def world() -> tuple[torch.nn.Module, PixelClassTokenizer]:
    return make_model(conditioned=True, seed=3), PixelClassTokenizer()


class Gray16Tokenizer:
    """Ids ``[B, T, 8, 8]`` in ``0..15`` <-> uint8 grey 8x8 frames (level ``17 * id``): a 16-token vocabulary."""

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return (frames[..., 0].long() // 17).clamp_max(15)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens * 17).to(torch.uint8).unsqueeze(-1).expand(*tokens.shape, 3).contiguous()


def _gray16_model(seed: int) -> torch.nn.Module:
    """An untrained 16-token model (4 x 4 factors), weights perturbed so that no path is a no-op."""
    torch.manual_seed(seed)
    tokens = TokenSpec(kind="vq", grid=(8, 8), vocab_size=16, factor_sizes=(4, 4))
    model = hma_zoo.create_model("hma-vq-test", embodiments=[EMB], tokens=tokens,
                                 conditioning={"mode": "add", "action_dropout": 0.0},
                                 trunk={"d_model": 32, "depth": 2, "num_heads": 2, "max_frames": 4},
                                 predict_actions=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_step_rollout_equals_uncached_generate_at_3x_the_window(seed: int) -> None:
    """The simulator's cached steps equal recomputing the whole sequence (sliding-window model) far past the
    window, with a 16-token vocabulary."""
    model, tok = _gray16_model(seed), Gray16Tokenizer()
    window = model.config.trunk.max_frames
    g = torch.Generator().manual_seed(seed)
    n = 3 * window
    tokens = torch.randint(0, 16, (2, 2, 8, 8), generator=g)
    actions = torch.randn(2, n + 1, 2, generator=g)
    sim = Simulator(model, tok, steps=2, temperature=0.0, unmask="confidence")
    first = sim.reset(tok.decode(tokens), actions[:, :1], embodiment="square")
    assert first.shape == (2, 8, 8, 3) and first.dtype == torch.uint8
    out = sim.rollout(actions[:, 1:n + 1])  # 2 + 12 frames: the window of 4 slides 10 times
    ref = model.generate(tokens, actions, ["square"] * 2, num_frames=n, steps=2, temperature=0.0,
                         unmask="confidence", use_cache=False)
    assert out.shape == (2, n, 8, 8, 3)
    assert torch.equal(out, tok.decode(ref[:, 2:]))
    assert torch.equal(sim.frames, tok.decode(ref))
    assert ref[:, 2:].unique().numel() >= 4
    assert sim.stepper.frames.shape[1] == window - 1  # the cached context stays bounded


def test_batch_of_two_equals_two_single_runs(world) -> None:
    model, tok = world
    tokens, actions = square_videos(2, 5, torch.Generator().manual_seed(1))
    prompt = frames_from_tokens(tokens[:, :1])
    sim = Simulator(model, tok, steps=2, temperature=0.0, unmask="confidence")
    sim.reset(prompt, embodiment="square")
    both = sim.rollout(actions[:, :4])
    for i in range(2):
        single = Simulator(model, tok, steps=2, temperature=0.0, unmask="confidence")
        single.reset(prompt[i])  # unbatched: [Tp, H, W, 3]; one-embodiment model needs no name
        alone = single.rollout(actions[i, :4])
        assert alone.shape == (4, 8, 8, 3)
        assert torch.equal(alone, both[i])


def test_long_rollout_keeps_constant_cache_memory(world) -> None:
    model, tok = world
    tokens, actions = square_videos(1, 1, torch.Generator().manual_seed(2))
    sim = Simulator(model, tok, steps=1, temperature=0.0, unmask="confidence", record=False)
    sim.reset(frames_from_tokens(tokens))
    window = model.config.trunk.max_frames
    sizes = []
    for _ in range(3 * window):
        sim.step(torch.randn(2))
        sizes.append(sim.cache_nbytes())
        assert sim.stepper.frames.shape[1] <= window - 1
    assert sizes[window] > 0 and len(set(sizes[window:])) == 1  # constant once the window is full
    with pytest.raises(RuntimeError, match="record"):
        _ = sim.frames


def test_action_forms_control_step_tiled_over_stride() -> None:
    torch.manual_seed(0)
    emb = EmbodimentSpec("arm", action_dim=2, stride=3, action_mean=(0.0, 0.0), action_std=(1.0, 1.0))
    model = hma_zoo.create_model("hma-vq-test", embodiments=[emb, EMB], tokens=TokenSpec(
        kind="vq", grid=(8, 8), vocab_size=2, factor_sizes=(2,)))
    tok = PixelClassTokenizer()
    prompt = frames_from_tokens(square_videos(1, 1, torch.Generator().manual_seed(0))[0])[0]
    outs = []
    for action in (torch.tensor([0.5, -1.0]), torch.tensor([0.5, -1.0] * 3), torch.tensor([0.5, -1.0] * 3)[None]):
        sim = Simulator(model, tok, steps=2, temperature=0.0, unmask="confidence")
        sim.reset(prompt, embodiment="arm")
        outs.append(sim.step(action if action.ndim == 1 else action[0]))
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[1], outs[2])
    sim = Simulator(model, tok, steps=2, temperature=0.0, unmask="confidence")
    sim.reset(prompt, embodiment="arm")
    with pytest.raises(ValueError, match="control step"):
        sim.step(torch.zeros(5))
    with pytest.raises(ValueError, match="several embodiments"):
        sim.reset(prompt)
    with pytest.raises(RuntimeError, match="reset"):
        Simulator(model, tok).step(torch.zeros(2))


def test_save_mp4_and_gif(world, tmp_path) -> None:
    model, tok = world
    tokens, actions = square_videos(2, 3, torch.Generator().manual_seed(4))
    sim = Simulator(model, tok, steps=1, temperature=0.0, unmask="confidence")
    sim.reset(frames_from_tokens(tokens[:, :1]), embodiment="square")
    sim.rollout(actions[:, :3])
    gif = read_video(sim.save(tmp_path / "r.gif", index=0))
    assert gif.shape[1:] == (8, 8, 3) and 1 <= gif.shape[0] <= 4
    mp4 = read_video(sim.save(tmp_path / "r.mp4"))  # both environments side by side
    assert mp4.shape == (4, 8, 18, 3)


def test_gymnasium_env_wrapper(world) -> None:
    pytest.importorskip("gymnasium")
    from hma_zoo.sim import HMAEnv

    model, tok = world
    tokens, _ = square_videos(1, 2, torch.Generator().manual_seed(5))
    sim = Simulator(model, tok, steps=1, temperature=0.0, unmask="confidence")
    env = HMAEnv(sim, frames_from_tokens(tokens)[0], "square", max_episode_steps=3)
    obs, info = env.reset(seed=0)
    assert obs.shape == (8, 8, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert env.action_space.shape == (2,)
    truncated = False
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.shape == (8, 8, 3) and reward == 0.0 and not terminated
    assert truncated and info["step"] == 3
    assert np.array_equal(env.render(), obs)
