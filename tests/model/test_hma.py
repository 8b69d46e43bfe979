"""Properties of the HMA world model: causality, spatial bidirectionality, routing, no action leakage,
training on every conditioning variant, cache equivalence, guidance, save/load, parameter counts."""

from __future__ import annotations

import pytest
import torch

from hma_zoo import create_model, list_models, load_pretrained, save_pretrained
from hma_zoo.configs import CONDITIONING_MODES, EmbodimentSpec
from hma_zoo.registry import count_parameters
from hma_zoo.sampling import FrameStepper, sample_factors
from tests.model.helpers import EMBODIMENTS, batch, tiny

KINDS = ("vq", "mar")


def _outputs(model, tokens, actions, names, **kw):
    out = model(tokens, actions, names, **kw)
    return out["video"], out["feat"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", CONDITIONING_MODES)
def test_causal_in_time(kind: str, mode: str) -> None:
    model = tiny(kind, mode)
    tokens, actions, names = batch(model)
    video, feat = _outputs(model, tokens, actions, names)
    t = 1
    changed = tokens.clone()
    if kind == "vq":
        changed[:, t + 1 :] = (changed[:, t + 1 :] + 7) % model.config.tokens.vocab_size
    else:
        changed[:, t + 1 :] += 1.0
    actions2 = actions.clone()
    actions2[:, t + 1 :] += 3.0  # rows after frame t+1 only condition frames > t+1
    video2, feat2 = _outputs(model, changed, actions2, names)
    torch.testing.assert_close(video2[:, : t + 1], video[:, : t + 1], rtol=0, atol=1e-10)
    torch.testing.assert_close(feat2[:, : t + 1], feat[:, : t + 1], rtol=0, atol=1e-10)
    assert not torch.allclose(video2[:, t + 1 :], video[:, t + 1 :])


@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_in_space(kind: str) -> None:
    model = tiny(kind)
    tokens, actions, names = batch(model)
    video, _ = _outputs(model, tokens, actions, names)
    changed = tokens.clone()
    last = (-1, -1)
    if kind == "vq":
        changed[:, 2, last[0], last[1]] = (changed[:, 2, last[0], last[1]] + 5) % model.config.tokens.vocab_size
    else:
        changed[:, 2, last[0], last[1]] += 2.0
    video2, _ = _outputs(model, changed, actions, names)
    # the first token of frame 2 (which precedes the changed one in raster order) sees the change
    assert (video2[:, 2, 0] - video[:, 2, 0]).abs().max() > 1e-6
    torch.testing.assert_close(video2[:, :2], video[:, :2], rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["concat+adaln", "cross_attention", "add"])
def test_mixed_batch_equals_one_by_one(kind: str, mode: str) -> None:
    model = tiny(kind, mode)
    tokens, actions, names = batch(model, b=4)
    video, feat = _outputs(model, tokens, actions, names)
    for i in range(4):
        v, f = _outputs(model, tokens[i : i + 1], actions[i : i + 1], [names[i]])
        torch.testing.assert_close(v, video[i : i + 1], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(f, feat[i : i + 1], rtol=1e-9, atol=1e-9)
    # and routing matters: the same data through another embodiment's stem gives other outputs
    v_other, _ = _outputs(model, tokens[:1], actions[:1], ["hand"])
    assert not torch.allclose(v_other, video[:1])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", [m for m in CONDITIONING_MODES if m != "none"])
def test_masked_actions_cannot_leak(kind: str, mode: str) -> None:
    model = tiny(kind, mode)
    tokens, actions, names = batch(model)
    action_mask = torch.zeros(3, 4, dtype=torch.bool)
    action_mask[:, 1] = True
    action_mask[0, 2] = True
    video, feat = _outputs(model, tokens, actions, names, action_mask=action_mask)
    noisy = actions + 100.0 * action_mask.unsqueeze(-1) * torch.randn_like(actions)
    video2, feat2 = _outputs(model, tokens, noisy, names, action_mask=action_mask)
    torch.testing.assert_close(video2, video, rtol=0, atol=1e-10)
    torch.testing.assert_close(feat2, feat, rtol=0, atol=1e-10)
    # visible actions do condition the frames after them
    visible = actions.clone()
    visible[:, 0] += 1.0
    video3, _ = _outputs(model, tokens, visible, names, action_mask=action_mask)
    assert not torch.allclose(video3[:, 1], video[:, 1])


@pytest.mark.parametrize("kind", KINDS)
def test_policy_never_reads_the_action_it_predicts(kind: str) -> None:
    model = tiny(kind)
    tokens, actions, names = batch(model)
    changed = actions.clone()
    changed[:, -1] += 50.0
    torch.manual_seed(1)
    a1 = model.predict_action(tokens, actions, names)
    torch.manual_seed(1)
    a2 = model.predict_action(tokens, changed, names)
    torch.testing.assert_close(a1, a2)
    assert a1.shape == (3, model.config.max_chunk_dim)
    # padding past each embodiment's chunk width is zero
    assert torch.all(a1[1, EMBODIMENTS[1].chunk_dim :] == 0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", CONDITIONING_MODES)
def test_every_variant_trains_and_loss_falls(kind: str, mode: str) -> None:
    torch.manual_seed(0)
    model = create_model(f"hma-{kind}-test", embodiments=EMBODIMENTS, conditioning={"mode": mode})
    tokens, actions, names = batch(model, b=4)
    if kind == "mar":
        tokens, actions = tokens.float(), actions.float()
    actions = actions.float()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(tokens.shape[:4], generator=g) < 0.5
    mask[:, 0] = False
    losses = []
    for _ in range(40):
        out = model.compute_loss(tokens, actions, names, mask)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)


@pytest.mark.parametrize("kind", KINDS)
def test_cached_and_uncached_generation_are_identical(kind: str) -> None:
    model = tiny(kind)
    tokens, actions, names = batch(model, b=2)
    kw = dict(steps=3, temperature=0.0, unmask="confidence") if kind == "vq" else dict(steps=3, temperature=0.0)
    outs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(3)
        outs.append(model.generate(tokens[:, :1], actions, names, num_frames=3, use_cache=use_cache, generator=g, **kw))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-8)
    assert outs[0].shape[1] == 4


@pytest.mark.parametrize("kind", KINDS)
def test_long_rollout_keeps_constant_memory(kind: str) -> None:
    model = tiny(kind)
    tokens, actions, names = batch(model, b=1)
    stepper = FrameStepper(model, steps=1, temperature=0.0)
    stepper.reset(tokens[:, :2], actions[:, :1], names)
    sizes = []
    for i in range(10):
        stepper.step(actions[:, i % 4])
        sizes.append(stepper.cache_nbytes())
    window = model.config.trunk.max_frames
    assert len(set(sizes[window:])) == 1 and sizes[-1] > 0
    assert stepper.frames.shape[1] == window - 1


@pytest.mark.parametrize("kind", KINDS)
def test_guidance_scale_zero_is_unconditional(kind: str) -> None:
    model = tiny(kind)
    tokens, actions, names = batch(model, b=2)
    kw = dict(steps=2, temperature=0.0, unmask="confidence") if kind == "vq" else dict(steps=2, temperature=0.0)
    runs = {}
    for key, acts, scale in (("cfg0", actions, 0.0), ("uncond", None, 1.0), ("cond", actions, 1.0),
                             ("cfg3", actions, 3.0)):
        g = torch.Generator().manual_seed(5)
        runs[key] = model.generate(tokens[:, :2], acts, names, num_frames=1, cfg_scale=scale, generator=g, **kw)
    torch.testing.assert_close(runs["cfg0"], runs["uncond"], rtol=0, atol=1e-8)
    assert not torch.equal(runs["cfg3"], runs["cond"])


def test_temperature_changes_the_distribution() -> None:
    model = tiny("vq")
    head = model.video_head
    logits = torch.randn(1, 1, sum(head.factor_sizes)).repeat(1, 4000, 1)
    entropies = {}
    for temp in (0.3, 1.0, 3.0):
        ids, _ = sample_factors(logits, head, temp, None, torch.Generator().manual_seed(0))
        counts = torch.bincount(ids.flatten(), minlength=model.config.tokens.vocab_size).float()
        p = counts[counts > 0] / counts.sum()
        entropies[temp] = float(-(p * p.log()).sum())
    assert entropies[0.3] < entropies[1.0] < entropies[3.0]
    greedy, _ = sample_factors(logits[:, :3], head, 0.0, None, None)
    assert greedy.unique().numel() == 1
    top1, _ = sample_factors(logits[:, :50], head, 1.0, 1, torch.Generator().manual_seed(0))
    assert torch.equal(top1, greedy[:, :1].expand_as(top1))


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind: str, tmp_path) -> None:
    model = tiny(kind)
    tokens, actions, names = batch(model)
    save_pretrained(model, tmp_path / "m", meta={"variant": f"hma-{kind}-test"})
    loaded = load_pretrained(str(tmp_path / "m")).double().eval()
    assert loaded.config == model.config
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    torch.testing.assert_close(loaded(tokens, actions, names)["video"], model(tokens, actions, names)["video"])
    assert (tmp_path / "m" / "config.json").is_file() and (tmp_path / "m" / "model.safetensors").is_file()
    assert loaded.pretrained_meta["variant"] == f"hma-{kind}-test"


def test_with_embodiments_keeps_the_trunk() -> None:
    model = tiny("vq")
    tokens, actions, names = batch(model)
    bigger = model.with_embodiments([EmbodimentSpec("new", action_dim=6, stride=2)]).double().eval()
    assert bigger.config.embodiment_names[-1] == "new" and bigger.config.max_chunk_dim == 12
    padded = torch.nn.functional.pad(actions, (0, 8))
    torch.testing.assert_close(bigger(tokens, padded, names)["video"], model(tokens, actions, names)["video"])
    for p_old, p_new in zip(model.trunk.parameters(), bigger.trunk.parameters()):
        assert torch.equal(p_old, p_new)


def test_clear_errors() -> None:
    with pytest.raises(KeyError, match="Known variants"):
        create_model("hma-vq-huge", embodiments=EMBODIMENTS)
    with pytest.raises(ValueError, match="needs embodiments"):
        create_model("hma-vq-test")
    model = tiny("vq")
    tokens, actions, _ = batch(model)
    with pytest.raises(KeyError, match="unknown embodiment"):
        model(tokens, actions, ["arm", "arm", "robot-x"])
    # windows longer than max_frames are allowed: the temporal attention span slides (see test_cache.py)
    assert model(torch.cat([tokens, tokens], 1), torch.cat([actions, actions], 1), "arm")["video"].shape[1] == 8
    assert create_model("hma-vq-test", conditioning={"mode": "none"}).action_stems is None


# Paper Table 1, one embodiment. The paper's models carry a learned absolute position table
# T x (S + 64 action tokens) x d (the continuous one allocated for S = 1024 pre-patch positions); ours uses
# rotary time positions (so the KV cache slides) and a spatial table only. Adding that table back reproduces
# the paper's counts, which checks that everything else matches layer for layer.
PAPER = {"hma-vq-b": 44e6, "hma-mar-b": 96e6, "hma-vq-xl": 679e6, "hma-mar-xl": 741e6}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_parameter_counts_match_paper_table1(name: str) -> None:
    ours = count_parameters(name)
    d = 256 if name.endswith("-b") else 1024
    s_paper = 256 if "-vq-" in name else 1024
    absolute_pos = 12 * (s_paper + 64) * d - (256 + 64) * d  # paper's table minus our spatial table
    if "-mar-" in name:
        absolute_pos += 11 * 256 * d  # the paper's diffusion position table is per frame (T x S), ours per S
    assert abs(ours + absolute_pos - PAPER[name]) / PAPER[name] < 0.02, (ours, absolute_pos)
    assert abs(ours - PAPER[name]) / PAPER[name] < 0.05


def test_registry_lists_every_size() -> None:
    names = list_models("hma-*")
    for kind in KINDS:
        for size in ("t", "s", "b", "l", "xl", "t64", "s64", "test"):
            assert f"hma-{kind}-{size}" in names
    assert list_models("hma-mar-*") == [n for n in names if n.startswith("hma-mar-")]
    widths = [int(n.rsplit("-w", 1)[1]) for n in list_models("hma-vq-w*")]
    assert widths == sorted(widths) and len(widths) >= 5  # natural order: w32 ... w256, not w128 before w32


@pytest.mark.parametrize("kind", KINDS)
def test_fused_commit_equals_separate_commit_past_the_window(kind: str) -> None:
    """The finished frame is committed in the same pass as the next frame's first step (sliding-window mask);
    forcing a separate commit pass (flush) after every frame must give the same rollout, well past the window."""
    model = tiny(kind)
    tokens, actions, names = batch(model, b=2)
    rollouts = []
    for force_flush in (False, True):
        stepper = FrameStepper(model, steps=2, temperature=0.0, unmask="confidence",
                               generator=torch.Generator().manual_seed(0))
        stepper.reset(tokens[:, :2], actions[:, :1], names)
        frames = []
        for i in range(9):
            frames.append(stepper.step(actions[:, i % 4]))
            if force_flush:
                stepper.flush()
        rollouts.append(torch.stack(frames, 1))
    torch.testing.assert_close(rollouts[0], rollouts[1], rtol=0, atol=1e-8)


def test_diffusion_temperature_zero_is_deterministic_and_ignores_the_generator() -> None:
    """Temperature scales the initial noise too: at 0 the sample depends on the condition only. With an oracle
    denoiser for a point mass at ``cond`` (eps = (x - sqrt(abar) c) / sqrt(1 - abar)) it lands exactly on ``c``."""
    from hma_zoo.diffusion.gaussian import GaussianDiffusion

    diff = GaussianDiffusion(train_steps=100).double()
    abar = diff.alphas_cumprod

    def oracle(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        ab = abar[t].unsqueeze(-1)
        return (x - ab.sqrt() * c) / (1 - ab).sqrt()

    cond = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = diff.sample(oracle, cond, 3, steps=10, temperature=0.0, generator=torch.Generator().manual_seed(1))
    b = diff.sample(oracle, cond, 3, steps=10, temperature=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    torch.testing.assert_close(a, cond, rtol=1e-6, atol=1e-6)
    # with a learned (non-oracle) net too, and through the MAR token head
    model = tiny("mar")
    z = torch.randn(6, model.config.trunk.d_model, dtype=torch.float64)
    s1 = model.video_head.sample(z, 0.0, 1.0, 5, torch.Generator().manual_seed(3))
    s2 = model.video_head.sample(z, 0.0, 1.0, 5, torch.Generator().manual_seed(4))
    assert torch.equal(s1, s2)
    s3 = model.video_head.sample(z, 1.0, 1.0, 5, torch.Generator().manual_seed(3))
    s4 = model.video_head.sample(z, 1.0, 1.0, 5, torch.Generator().manual_seed(4))
    assert not torch.equal(s3, s4)
    with pytest.raises(ValueError, match="temperature"):
        diff.sample(oracle, cond, 3, steps=2, temperature=-1.0)


def test_grouped_vq_tokens_keep_their_place_and_train() -> None:
    """``patch_size=2`` for ``vq``: 2x2 ids per trunk token. The grouping round-trips, the embedding knows which id
    sits where in its patch (a sum of embeddings would not), the head predicts every id, and sampling returns
    the tokenizer's grid."""
    from hma_zoo.configs import TokenSpec

    spec = TokenSpec(kind="vq", grid=(4, 4), vocab_size=64, factor_sizes=(8, 8), patch_size=2)
    model = tiny("vq", tokens=spec)
    assert model.num_tokens == 4 and spec.group == 4
    tokens, actions, names = batch(model, b=2)
    trunk = model.to_trunk_tokens(tokens)
    assert trunk.shape == (2, 4, 4, 4)
    assert torch.equal(trunk[0, 0, 0], tokens[0, 0, :2, :2].flatten())  # the top-left patch, row-major
    assert torch.equal(model.from_trunk_tokens(trunk), tokens)
    swapped = tokens.clone()
    swapped[:, 2, 0, 0], swapped[:, 2, 0, 1] = tokens[:, 2, 0, 1], tokens[:, 2, 0, 0]
    keep = (tokens[:, 2, 0, 0] != tokens[:, 2, 0, 1])
    video, _ = _outputs(model, tokens, actions, names)
    video2, _ = _outputs(model, swapped, actions, names)
    assert video.shape == (2, 4, 4, 4, 16)  # [B, T, S, G, sum F]
    assert (video2[keep, 2] - video[keep, 2]).abs().amax() > 1e-6

    torch.manual_seed(0)
    model = create_model("hma-vq-test", embodiments=EMBODIMENTS, tokens=spec)
    tokens, actions, names = batch(model, b=4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    mask = torch.zeros(tokens.shape, dtype=torch.bool)
    mask[:, 1:] = True
    losses = []
    for _ in range(40):
        out = model.compute_loss(tokens, actions.float(), names, mask)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])
    model.eval()
    gen = model.generate(tokens[:, :1], actions.float(), names, 2, steps=2, temperature=0.0)
    assert gen.shape == (4, 3, 4, 4) and gen.dtype == torch.long


def test_changed_tokens_and_token_weights() -> None:
    """``changed_tokens`` marks exactly the tokens that differ from the previous frame; ``token_weight`` turns the
    training loss into the weighted mean over hidden tokens while ``video_loss`` stays the plain mean."""
    model = tiny("vq")
    tokens, actions, names = batch(model, b=2)
    tokens[:, 2] = tokens[:, 1]
    tokens[0, 2, 1, 3] = (tokens[0, 1, 1, 3] + 1) % model.config.tokens.vocab_size
    changed = model.changed_tokens(tokens)
    assert changed.shape == (2, 4, 16) and not changed[:, 0].any()
    assert changed[:, 2].sum() == 1 and changed[0, 2, 1 * 4 + 3]
    mask = torch.zeros(tokens.shape, dtype=torch.bool)
    mask[:, 1:] = True
    plain = model.compute_loss(tokens, actions, names, mask)
    only_changed = model.compute_loss(tokens, actions, names, mask, token_weight=changed.double())
    torch.testing.assert_close(only_changed["video_loss"], plain["video_loss"])
    video = model(tokens, actions, names, token_mask=mask)["video"]
    sel = changed & mask.flatten(2)
    ce_changed = model.video_head.loss(video[sel], model.to_trunk_tokens(tokens)[sel])[0].mean()
    action_part = plain["loss"] - plain["video_loss"]
    torch.testing.assert_close(only_changed["loss"] - action_part, ce_changed.to(action_part.dtype))
    mar = tiny("mar")
    lat, _, _ = batch(mar, b=2)
    lat[:, 2] = lat[:, 1]
    lat[1, 2, 0, 0] += 1.0
    ch = mar.changed_tokens(lat, threshold=0.25)
    assert ch[:, 2].sum() == 1 and ch[1, 2, 0]


def test_entry_points_refuse_invalid_input() -> None:
    """Out-of-vocabulary ids, action rows narrower than the embodiment's chunk (or wider than the model's),
    ``steps < 1`` and ``num_frames < 0`` fail with a message instead of wrapping, padding or returning junk."""
    model = tiny("vq")
    tokens, actions, names = batch(model)
    bad = tokens.clone()
    bad[0, 0, 0, 0] = model.config.tokens.vocab_size
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 64\)"):
        model(bad, actions, names)
    with pytest.raises(ValueError, match="steps"):
        FrameStepper(model, steps=0)
    with pytest.raises(ValueError, match="num_frames"):
        model.generate(tokens[:, :1], actions, names, -1)
    stepper = FrameStepper(model, steps=1, temperature=0.0)
    stepper.reset(tokens[:1, :1], None, ["arm"])  # arm: stride 2 x action_dim 2 = 4 values per frame
    with pytest.raises(ValueError, match="3 wide.*take 4 values"):
        stepper.step(torch.zeros(1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="5 wide"):
        stepper.step(torch.zeros(1, 5, dtype=torch.float64))
    assert stepper.step(torch.zeros(1, 4, dtype=torch.float64)).shape == (1, 4, 4)
