"""Registry, shapes, spec checks, world-model compatibility, a short overfit and save/load of the zoo tokenizers."""

from __future__ import annotations

import json

import pytest
import torch

from hma_zoo import hub
from hma_zoo.configs import TokenSpec
from hma_zoo.tokenizers import (
    KLTokenizer,
    VQTokenizer,
    check_compatible,
    create_tokenizer,
    list_tokenizers,
    load_tokenizer,
)
from hma_zoo.tokenizers.losses import TokenizerLoss
from hma_zoo.tokenizers.train import image_psnr
from tests.tokenizers.helpers import smooth_images, to_frames


def test_registry_lists_and_refuses_unknown_names() -> None:
    assert {"tok-vq-f8-1k", "tok-kl-f8-c4", "tok-vq-test", "tok-kl-test"} <= set(list_tokenizers())
    assert all(n.startswith("tok-vq-") for n in list_tokenizers("tok-vq-*"))
    with pytest.raises(KeyError, match="tok-vq-f8-1k"):
        create_tokenizer("tok-nope")
    with pytest.raises(KeyError, match="registered tokenizers"):
        load_tokenizer("tok-nope")


@pytest.mark.parametrize("name", ["tok-vq-test", "tok-kl-test"])
def test_encode_decode_shapes_and_dtypes(name: str) -> None:
    tok = create_tokenizer(name).eval()
    frames = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8)
    tokens = tok.encode(frames)
    assert tok.spec.grid == (8, 8)
    if tok.spec.kind == "vq":
        assert tokens.shape == (2, 3, 8, 8) and tokens.dtype == torch.int64
        assert int(tokens.min()) >= 0 and int(tokens.max()) < tok.spec.vocab_size
    else:
        assert tokens.shape == (2, 3, 8, 8, 4) and tokens.dtype == torch.float32
    out = tok.decode(tokens)
    assert out.shape == frames.shape and out.dtype == torch.uint8


def test_bad_inputs_fail_clearly() -> None:
    vq, kl = create_tokenizer("tok-vq-test"), create_tokenizer("tok-kl-test")
    with pytest.raises(ValueError, match="takes"):
        vq.encode(torch.zeros(1, 1, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1024\)"):
        vq.decode(torch.full((1, 1, 8, 8), 5000))
    with pytest.raises(TypeError, match="integer ids"):
        vq.decode(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="latents have shape"):
        kl.decode(torch.zeros(1, 1, 8, 8, 3))


def test_vocab_override_refactorises() -> None:
    tok = create_tokenizer("tok-vq-test", vocab_size=2**18)
    assert tok.spec.vocab_size == 2**18 and tok.spec.factor_sizes == (512, 512)
    assert tok.spec.token_spec() == TokenSpec(kind="vq", grid=(8, 8), vocab_size=2**18, factor_sizes=(512, 512))
    tok = create_tokenizer("tok-vq-test", vocab_size=2**14, factor_sizes=(64, 256))
    assert tok.spec.factor_sizes == (64, 256) and isinstance(tok, VQTokenizer)
    assert [len(g) for g in tok.quantizer.groups] == [2, 3]


def test_mismatched_world_model_fails_with_clear_message() -> None:
    vq = create_tokenizer("tok-vq-test")
    check_compatible(vq.spec, vq.spec.token_spec())  # a matching pair passes
    wrong = TokenSpec(kind="vq", grid=(16, 16), vocab_size=2**18, factor_sizes=(512, 512))
    with pytest.raises(ValueError, match=r"grid: tokenizer gives \(8, 8\), model expects \(16, 16\)") as err:
        check_compatible(vq.spec, wrong)
    assert "vocab: tokenizer 1024, model 262144" in str(err.value)
    with pytest.raises(ValueError, match="factorisation"):
        check_compatible(vq.spec, TokenSpec(kind="vq", grid=(8, 8), vocab_size=1024, factor_sizes=(4, 256)))
    kl = create_tokenizer("tok-kl-test")
    with pytest.raises(ValueError, match="token family"):
        check_compatible(kl.spec, vq.spec.token_spec())
    with pytest.raises(ValueError, match="latent channels: tokenizer 4, model 8"):
        check_compatible(kl.spec, TokenSpec(kind="mar", grid=(8, 8), latent_channels=8))


@pytest.mark.parametrize("name", ["tok-vq-test", "tok-kl-test"])
def test_short_overfit_improves_round_trip(name: str) -> None:
    torch.manual_seed(0)
    images = smooth_images(2, size=32)
    tok = create_tokenizer(name, image_size=(32, 32))
    crit = TokenizerLoss()
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)

    def round_trip_psnr() -> float:
        frames = to_frames(images)
        target = frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 127.5 - 1
        recon = tok.decode(tok.encode(frames)).flatten(0, 1).permute(0, 3, 1, 2).float() / 127.5 - 1
        return float(image_psnr(recon, target).mean())

    tok.eval()
    before = round_trip_psnr()
    tok.train()
    for _ in range(80):
        loss, _ = crit.generator_loss(images, tok(images))
        opt.zero_grad()
        loss.backward()
        opt.step()
    tok.eval()
    after = round_trip_psnr()
    assert before < 14.0, before
    assert after > 20.0, (before, after)


def test_kl_fit_scale_gives_unit_std() -> None:
    tok = create_tokenizer("tok-kl-test").eval()
    frames = to_frames(smooth_images(6))
    scale = tok.fit_scale(frames)
    assert tok.spec.scale == pytest.approx(scale)
    assert float(tok.encode(frames).std()) == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("name", ["tok-vq-test", "tok-kl-test"])
def test_save_load_equality(name: str, tmp_path) -> None:
    tok = create_tokenizer(name, image_size=(32, 32)).eval()
    frames = to_frames(smooth_images(3, size=32))
    if isinstance(tok, KLTokenizer):
        tok.fit_scale(frames)
    hub.save_pretrained(tok, tmp_path / "tok")
    payload = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert payload["hma_zoo_kind"] == "tokenizer" and payload["config"]["class"] == type(tok).__name__
    assert payload["config"]["spec"]["scale"] == tok.spec.scale
    loaded = load_tokenizer(str(tmp_path / "tok")).eval()
    assert type(loaded) is type(tok) and loaded.spec == tok.spec
    for (k, v), (k2, v2) in zip(tok.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    assert torch.equal(tok.encode(frames), loaded.encode(frames))
    assert torch.equal(tok.decode(tok.encode(frames)), loaded.decode(loaded.encode(frames)))


def test_adversarial_loss_is_off_by_default_and_trains_a_discriminator_when_on() -> None:
    images = smooth_images(2, size=32)
    tok = create_tokenizer("tok-vq-test", image_size=(32, 32))
    assert TokenizerLoss().discriminator is None
    crit = TokenizerLoss(adv_weight=0.1, adv_start_step=5, disc_width=8)
    out = tok(images)
    _, parts = crit.generator_loss(images, out, step=4)
    assert "g_adv" not in parts
    _, parts = crit.generator_loss(images, out, step=5)
    assert "g_adv" in parts
    opt = torch.optim.Adam(crit.discriminator.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        d_loss = crit.discriminator_loss(images, out.recon)
        opt.zero_grad()
        d_loss.backward()
        opt.step()
        losses.append(float(d_loss))
    assert losses[-1] < losses[0]  # the discriminator learns to tell reconstructions from images
