"""Factorisation consistency: ids are mixed-radix numbers of the world model's factors (first least significant)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from hma_zoo.configs import TokenSpec
from hma_zoo.tokenizers.quantizers import FSQ, LFQ, default_factor_sizes, default_levels, group_levels


@pytest.mark.parametrize("k", [10, 11, 12, 14, 16, 18])
def test_default_levels_multiply_to_factors(k: int) -> None:
    factors = default_factor_sizes(2**k)
    assert math.prod(factors) == 2**k
    groups = group_levels(default_levels(factors), factors)
    assert [math.prod(g) for g in groups] == list(factors)
    assert all(level > 2 for g in groups for level in g), "FSQ defaults must avoid 2-level dimensions"
    TokenSpec(kind="vq", vocab_size=2**k, factor_sizes=factors)  # the world model accepts it


def test_2_18_is_512_by_512() -> None:
    assert default_factor_sizes(2**18) == (512, 512)
    assert default_levels((512, 512)) == (8, 8, 8, 8, 8, 8)


def test_bad_levels_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="cannot be grouped"):
        group_levels((8, 8, 4, 4), (32, 32))
    with pytest.raises(ValueError, match="power of two"):
        default_factor_sizes(1000)


@pytest.mark.parametrize("quant", ["fsq", "lfq"])
@pytest.mark.parametrize("factors", [(32, 32), (128, 128), (512, 512)])
def test_ids_are_mixed_radix_of_group_digits(quant: str, factors: tuple[int, int]) -> None:
    q = FSQ(default_levels(factors), factors) if quant == "fsq" else LFQ(factors)
    z = torch.randn(500, q.dim) * 2
    out = q(z)
    digits = q.ids_to_digits(out.ids)
    # hand-computed mixed radix over dimensions, first dimension least significant
    expect, base = torch.zeros(500, dtype=torch.long), 1
    for i, level in enumerate(q.levels):
        expect += digits[:, i] * base
        base *= level
    assert torch.equal(out.ids, expect)
    # factor k is the mixed-radix number of group k's digits only, and id == f0 + F0 * f1 (TokenSpec docs)
    f = q.factor_ids(out.ids)
    start = 0
    for k, group in enumerate(q.groups):
        gk, base = torch.zeros(500, dtype=torch.long), 1
        for j, level in enumerate(group):
            gk += digits[:, start + j] * base
            base *= level
        assert torch.equal(f[:, k], gk)
        start += len(group)
    assert torch.equal(out.ids, f[:, 0] + factors[0] * f[:, 1])
    assert torch.equal(f[:, 0], out.ids % factors[0]) and torch.equal(f[:, 1], out.ids // factors[0])
    assert int(out.ids.min()) >= 0 and int(out.ids.max()) < math.prod(factors)


@pytest.mark.parametrize("quant", ["fsq", "lfq"])
def test_changing_one_group_changes_only_its_factor(quant: str) -> None:
    factors = (32, 32)
    q = FSQ(default_levels(factors), factors) if quant == "fsq" else LFQ(factors)
    z = torch.randn(200, q.dim)
    n0 = len(q.groups[0])
    z2 = z.clone()
    z2[:, n0:] = torch.randn(200, q.dim - n0) * 3
    f1, f2 = q.factor_ids(q(z).ids), q.factor_ids(q(z2).ids)
    assert torch.equal(f1[:, 0], f2[:, 0])
    assert not torch.equal(f1[:, 1], f2[:, 1])


@pytest.mark.parametrize("quant", ["fsq", "lfq"])
def test_codes_round_trip_through_ids(quant: str) -> None:
    q = FSQ((8, 4, 8, 4), (32, 32)) if quant == "fsq" else LFQ((32, 32))
    out = q(torch.randn(300, q.dim) * 2)
    assert torch.allclose(q.ids_to_codes(out.ids), out.codes.detach(), atol=1e-6)
    all_ids = torch.arange(q.vocab_size)
    assert torch.equal(q.digits_to_ids(q.ids_to_digits(all_ids)), all_ids)
    if quant == "lfq":  # sign codes quantise to themselves
        assert torch.equal(q(q.ids_to_codes(all_ids)).ids, all_ids)
    with pytest.raises(ValueError, match=r"\[0, 1024\)"):
        q.ids_to_codes(torch.tensor([1024]))


def test_fsq_reaches_every_level() -> None:
    q = FSQ((8, 4, 8, 4), (32, 32))
    digits = q.ids_to_digits(q(torch.linspace(-6, 6, 4001)[:, None].expand(-1, 4)).ids)
    for i, level in enumerate(q.levels):
        assert torch.equal(digits[:, i].unique(), torch.arange(level))


def test_lfq_entropy_loss_is_finite_and_has_gradient() -> None:
    q = LFQ((32, 32)).train()
    z = torch.randn(64, q.dim, requires_grad=True)
    out = q(z)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


# ---------------------------------------------------------------- FSQ is vector-quantize-pytorch's, ids unchanged
def _reference_fsq(z: torch.Tensor, levels: tuple[int, ...], eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """The hand-written FSQ that FSQ replaced (kept verbatim in its arithmetic): codes and int64 ids of
    ``z [..., D]``."""
    lv = torch.tensor(levels, dtype=torch.float32)
    half_l = (lv - 1) * (1 + eps) / 2
    offset = torch.where(lv % 2 == 0, 0.5, 0.0)
    shift = torch.atanh(offset / half_l)
    half_width = torch.div(torch.tensor(levels), 2, rounding_mode="floor")
    bounded = torch.tanh(z + shift) * half_l - offset
    rounded = bounded + (bounded.round() - bounded).detach()
    digits = rounded.detach().round().long() + half_width
    basis = torch.cumprod(torch.tensor([1, *levels[:-1]]), 0)
    return rounded / half_width, (digits * basis).sum(-1)


@pytest.mark.parametrize(("levels", "factors"), [((8, 4, 8, 4), (32, 32)), ((8, 8, 8, 8), (64, 64)),
                                                 ((5, 3, 7), (15, 7)), ((8,) * 6, (512, 512))])
def test_fsq_matches_the_hand_written_fsq_bit_for_bit(levels: tuple[int, ...], factors: tuple[int, ...]) -> None:
    """Codes, ids and gradients of the wrapped vector_quantize_pytorch.FSQ equal the implementation it replaced."""
    q = FSQ(levels, factors)
    g = torch.Generator().manual_seed(0)
    for scale in (0.3, 1.0, 4.0):
        z = (torch.randn(2, 37, 5, len(levels), generator=g) * scale).requires_grad_()
        z_ref = z.detach().clone().requires_grad_()
        out = q(z)
        codes_ref, ids_ref = _reference_fsq(z_ref, levels)
        assert torch.equal(out.codes, codes_ref) and torch.equal(out.ids, ids_ref)
        assert out.ids.dtype == torch.int64 and out.codes.shape == z.shape
        weight = torch.randn(z.shape, generator=g)
        (out.codes * weight).sum().backward()
        (codes_ref * weight).sum().backward()
        assert torch.equal(z.grad, z_ref.grad)
    assert q.state_dict() == {}  # the wrapped module adds no weights: the tokenizer state-dict layout is unchanged


def test_fsq_refuses_two_level_dimensions() -> None:
    with pytest.raises(ValueError, match="at least 3.*lfq"):
        FSQ((2, 8, 4, 8), (64, 8))


def test_shipped_tokenizers_give_the_ids_recorded_before_fsq_was_wrapped() -> None:
    """The ids of the shipped tok-vq-*.simmix tokenizers on fixed frames, recorded with the hand-written FSQ
    (fixtures/shipped_fsq_ids.npz), are unchanged. Latents within 1e-3 of a rounding edge are skipped: another CPU
    may round the encoder's last bit differently there, which says nothing about the quantiser."""
    import numpy as np

    from hma_zoo.pretrained import SHIPPED_DIR
    from hma_zoo.tokenizers import load_tokenizer

    fixture = np.load(Path(__file__).parent / "fixtures" / "shipped_fsq_ids.npz")
    frames = torch.from_numpy(fixture["frames"])[None]  # [1, 4, 64, 64, 3]
    for name in ("tok-vq-f8-1k.simmix", "tok-vq-f4-4k.simmix"):
        if not (SHIPPED_DIR / name / "config.json").is_file():
            pytest.skip(f"{name} is not shipped here")
        tok = load_tokenizer(str(SHIPPED_DIR / name)).eval()
        with torch.no_grad():
            ids = tok.encode(frames)[0]
            images = frames[0].permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
            z = tok.encoder(images).permute(0, 2, 3, 1)  # [N, h, w, D]
            lv = torch.tensor(tok.quantizer.levels, dtype=torch.float32)
            half_l, offset = (lv - 1) * 1.001 / 2, torch.where(lv % 2 == 0, 0.5, 0.0)
            bounded = torch.tanh(z + torch.atanh(offset / half_l)) * half_l - offset
            near_edge = ((bounded - bounded.floor() - 0.5).abs() < 1e-3).any(-1)
        expected = torch.from_numpy(fixture[name]).long()
        keep = ~near_edge
        assert keep.float().mean() > 0.95, "too many latents on a rounding edge to compare"
        assert torch.equal(ids[keep], expected[keep]), f"{name}: ids changed on {(ids != expected)[keep].sum()} tokens"


# ---------------------------------------------------------------- LFQ: where its math is vector-quantize-pytorch's
@pytest.mark.parametrize("bits", [4, 10])
def test_lfq_with_one_factor_equals_vector_quantize_pytorch_lfq(bits: int) -> None:
    """One factor of ``2^bits`` codes: the same sign codes, the same ids with the bit order reversed (vqp reads the
    first dimension as the most significant bit, we as the least), and the same loss: entropy over all codes with
    logits ``2 z.c / T`` plus the commitment MSE."""
    import vector_quantize_pytorch as vqp

    ours = LFQ((2**bits,), entropy_weight=0.1, diversity_weight=1.0, commit_weight=0.25, temperature=0.1).train()
    theirs = vqp.LFQ(dim=bits, codebook_size=2**bits, entropy_loss_weight=0.1, diversity_gamma=1.0,
                    commitment_loss_weight=0.25).train()
    z = torch.randn(3, 50, bits, generator=torch.Generator().manual_seed(1))
    out = ours(z)
    codes, ids, loss = theirs(z, inv_temperature=1 / ours.temperature)
    assert torch.equal(out.codes, codes)
    reversed_ids = (ours.ids_to_digits(out.ids).flip(-1) * (2 ** torch.arange(bits))).sum(-1)
    assert torch.equal(reversed_ids, ids.long())
    # vqp clamps probabilities at 1e-5 inside its log; ours uses the exact log-softmax
    assert torch.allclose(out.loss, loss, rtol=1e-3, atol=1e-4), (float(out.loss), float(loss))


def test_lfq_with_one_bit_factors_is_vqp_lfq_with_one_codebook_per_bit() -> None:
    """Factors all 2 (each group one bit) = vqp LFQ with ``num_codebooks = D`` of 2 codes each: the same codes,
    per-codebook ids equal to our per-factor ids, and our entropy term is the sum over groups where vqp takes the
    mean (so vqp's weight is ``D`` times ours)."""
    import vector_quantize_pytorch as vqp

    d = 6
    ours = LFQ((2,) * d, entropy_weight=0.1, commit_weight=0.25, temperature=0.1).train()
    theirs = vqp.LFQ(dim=d, codebook_size=2, num_codebooks=d, entropy_loss_weight=0.1 * d,
                    commitment_loss_weight=0.25).train()
    z = torch.randn(2, 40, d, generator=torch.Generator().manual_seed(2))
    out = ours(z)
    codes, ids, loss = theirs(z, inv_temperature=10.0)
    assert torch.equal(out.codes, codes)
    assert torch.equal(ours.factor_ids(out.ids), ids.long())
    assert torch.allclose(out.loss, loss, rtol=1e-3, atol=1e-4), (float(out.loss), float(loss))


def test_lfq_forward_is_two_level_symmetric_fsq() -> None:
    """2 levels per dimension: vqp's symmetry-preserving FSQ rounds ``tanh(z)`` to ``+-1``, i.e. ``sign(z)``, and
    orders ids as we do (first dimension least significant): LFQ's codes and ids in the forward pass."""
    import vector_quantize_pytorch as vqp

    q = LFQ((16, 8))
    fsq2 = vqp.FSQ([2] * q.dim, preserve_symmetry=True)
    z = torch.randn(4, 64, q.dim, generator=torch.Generator().manual_seed(3))
    z = torch.where(z.abs() < 1e-6, 1e-3, z)  # the sign of exactly 0 is a convention (LFQ: -1, FSQ: +1)
    codes, ids = fsq2(z)
    out = q(z)
    assert torch.equal(out.codes.detach(), codes) and torch.equal(out.ids, ids.long())
