"""The KV cache computes exactly the sliding-window causal model, for any rollout length.

The model is defined as a sliding-window causal transformer in time: every frame attends to at most
``trunk.max_frames`` frames (itself included) at every layer. The reference path (``use_cache=False``) keeps every
frame and runs the whole sequence from position 0 with that mask, so cached generation must equal it token for token
far past the window, and ``HMA.forward`` on a long sequence must equal the cache's per-frame outputs.
"""

from __future__ import annotations

import pytest
import torch

from hma_zoo.configs import TokenSpec
from hma_zoo.sampling import FrameStepper
from tests.model.helpers import batch, tiny

WINDOW = 4  # hma-*-test max_frames
VQ16 = TokenSpec(kind="vq", grid=(4, 4), vocab_size=16, factor_sizes=(4, 4))
VQ16_FLAT = TokenSpec(kind="vq", grid=(4, 4), vocab_size=16, factor_sizes=(16,))
VQ_G2 = TokenSpec(kind="vq", grid=(4, 4), vocab_size=16, factor_sizes=(4, 4), patch_size=2)  # 2x2 ids per trunk token
MAR_P2 = TokenSpec(kind="mar", grid=(4, 4), latent_channels=3, patch_size=2, vocab_size=1, factor_sizes=(1,))


def _model(kind: str, seed: int, tokens: TokenSpec | None = None, mode: str = "concat+adaln"):
    torch.manual_seed(seed)
    return tiny(kind, mode, **({"tokens": tokens} if tokens is not None else {}))


def _both(model, fn) -> tuple[torch.Tensor, torch.Tensor]:
    """``fn(use_cache, generator)`` for the cached and the reference path, each with the same fresh generator."""
    return fn(True, torch.Generator().manual_seed(11)), fn(False, torch.Generator().manual_seed(11))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("spec", "prompt"), [(VQ16, 1), (VQ16_FLAT, 6), (VQ_G2, 2)],
                         ids=["factors4x4-prompt1", "flat16-prompt6", "grouped2x2-prompt2"])
def test_vq_cached_generation_equals_recomputation_at_3x_the_window(seed: int, spec: TokenSpec, prompt: int) -> None:
    model = _model("vq", seed, spec)
    frames = 3 * WINDOW
    tokens, actions, names = batch(model, b=2, t=prompt + frames, seed=seed)
    kw = dict(steps=3, temperature=0.0, unmask="confidence")
    cached, ref = _both(model, lambda c, g: model.generate(tokens[:, :prompt], actions, names, frames,
                                                           use_cache=c, generator=g, **kw))
    assert cached.shape == (2, prompt + frames, 4, 4)
    assert torch.equal(cached, ref), (cached != ref).float().mean((0, 2, 3))
    assert cached[:, prompt:].unique().numel() >= 4  # a real vocabulary in play, not a constant rollout


@pytest.mark.parametrize("seed", [0])
def test_vq_cached_generation_equals_recomputation_with_guidance_and_random_unmasking(seed: int) -> None:
    model = _model("vq", seed, VQ16)
    tokens, actions, names = batch(model, b=2, t=2 + 3 * WINDOW, seed=seed)
    kw = dict(steps=2, temperature=0.0, unmask="random", cfg_scale=2.0)
    cached, ref = _both(model, lambda c, g: model.generate(tokens[:, :2], actions, names, 3 * WINDOW,
                                                           use_cache=c, generator=g, **kw))
    assert torch.equal(cached, ref)


@pytest.mark.parametrize(("spec", "seed"), [(None, 0), (None, 1), (None, 2), (MAR_P2, 0)],
                         ids=["patch1-0", "patch1-1", "patch1-2", "patch2-0"])
def test_mar_cached_generation_equals_recomputation_at_3x_the_window(seed: int, spec: TokenSpec | None) -> None:
    model = _model("mar", seed, spec)
    tokens, actions, names = batch(model, b=2, t=2 + 3 * WINDOW, seed=seed)
    kw = dict(steps=3, temperature=0.0, diffusion_steps=4)
    cached, ref = _both(model, lambda c, g: model.generate(tokens[:, :2], actions, names, 3 * WINDOW,
                                                           use_cache=c, generator=g, **kw))
    assert cached.dtype == torch.float64
    torch.testing.assert_close(cached, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["vq", "mar"])
def test_teacher_forced_cached_equals_recomputation_at_3x_the_window(kind: str) -> None:
    model = _model(kind, 4, VQ16 if kind == "vq" else None)
    tokens, actions, names = batch(model, b=2, t=3 * WINDOW + 1, seed=4)
    kw = dict(steps=2, temperature=0.0, unmask="confidence") if kind == "vq" else dict(steps=2, temperature=0.0,
                                                                                           diffusion_steps=4)
    cached, ref = _both(model, lambda c, g: model.generate_teacher_forced(tokens, actions, names, use_cache=c,
                                                                          generator=g, **kw))
    if kind == "vq":
        assert torch.equal(cached, ref)
    else:
        torch.testing.assert_close(cached, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["vq", "mar"])
@pytest.mark.parametrize("mode", ["concat+adaln", "cross_attention", "add"])
def test_forward_on_a_3x_window_sequence_equals_the_cache_per_frame(kind: str, mode: str) -> None:
    """``HMA.forward`` over 12 frames (span 4) == the cache's output for each frame given its past: with the frame
    visible (one forward for all frames) and with the frame fully hidden (the first sampling step)."""
    model = _model(kind, 5, VQ16 if kind == "vq" else MAR_P2, mode)
    t_total = 3 * WINDOW
    tokens, actions, names = batch(model, b=2, t=t_total, seed=5)
    full = model(tokens, actions, names)["video"]
    trunk_tokens = model.to_trunk_tokens(tokens)
    s = model.num_tokens
    stepper = FrameStepper(model)
    stepper.reset(tokens[:, :1], None, names)
    for t in range(1, t_total):
        visible = stepper.next_output(actions[:, t - 1], trunk_tokens[:, t], torch.zeros(2, s, dtype=torch.bool))
        torch.testing.assert_close(visible, full[:, t], rtol=1e-9, atol=1e-9)
        hidden = stepper.next_output(actions[:, t - 1], trunk_tokens[:, t], torch.ones(2, s, dtype=torch.bool))
        mask = torch.zeros(2, t + 1, s, dtype=torch.bool)
        mask[:, -1] = True
        last = model(tokens[:, : t + 1], actions[:, : t + 1], names, token_mask=mask)["video"][:, -1]
        torch.testing.assert_close(hidden, last, rtol=1e-9, atol=1e-9)
        stepper.commit(trunk_tokens[:, t], actions[:, t - 1])
    assert stepper.frames.shape[1] == WINDOW - 1  # the cached path still holds a bounded context


@pytest.mark.parametrize("kind", ["vq", "mar"])
def test_forward_receptive_field_is_depth_times_span(kind: str) -> None:
    """Sliding window at every layer: with depth 2 and span 4, frame t reads frames >= t - 2 * 3 and no earlier."""
    model = _model(kind, 6)
    depth = model.config.trunk.depth
    reach = depth * (WINDOW - 1)
    tokens, actions, names = batch(model, b=2, t=3 * WINDOW, seed=6)
    video = model(tokens, actions, names)["video"]
    changed = tokens.clone()
    if kind == "vq":
        changed[:, 0] = (changed[:, 0] + 3) % model.config.tokens.vocab_size
    else:
        changed[:, 0] += 1.0
    video2 = model(changed, actions, names)["video"]
    diff = (video2 - video).abs().flatten(2).amax(2).amax(0)  # [T]
    assert (diff[: reach + 1] > 1e-6).all(), diff
    assert (diff[reach + 1 :] == 0).all(), diff


def test_long_window_trains() -> None:
    model = _model("vq", 7, VQ16)
    model.train()
    tokens, actions, names = batch(model, b=2, t=3 * WINDOW, seed=7)
    mask = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    mask[:, 0] = False
    out = model.compute_loss(tokens, actions, names, mask)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.trunk.blocks[0].temporal.qkv.weight.grad is not None


def test_preallocated_layer_buffer_equals_concatenation_through_compactions_and_growth() -> None:
    """``LayerKV`` (preallocated, moved by indices, compacted now and then) holds exactly what concatenating and
    slicing would: the last ``keep`` committed frames, oldest first, with staged frames after them."""
    from hma_zoo.model.trunk import LayerKV

    keep, gen = 3, torch.Generator().manual_seed(0)
    buf, ref = LayerKV(keep), torch.zeros(2, 1, 0, 4, dtype=torch.float64)
    for step, length in enumerate([1, 2, 1, 1, 2, 1, 6, 1, 1, 2, 1, 1, 1, 1, 1]):  # 6: more than the buffer holds
        new = torch.randn(2, 1, length, 4, generator=gen, dtype=torch.float64)
        k, v, held = buf.stage(new, -new)
        assert held == ref.shape[2]
        assert torch.equal(k, torch.cat((ref, new), 2)) and torch.equal(v, -torch.cat((ref, new), 2))
        n = step % 3 % length if length > 1 else 1  # commit all, some or none of the staged frames
        buf.commit(n)
        ref = torch.cat((ref, new[:, :, :n]), 2)[:, :, -keep:]
        assert torch.equal(buf.held_kv()[0], ref)
