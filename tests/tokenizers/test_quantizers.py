"""Factorisation consistency: ids are mixed-radix numbers of the world model's factors (first least significant)."""

from __future__ import annotations

import math

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
