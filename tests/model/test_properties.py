"""Property tests of the HMA model that a subtly wrong model would break (each one was written against a
deliberate mutation of the code; see the report of the mutation review):

* a masked token's value is never read (and the learned mask token is what the trunk sees);
* the video loss is computed on masked positions only, and is exactly the label-smoothed factorised cross-entropy;
* action dropout is applied per sample in training mode only, at its configured rate;
* corruption replaces visible ids by random ones (their original value is not read);
* every residual branch of a block is pre-normed (temporal attention included);
* actions change the predicted frames >= 1 (never frame 0) in every conditioning mode but ``none``, and both
  paths of ``concat+adaln`` (appended action tokens and adaLN) receive them.

Float64 tiny models with perturbed weights (``tests.model.helpers.tiny``) make the comparisons exact.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hma_zoo import create_model
from hma_zoo.configs import CONDITIONING_MODES
from hma_zoo.model.heads import FactorizedHead
from hma_zoo.model.stems import factorize_ids
from tests.model.helpers import EMBODIMENTS, batch, tiny

KINDS = ("vq", "mar")
EXACT = dict(rtol=0.0, atol=1e-12)


def _token_mask(model, b: int, t: int, seed: int = 1, p: float = 0.5) -> torch.Tensor:
    """About half of the tokens of frames >= 1 hidden (frame 0 visible), on the public grid ``[B,T,h,w]``."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(b, t, *model.config.tokens.grid, generator=g) < p
    mask[:, 0] = False
    mask[:, 1, 0, 0] = True  # at least one hidden token per sample
    return mask


def _perturb(model, tokens: torch.Tensor, where: torch.Tensor, seed: int = 2) -> torch.Tensor:
    """``tokens`` with different values at the positions ``where`` (``[B,T,h,w]``) and the same elsewhere."""
    g = torch.Generator().manual_seed(seed)
    if model.kind == "vq":
        vocab = model.config.tokens.vocab_size
        shift = torch.randint(1, vocab, tokens.shape, generator=g)
        return torch.where(where, (tokens + shift) % vocab, tokens)
    noise = 100.0 * torch.randn(tokens.shape, generator=g, dtype=tokens.dtype)
    return torch.where(where.unsqueeze(-1), tokens + noise, tokens)


def _tiny_dropout(kind: str, p: float, mode: str = "concat+adaln"):
    """Like ``tiny`` but with ``conditioning.action_dropout = p`` (and in train mode: no other randomness)."""
    model = create_model(f"hma-{kind}-test", embodiments=EMBODIMENTS, conditioning={"mode": mode, "action_dropout": p})
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    assert model.config.trunk.dropout == 0.0  # train mode differs from eval mode only by action dropout
    return model.double()


# ---------------------------------------------------------------------------------------------- 1. masking
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["concat+adaln", "add", "none"])
def test_values_at_masked_positions_are_never_read(kind: str, mode: str) -> None:
    model = tiny(kind, mode)
    tokens, actions, names = batch(model)
    mask = _token_mask(model, *tokens.shape[:2])
    out = model(tokens, actions, names, token_mask=mask)
    out2 = model(_perturb(model, tokens, mask), actions, names, token_mask=mask)
    for key in ("h", "feat", "video"):
        torch.testing.assert_close(out2[key], out[key], **EXACT)
    # ...while the visible values are read: perturbing them changes the masked positions' predictions
    visible = ~mask
    visible[:, 0] = False  # frame 0 only reaches later frames through time; perturb frames >= 1
    out3 = model(_perturb(model, tokens, visible), actions, names, token_mask=mask)
    trunk_mask = model.to_trunk_mask(mask)
    assert (out3["video"][trunk_mask] - out["video"][trunk_mask]).abs().max() > 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_masked_positions_are_the_learned_mask_token(kind: str) -> None:
    model = tiny(kind)
    tokens, actions, names = batch(model)
    mask = _token_mask(model, *tokens.shape[:2])
    x = model.to_trunk_tokens(tokens)
    m = model.to_trunk_mask(mask)
    emb = model.embed_video(x, m)
    expect = (model.mask_token + model.pos).expand_as(emb)
    torch.testing.assert_close(emb[m], expect[m], **EXACT)
    torch.testing.assert_close(emb[~m], model.embed_video(x, None)[~m], **EXACT)
    # a hidden token is not the same as a visible token of any fixed value (e.g. id 0 / a zero latent)
    filled = torch.where(mask, torch.zeros_like(tokens), tokens) if kind == "vq" else tokens.masked_fill(
        mask.unsqueeze(-1), 0.0)
    out_hidden = model(tokens, actions, names, token_mask=mask)["video"]
    out_filled = model(filled, actions, names)["video"]
    assert (out_hidden[m] - out_filled[m]).abs().max() > 1e-6
    # and the mask token is trained
    model.zero_grad()
    model.compute_loss(tokens, actions, names, mask)["loss"].backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------- 2. video loss
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["concat+adaln", "add"])
def test_video_loss_depends_on_masked_positions_only(kind: str, mode: str) -> None:
    """d(video loss)/d(trunk output) is zero at every visible image position and non-zero at masked ones."""
    model = tiny(kind, mode)
    tokens, actions, names = batch(model)
    mask = _token_mask(model, *tokens.shape[:2])
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["h"] = output

    handle = model.trunk.register_forward_hook(keep)
    try:
        out = model.compute_loss(tokens, actions, names, mask)
    finally:
        handle.remove()
    out["video_loss"].backward()
    grad = captured["h"].grad[:, :, : model.num_tokens].abs().sum(-1)  # [B, T, S], image positions
    m = model.to_trunk_mask(mask)
    assert torch.all(grad[~m] == 0)
    assert torch.all(grad[m] > 0)
    assert int(out["masked_tokens"]) == int(m.sum())


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_vq_loss_is_label_smoothed_factorised_ce_over_masked_positions(smoothing: float) -> None:
    model = tiny("vq", label_smoothing=smoothing)
    tokens, actions, names = batch(model)
    mask = _token_mask(model, *tokens.shape[:2])
    out = model.compute_loss(tokens, actions, names, mask)
    logits = model(tokens, actions, names, token_mask=mask)["video"]
    m = model.to_trunk_mask(mask)
    target = model.to_trunk_tokens(tokens)
    digits = factorize_ids(target[m], model.config.tokens.factor_sizes)
    ce = torch.zeros(int(m.sum()), dtype=torch.float64)
    correct = torch.ones(int(m.sum()), dtype=torch.bool)
    for i, lg in enumerate(logits[m].split(model.config.tokens.factor_sizes, dim=-1)):
        ce = ce + F.cross_entropy(lg, digits[:, i], label_smoothing=smoothing, reduction="none")
        correct &= lg.argmax(-1) == digits[:, i]
    assert out["video_loss"].item() == pytest.approx(ce.mean().item(), rel=1e-5)
    assert out["token_acc"].item() == pytest.approx(correct.double().mean().item())
    sample = torch.arange(tokens.shape[0]).view(-1, 1, 1).expand_as(m)[m]
    for b in range(tokens.shape[0]):
        assert out["video_loss_per_sample"][b].item() == pytest.approx(ce[sample == b].mean().item(), rel=1e-5)


@pytest.mark.parametrize("mode", ["concat+adaln", "add"])
def test_mar_loss_is_the_diffusion_loss_of_masked_tokens(mode: str) -> None:
    model = tiny("mar", mode)
    tokens, actions, names = batch(model)
    mask = _token_mask(model, *tokens.shape[:2])
    torch.manual_seed(7)
    out = model.compute_loss(tokens, actions, names, mask)
    z = model(tokens, actions, names, token_mask=mask)["video"]  # eval mode: no random draws in the forward
    m = model.to_trunk_mask(mask)
    torch.manual_seed(7)
    expect = model.video_head.loss(z[m], model.to_trunk_tokens(tokens)[m])
    assert out["video_loss"].item() == pytest.approx(expect.mean().item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------- 9. label smoothing
def test_factorized_head_label_smoothing_hand_value() -> None:
    # one factor of 2 classes, logits (2, 0), target 0, smoothing 0.2: soft target (0.9, 0.1)
    head = FactorizedHead(4, (2,), label_smoothing=0.2)
    ce, correct = head.loss(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    log_p0, log_p1 = 2.0 - math.log(math.exp(2.0) + 1.0), -math.log(math.exp(2.0) + 1.0)
    assert ce.item() == pytest.approx(-(0.9 * log_p0 + 0.1 * log_p1), rel=1e-6)
    assert bool(correct.all())
    unsmoothed, _ = FactorizedHead(4, (2,), label_smoothing=0.0).loss(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    assert unsmoothed.item() == pytest.approx(-log_p0, rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_factorized_head_loss_matches_torch_cross_entropy(smoothing: float) -> None:
    sizes = (4, 8)
    head = FactorizedHead(16, sizes, label_smoothing=smoothing)
    g = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(50, sum(sizes), generator=g)
    ids = torch.randint(0, 32, (50,), generator=g)
    ce, _ = head.loss(logits, ids)
    digits = factorize_ids(ids, sizes)
    parts = logits.split(sizes, dim=-1)
    expect = sum(F.cross_entropy(lg, digits[:, i], label_smoothing=smoothing, reduction="none")
                 for i, lg in enumerate(parts))
    torch.testing.assert_close(ce, expect, rtol=1e-6, atol=1e-6)
    plain = sum(F.cross_entropy(lg, digits[:, i], reduction="none") for i, lg in enumerate(parts))
    if smoothing > 0:
        assert (ce - plain).abs().min() > 1e-4
    # the model's head uses the configured smoothing
    assert tiny("vq", label_smoothing=smoothing).video_head.label_smoothing == smoothing


# ---------------------------------------------------------------------------------------------- 3. action dropout
def _per_sample(model, tokens, actions, names, mask, action_mask=None) -> torch.Tensor:
    return model.compute_loss(tokens, actions, names, mask, action_mask=action_mask)["video_loss_per_sample"]


@pytest.mark.parametrize("p", [0.99, 0.5])
def test_action_dropout_hides_whole_samples_in_training_only(p: float) -> None:
    model = _tiny_dropout("vq", p)
    tokens, actions, names = batch(model, b=8)
    mask = _token_mask(model, *tokens.shape[:2])
    with torch.no_grad():
        model.eval()
        visible = _per_sample(model, tokens, actions, names, mask)
        hidden = _per_sample(model, tokens, actions, names, mask, torch.ones(tokens.shape[:2], dtype=torch.bool))
        assert ((visible - hidden).abs() > 1e-6).all()  # actions matter for every sample's loss
        for seed in range(3):  # never dropped in eval mode
            torch.manual_seed(seed)
            torch.testing.assert_close(_per_sample(model, tokens, actions, names, mask), visible, **EXACT)
        model.train()
        dropped = []
        for seed in range(25):
            torch.manual_seed(seed)
            loss = _per_sample(model, tokens, actions, names, mask)
            is_hidden = (loss - hidden).abs() < 1e-9
            is_visible = (loss - visible).abs() < 1e-9
            assert (is_hidden ^ is_visible).all(), "a sample's actions are dropped as a whole or not at all"
            dropped.append(is_hidden)
    rate = torch.cat(dropped).double().mean().item()
    assert abs(rate - p) < 0.1, rate  # 200 draws: 3 sigma < 0.11 at p = 0.5, < 0.03 at p = 0.99


def test_action_dropout_equals_hiding_all_actions() -> None:
    """With p = 0.99 and a fixed seed, the training loss is the loss with every action hidden."""
    model = _tiny_dropout("vq", 0.99)
    tokens, actions, names = batch(model, b=3)
    mask = _token_mask(model, *tokens.shape[:2])
    all_hidden = torch.ones(tokens.shape[:2], dtype=torch.bool)
    with torch.no_grad():
        model.eval()
        expect = model.compute_loss(tokens, actions, names, mask, action_mask=all_hidden)["loss"]
        model.train()
        matches = 0
        for seed in range(5):  # P(all three dropped) = 0.97 per seed
            torch.manual_seed(seed)
            matches += abs(model.compute_loss(tokens, actions, names, mask)["loss"].item() - expect.item()) < 1e-9
    assert matches >= 4


# ---------------------------------------------------------------------------------------------- 4. corruption
def test_corrupted_ids_are_replaced_by_random_ids() -> None:
    model = tiny("vq")
    tokens, actions, names = batch(model)
    mask = _token_mask(model, *tokens.shape[:2])
    g = torch.Generator().manual_seed(3)
    corrupt = (torch.rand(mask.shape, generator=g) < 0.4) & ~mask
    assert corrupt.any()
    torch.manual_seed(11)
    out = model(tokens, actions, names, token_mask=mask, corrupt=corrupt)["video"]
    # a corrupted id is never read: other ids there give the same output under the same random draws
    torch.manual_seed(11)
    out2 = model(_perturb(model, tokens, corrupt), actions, names, token_mask=mask, corrupt=corrupt)["video"]
    torch.testing.assert_close(out2, out, **EXACT)
    # ...and corruption changes what the model sees
    clean = model(tokens, actions, names, token_mask=mask)["video"]
    assert (out - clean).abs().max() > 1e-6
    # embedding level: only corrupted positions change, and nearly all of them do (ids uniform over 64)
    x, c = model.to_trunk_tokens(tokens), model.to_trunk_mask(corrupt)
    base = model.embed_video(x, None)
    changed = []
    for seed in range(20):
        torch.manual_seed(seed)
        emb = model.embed_video(x, None, c)
        torch.testing.assert_close(emb[~c], base[~c], **EXACT)
        changed.append((emb[c] - base[c]).abs().amax(-1) > 0)
    frac = torch.cat(changed).double().mean().item()
    assert frac > 0.9, frac  # expected 63/64


# ---------------------------------------------------------------------------------------------- 8. pre-norms
def _normalised(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    """Undo the affine part of ``norm``: an input produced by ``norm`` then has per-token mean 0 and std 1."""
    return (x - norm.bias) / norm.weight


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["concat+adaln", "cross_attention", "add"])
def test_every_branch_is_pre_normed(kind: str, mode: str) -> None:
    model = tiny(kind, mode)
    tokens, actions, names = batch(model)
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    for i, block in enumerate(model.trunk.blocks):
        branches = {"temporal": (block.temporal, block.norm_t), "spatial": (block.spatial, block.norm_s),
                    "mlp": (block.mlp, block.norm_m)}
        if block.cross is not None:
            branches["cross"] = (block.cross, block.norm_c)
        for name, (module, norm) in branches.items():
            def hook(_module, args, name=f"{name}{i}", norm=norm):
                seen.setdefault(name, []).append(_normalised(args[0], norm))
            handles.append(module.register_forward_pre_hook(hook))
    try:
        model(tokens, actions, names, token_mask=_token_mask(model, *tokens.shape[:2]))
    finally:
        for handle in handles:
            handle.remove()
    expected = {f"{n}{i}" for i in range(len(model.trunk.blocks)) for n in ("temporal", "spatial", "mlp")}
    assert expected <= set(seen)
    for name, inputs in seen.items():
        for z in inputs:
            assert z.mean(-1).abs().max() < 1e-8, name
            assert (z.std(-1, unbiased=False) - 1).abs().max() < 1e-2, name


def test_temporal_attention_input_is_normalised_at_init() -> None:
    """A freshly built model (LayerNorm weight 1, bias 0): temporal attention sees mean 0 / std 1 per token."""
    model = create_model("hma-vq-test", embodiments=EMBODIMENTS).double().eval()
    tokens, actions, names = batch(model)
    stats = []
    handle = model.trunk.blocks[0].temporal.register_forward_pre_hook(
        lambda _m, args: stats.append((args[0].mean(-1), args[0].std(-1, unbiased=False))))
    try:
        model(tokens, actions, names)
    finally:
        handle.remove()
    mean, std = stats[0]
    assert mean.abs().max() < 1e-8
    assert (std - 1).abs().max() < 0.05  # the raw stream is ~0.03 wide at init


# ---------------------------------------------------------------------------------------------- 10. actions
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", CONDITIONING_MODES)
def test_actions_change_frames_after_them_in_every_mode_but_none(kind: str, mode: str) -> None:
    model = tiny(kind, mode)
    tokens, actions, names = batch(model)
    other = torch.randn(actions.shape, generator=torch.Generator().manual_seed(9), dtype=actions.dtype)
    out = model(tokens, actions, names)
    out2 = model(tokens, other, names)
    # frame 0 is conditioned on the unknown action whatever the actions are
    torch.testing.assert_close(out2["video"][:, 0], out["video"][:, 0], **EXACT)
    diff = (out2["video"][:, 1:] - out["video"][:, 1:]).abs().flatten(2).amax(-1)  # [B, T-1]
    if mode == "none":
        assert torch.all(diff == 0)
    else:
        assert torch.all(diff > 1e-6), diff


def test_concat_adaln_feeds_actions_to_both_paths() -> None:
    model = tiny("vq", "concat+adaln")
    tokens, actions, names = batch(model)
    n_act = model.config.conditioning.num_action_tokens
    lengths, adaln_a = [], []
    handles = [model.trunk.blocks[0].spatial.register_forward_pre_hook(lambda _m, args: lengths.append(
        args[0].shape[1]))]
    handles += [b.adaln.register_forward_pre_hook(lambda _m, args: adaln_a.append(args[1]))
                for b in model.trunk.blocks]
    try:
        model(tokens, actions, names)
        other = actions + 1.0
        model(tokens, other, names)
    finally:
        for handle in handles:
            handle.remove()
    # the spatial sequence holds the image tokens and the appended action tokens
    assert lengths == [model.num_tokens + n_act] * 2
    # every block's adaLN branch gets the per-frame action embedding; it follows the actions of frames >= 1
    depth = len(model.trunk.blocks)
    assert len(adaln_a) == 2 * depth and all(a is not None for a in adaln_a)
    for first, second in zip(adaln_a[:depth], adaln_a[depth:]):
        torch.testing.assert_close(first[:, 0], second[:, 0], **EXACT)
        assert (first[:, 1:] - second[:, 1:]).abs().amax(-1).min() > 1e-6
    # with the adaLN branches silenced, the appended action tokens alone still carry the actions
    with torch.no_grad():
        for block in model.trunk.blocks:
            block.adaln.out.weight.zero_()
            block.adaln.out.bias.zero_()
    v1, v2 = model(tokens, actions, names)["video"], model(tokens, actions + 1.0, names)["video"]
    assert (v1[:, 1:] - v2[:, 1:]).abs().flatten(2).amax(-1).min() > 1e-6
