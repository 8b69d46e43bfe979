"""Properties of the paper's masking (hma_zoo.lit.masking)."""

from __future__ import annotations

import math

import pytest
import torch

from hma_zoo.lit.masking import MaskingConfig, apply_corruption, cosine_mask_ratio, sample_action_mask, sample_masks


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", ["vq", "mar"])
def test_frame0_never_masked_and_every_sample_has_a_masked_token(kind: str) -> None:
    m = sample_masks(512, 4, (4, 4), kind, generator=_gen())
    assert m.token_mask.shape == (512, 4, 4, 4)
    assert not m.token_mask[:, 0].any()
    assert m.token_mask.flatten(1).any(1).all()
    assert (m.corrupt is None) == (kind == "mar")


def test_prompt_frames_fully_visible_and_uncorrupted_by_prompt_rule() -> None:
    cfg = MaskingConfig(non_mlm_ratio=1.0, num_prompt_frames=3, max_corrupt_rate=0.0)
    m = sample_masks(400, 8, (4, 4), "vq", cfg, generator=_gen(1))
    assert ((m.first_masked >= 3) & (m.first_masked <= 7)).all()
    # every prompt length in [3, 7] occurs
    assert set(m.first_masked.tolist()) == {3, 4, 5, 6, 7}
    t_idx = torch.arange(8).view(1, 8)
    before = t_idx < m.first_masked.view(-1, 1)  # [B, T]
    assert not (m.token_mask.flatten(2).any(2) & before).any()
    assert not (m.corrupt.flatten(2).any(2) & before).any()
    # frames after the prompt are corrupted somewhere (keep prob <= 1)
    assert m.corrupt.any()


def test_mlm_samples_start_masking_at_frame_1_and_have_no_corruption_without_global() -> None:
    cfg = MaskingConfig(non_mlm_ratio=0.0, max_corrupt_rate=0.0)
    m = sample_masks(300, 4, (4, 4), "vq", cfg, generator=_gen(2))
    assert (m.first_masked == 1).all()
    assert not m.corrupt.any()
    assert m.token_mask[:, 1].any()


def test_non_mlm_fraction_matches_ratio() -> None:
    m = sample_masks(4000, 8, (2, 2), "vq", generator=_gen(3))
    frac = (m.first_masked > 1).float().mean().item()
    # prompt samples draw first_masked >= 4 > 1; expected 0.2 (3 sigma ~ 0.019)
    assert abs(frac - 0.2) < 0.025


def test_mask_ratio_statistics_follow_cosine_schedule() -> None:
    # E[cos(pi/2 u)], u ~ U(0,1) = 2/pi ; for u ~ U(0.1, 1): (2/pi)(1 - sin(0.05 pi)) / 0.9
    cfg = MaskingConfig(non_mlm_ratio=0.0, max_corrupt_rate=0.0)
    m = sample_masks(3000, 2, (8, 8), "vq", cfg, generator=_gen(4))
    assert abs(m.token_mask[:, 1].float().mean().item() - 2 / math.pi) < 0.02
    m = sample_masks(3000, 2, (8, 8), "mar", cfg, generator=_gen(5))
    expect = (2 / math.pi) * (1 - math.sin(0.05 * math.pi)) / 0.9
    assert abs(m.token_mask[:, 1].float().mean().item() - expect) < 0.02


def test_global_corruption_rate_is_bounded_and_disjoint_from_mask() -> None:
    cfg = MaskingConfig(non_mlm_ratio=0.0, max_corrupt_rate=0.2)
    rates = []
    for seed in range(40):
        m = sample_masks(64, 4, (8, 8), "vq", cfg, generator=_gen(seed))
        assert not (m.corrupt & m.token_mask).any()
        visible = ~m.token_mask
        rates.append((m.corrupt & visible).sum().item() / visible.sum().item())
    assert max(rates) <= 0.2 + 0.02
    # the per-batch rate is 0.2 * U(0,1): mean 0.1
    assert abs(sum(rates) / len(rates) - 0.1) < 0.03
    # frame 0 can be corrupted by the global rule
    assert any(sample_masks(64, 4, (8, 8), "vq", cfg, generator=_gen(s)).corrupt[:, 0].any() for s in range(5))


def test_prompt_corruption_grows_along_time() -> None:
    cfg = MaskingConfig(non_mlm_ratio=1.0, num_prompt_frames=1, max_corrupt_rate=0.0)
    m = sample_masks(4000, 6, (4, 4), "vq", cfg, generator=_gen(6))
    ones = m.first_masked == 1
    rate = m.corrupt[ones].float().sum((2, 3)) / (~m.token_mask[ones]).float().sum((2, 3)).clamp_min(1)
    per_frame = rate.mean(0)
    assert per_frame[0] == 0
    assert (per_frame[2:] > per_frame[1:-1]).all(), per_frame


def test_action_masks() -> None:
    assert not sample_action_mask(4, 5, "none").any()
    assert sample_action_mask(4, 5, "all").all()
    r = sample_action_mask(2000, 10, "random", generator=_gen(7))
    assert abs(r.float().mean().item() - 0.5) < 0.03  # E[r] = 0.5
    per_sample = r.float().mean(1)
    assert per_sample.min() < 0.1 and per_sample.max() > 0.9  # the ratio really varies per sample
    with pytest.raises(ValueError, match="action mask mode"):
        sample_action_mask(1, 2, "bogus")  # type: ignore[arg-type]


def test_reproducible_and_validation() -> None:
    a = sample_masks(8, 4, (4, 4), "vq", generator=_gen(9))
    b = sample_masks(8, 4, (4, 4), "vq", generator=_gen(9))
    assert torch.equal(a.token_mask, b.token_mask) and torch.equal(a.corrupt, b.corrupt)
    with pytest.raises(ValueError, match="at least 2 frames"):
        sample_masks(1, 1, (2, 2), "vq")
    with pytest.raises(ValueError, match="non_mlm_ratio"):
        MaskingConfig(non_mlm_ratio=2.0)


def test_cosine_ratio_and_apply_corruption() -> None:
    assert cosine_mask_ratio(torch.tensor(0.0)) == 1.0
    assert abs(cosine_mask_ratio(torch.tensor(1.0)).item()) < 1e-6
    tokens = torch.arange(64).view(1, 1, 8, 8)
    corrupt = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    corrupt[0, 0, 0] = True
    out = apply_corruption(tokens, corrupt, 1 << 20, generator=_gen(0))
    assert torch.equal(out[~corrupt], tokens[~corrupt])
    assert (out[corrupt] != tokens[corrupt]).any()


@pytest.mark.parametrize("u_min", [None, 0.0])
def test_mar_with_patches_realises_the_same_mask_ratio_as_vq(u_min: float | None) -> None:
    """Masks are drawn on the trunk's grid (patches for ``mar``), so patch 2 keeps the schedule's mean ratio
    (a latent-grid mask would hide a whole patch when any of its 4 positions is drawn: 0.6 -> 0.86)."""
    from hma_zoo.configs import EmbodimentSpec, TokenSpec
    from hma_zoo.lit.world_model import HMALitModule

    embodiments = (EmbodimentSpec("arm", 2, 1),)
    cfg = MaskingConfig(non_mlm_ratio=0.0, max_corrupt_rate=0.0, mask_u_min=u_min)
    mar = HMALitModule("hma-mar-test", embodiments=embodiments, masking=cfg, overrides={"tokens": TokenSpec(
        kind="mar", grid=(8, 8), latent_channels=3, patch_size=2, vocab_size=1, factor_sizes=(1,))})
    vq = HMALitModule("hma-vq-test", embodiments=embodiments, masking=cfg)
    ratios = {}
    for name, lit in (("mar", mar), ("vq", vq)):
        m = lit._masks(2000, 3, torch.device("cpu"), _gen(8))
        trunk_mask = lit.model.to_trunk_mask(m.token_mask)  # what the loss and the model see
        assert trunk_mask.shape == (2000, 3, 16)
        ratios[name] = trunk_mask[:, 1:].float().mean().item()
    expect = 2 / math.pi if u_min == 0.0 else (2 / math.pi) * (1 - math.sin(0.05 * math.pi)) / 0.9
    assert abs(ratios["mar"] - expect) < 0.02, ratios
    if u_min == 0.0:  # same schedule: the realised ratios agree
        assert abs(ratios["mar"] - ratios["vq"]) < 0.02, ratios


def test_full_frame_ratio_hides_whole_frames() -> None:
    g = torch.Generator().manual_seed(0)
    cfg = MaskingConfig(full_frame_ratio=1.0, non_mlm_ratio=0.0)
    m = sample_masks(16, 5, (4, 4), "vq", cfg, generator=g)
    assert m.token_mask[:, 1:].all() and not m.token_mask[:, 0].any()
    # at 0.5 half the maskable frames are hidden outright; the cosine draw hides the rest with its own rate
    half = sample_masks(400, 5, (4, 4), "vq", MaskingConfig(full_frame_ratio=0.5, non_mlm_ratio=0.0),
                        generator=torch.Generator().manual_seed(1))
    none = sample_masks(400, 5, (4, 4), "vq", MaskingConfig(non_mlm_ratio=0.0),
                        generator=torch.Generator().manual_seed(1))
    full_half = half.token_mask[:, 1:].flatten(2).all(-1).float().mean()
    full_none = none.token_mask[:, 1:].flatten(2).all(-1).float().mean()
    assert abs(full_half - (0.5 + 0.5 * full_none)) < 0.05 and full_none < 0.3, (full_half, full_none)
    with pytest.raises(ValueError, match="full_frame_ratio"):
        MaskingConfig(full_frame_ratio=1.5)
