"""Adapter: a diffusers ``AutoencoderKL`` (Stable Diffusion / SVD-style image VAE) as a zoo tokenizer.

diffusers is imported lazily (``pip install hma-zoo[external]``). Weights are never downloaded by the zoo; a user
who has a VAE locally (or in the hub cache) calls :meth:`DiffusersKLTokenizer.from_pretrained`, or
``load_tokenizer("diffusers:/path/to/vae")``. Once wrapped it saves and loads through the zoo's hub format
(``config.json`` holds the diffusers config, ``model.safetensors`` the weights under ``vae.``).
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange

from hma_zoo.tokenizers.base import Tokenizer, TokenizerSpec


def _import_autoencoder_kl() -> Any:
    try:
        from diffusers import AutoencoderKL
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the diffusers adapter needs diffusers: pip install 'hma-zoo[external]' (or pip install diffusers)"
        ) from err
    return AutoencoderKL


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class DiffusersKLTokenizer(Tokenizer):
    """Wrap ``diffusers.AutoencoderKL``: frames -> scaled posterior means ``[B, T, h, w, c]`` and back.

    Args:
        vae_config: the ``AutoencoderKL`` config dict (builds a randomly initialised VAE); or
        vae: an existing ``AutoencoderKL`` instance (takes precedence).
        image_size: ``(H, W)`` of the frames (divisible by the VAE's downsampling).
        scale: latent scale; default: the VAE's ``scaling_factor`` (0.18215 for SD 1.x).
    """

    hub_kind = "tokenizer"

    def __init__(
        self,
        vae_config: dict[str, Any] | None = None,
        vae: Any = None,
        image_size: tuple[int, int] = (64, 64),
        scale: float | None = None,
    ) -> None:
        super().__init__()
        AutoencoderKL = _import_autoencoder_kl()
        if vae is None:
            if vae_config is None:
                raise ValueError("DiffusersKLTokenizer needs vae_config (a dict) or vae (an AutoencoderKL)")
            cfg = {k: v for k, v in vae_config.items() if not k.startswith("_")}
            vae = AutoencoderKL.from_config(cfg)
        self.vae = vae
        config = dict(vae.config)
        downsample = 2 ** (len(config["block_out_channels"]) - 1)
        scale = float(config.get("scaling_factor", 1.0)) if scale is None else float(scale)
        self.spec = TokenizerSpec(
            kind="kl",
            image_size=tuple(image_size),
            downsample=downsample,
            latent_channels=int(config["latent_channels"]),
            scale=scale,
        )
        self.name = None

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, subfolder: str | None = None, image_size: tuple[int, int] = (64, 64), **kwargs: Any
    ) -> DiffusersKLTokenizer:
        """Load a diffusers VAE from a local folder or the hub cache (``subfolder="vae"`` for a full pipeline)."""
        AutoencoderKL = _import_autoencoder_kl()
        vae = AutoencoderKL.from_pretrained(name_or_path, subfolder=subfolder, **kwargs)
        return cls(vae=vae, image_size=image_size)

    def arch_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (the diffusers config, image size, scale)."""
        cfg = {k: v for k, v in dict(self.vae.config).items() if not k.startswith("_")}
        return {"vae_config": _jsonable(cfg), "image_size": list(self.spec.image_size), "scale": self.spec.scale}

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> scaled posterior means ``[N, h, w, c]``."""
        dist = self.vae.encode(images).latent_dist
        return rearrange(dist.mean, "n c h w -> n h w c") * self.spec.scale

    def decode_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[N, h, w, c]`` -> images ``[N, 3, H, W]``."""
        z = rearrange(tokens.float(), "n h w c -> n c h w") / self.spec.scale
        return self.vae.decode(z).sample
