"""The diffusers AutoencoderKL adapter, on a tiny randomly initialised VAE built from a config (no download)."""

from __future__ import annotations

import pytest
import torch

from hma_zoo import hub
from hma_zoo.tokenizers import check_compatible, load_tokenizer
from tests.tokenizers.helpers import smooth_images, to_frames

pytest.importorskip("diffusers")

TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 8, 8, 8],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 64,
    "scaling_factor": 0.5,
}


def _tiny() -> torch.nn.Module:
    from hma_zoo.tokenizers.diffusers_adapter import DiffusersKLTokenizer

    torch.manual_seed(0)
    return DiffusersKLTokenizer(vae_config=TINY_VAE, image_size=(32, 32)).eval()


def test_spec_follows_the_vae_config() -> None:
    tok = _tiny()
    assert tok.spec.kind == "kl" and tok.spec.downsample == 8 and tok.spec.grid == (4, 4)
    assert tok.spec.latent_channels == 4 and tok.spec.scale == 0.5
    check_compatible(tok.spec, tok.spec.token_spec())


def test_encode_is_scaled_posterior_mean_and_decode_inverts_the_scale() -> None:
    tok = _tiny()
    frames = to_frames(smooth_images(2, size=32))
    latents = tok.encode(frames)
    assert latents.shape == (1, 2, 4, 4, 4) and latents.dtype == torch.float32
    images = frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        mean = tok.vae.encode(images).latent_dist.mean
        assert torch.allclose(latents[0].permute(0, 3, 1, 2), mean * 0.5, atol=1e-5)
        direct = tok.vae.decode(mean).sample
    out = tok.decode(latents)
    assert out.shape == frames.shape and out.dtype == torch.uint8
    expect = direct.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert (out[0].int() - expect.int()).abs().max() <= 1


def test_save_load_round_trip(tmp_path) -> None:
    tok = _tiny()
    hub.save_pretrained(tok, tmp_path / "vae")
    loaded = load_tokenizer(str(tmp_path / "vae")).eval()
    assert type(loaded).__name__ == "DiffusersKLTokenizer" and loaded.spec == tok.spec
    frames = to_frames(smooth_images(1, size=32))
    assert torch.equal(loaded.encode(frames), tok.encode(frames))


def test_diffusers_prefix_loads_a_local_vae_folder(tmp_path) -> None:
    tok = _tiny()
    tok.vae.save_pretrained(tmp_path / "sd-vae")
    loaded = load_tokenizer(f"diffusers:{tmp_path / 'sd-vae'}", image_size=(32, 32)).eval()
    frames = to_frames(smooth_images(1, size=32))
    assert torch.equal(loaded.encode(frames), tok.encode(frames))
