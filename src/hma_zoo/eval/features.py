"""Feature networks for Frechet distances, and loaders for the standard LPIPS / FID / FVD networks.

Nothing can be downloaded on the machines this project targets, so:

* The default video distance (``own_fvd``) is a Frechet distance over features of a network the project trains
  itself: the tokenizer's encoder (:class:`TokenizerVideoFeatures`). It ranks models evaluated with the *same*
  tokenizer, and it is **not comparable to published FVD numbers** (those use an I3D network trained on Kinetics).
* :func:`load_lpips`, :func:`load_fid`, :func:`load_fvd` build the standard metrics only from weight files the user
  supplies; without a file they return ``None`` and log why the metric is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hma_zoo.eval.metrics import frechet_distance_from_features

log = logging.getLogger(__name__)

VideoFeatureFn = Callable[[torch.Tensor], torch.Tensor]


def _to_float_images(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, T, H, W, 3]`` -> float ``[N*T, 3, H, W]`` in ``[-1, 1]``."""
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"videos must be uint8 [N, T, H, W, 3], got {tuple(frames.shape)}")
    return frames.flatten(0, 1).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _clip_feature(per_frame: torch.Tensor) -> torch.Tensor:
    """Per-frame features ``[N, T, C]`` -> clip features ``[N, 2C]``: mean over time and mean absolute change
    between consecutive frames (so that a frozen video and a moving one differ)."""
    mean = per_frame.mean(1)
    motion = (per_frame[:, 1:] - per_frame[:, :-1]).abs().mean(1) if per_frame.shape[1] > 1 else torch.zeros_like(mean)
    return torch.cat((mean, motion), dim=-1)


class TokenizerVideoFeatures(nn.Module):
    """Clip features from a trained tokenizer's encoder, pooled over space and time.

    The encoder's last hidden activation (before its output projection, when the encoder exposes ``norm_out`` as the
    zoo's :class:`~hma_zoo.tokenizers.nets.Encoder` does; else the encoder output) is averaged over space per frame
    (``[N, T, C]``), then :func:`_clip_feature` adds the mean temporal change. Output ``[N, 2C]``.

    Args:
        tokenizer: a zoo tokenizer with an ``encoder`` module.
        batch_frames: frames encoded per forward pass.
    """

    def __init__(self, tokenizer: nn.Module, batch_frames: int = 256) -> None:
        super().__init__()
        encoder = getattr(tokenizer, "encoder", None)
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"{type(tokenizer).__name__} has no `encoder` module; use PixelVideoFeatures instead")
        self.encoder = encoder
        self.batch_frames = batch_frames
        self._captured: torch.Tensor | None = None
        hook_on = getattr(encoder, "norm_out", None)
        self._hooked = isinstance(hook_on, nn.Module)
        if self._hooked:
            hook_on.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self._captured = F.silu(output)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 videos ``[N, T, H, W, 3]`` -> features ``float32 [N, 2C]``."""
        n, t = frames.shape[:2]
        device = next(self.encoder.parameters()).device
        images = _to_float_images(frames)
        pooled = []
        for chunk in images.split(self.batch_frames):
            out = self.encoder(chunk.to(device))
            feat = self._captured if self._hooked and self._captured is not None else out
            pooled.append(feat.float().mean(dim=(-2, -1)).cpu())
        return _clip_feature(torch.cat(pooled).reshape(n, t, -1))


class PixelVideoFeatures(nn.Module):
    """Fallback features without any network: frames average-pooled to ``size x size`` RGB, flattened per frame,
    then :func:`_clip_feature`. Output ``[N, 2 * 3 * size^2]``. Used when the tokenizer has no encoder."""

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.size = size

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        n, t = frames.shape[:2]
        x = F.adaptive_avg_pool2d(_to_float_images(frames), self.size)
        return _clip_feature(x.reshape(n, t, -1))


def video_feature_fn(tokenizer: nn.Module | None) -> tuple[VideoFeatureFn, str]:
    """The project's own video feature network for ``tokenizer`` and a short description of it."""
    if tokenizer is not None and isinstance(getattr(tokenizer, "encoder", None), nn.Module):
        name = getattr(tokenizer, "name", None) or type(tokenizer).__name__
        return TokenizerVideoFeatures(tokenizer), f"tokenizer encoder features ({name}), space-time pooled"
    return PixelVideoFeatures(), "8x8 average-pooled pixels (no tokenizer encoder available)"


def own_fvd(real: torch.Tensor, fake: torch.Tensor, features: VideoFeatureFn) -> float:
    """Frechet distance between clip features of ``real`` and ``fake`` videos (uint8 ``[N, T, H, W, 3]``, N >= 2).

    NOT comparable to published FVD: the feature network is the project's own (see module docstring).
    """
    return frechet_distance_from_features(features(real), features(fake))


# --------------------------------------------------------------------------------- standard networks (optional)
def _skip(metric: str, why: str) -> None:
    log.warning("%s skipped: %s", metric, why)


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth`` weights file (``.pth`` read with ``weights_only=True``)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_lpips(alexnet_weights: str | Path | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """LPIPS (AlexNet, Zhang et al. 2018) from a user-supplied torchvision AlexNet weights file.

    The LPIPS linear heads ship inside torchmetrics; only the ImageNet AlexNet backbone is missing offline. Pass the
    torchvision ``alexnet-owt-7be5be79.pth`` (or a ``.safetensors`` of the same state dict). Returns a function of two
    uint8 frame tensors ``[..., H, W, 3]`` -> per-frame LPIPS ``[...]`` (lower is better), or ``None`` when no file is
    given (logged).
    """
    if alexnet_weights is None:
        _skip("LPIPS", "it needs the ImageNet AlexNet weights, which cannot be downloaded here; pass "
              "--lpips-weights PATH (torchvision alexnet-owt-7be5be79.pth)")
        return None
    path = Path(alexnet_weights)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS backbone weights {path} not found")
    from torchmetrics.functional.image.lpips import _LPIPS

    net = _LPIPS(pretrained=True, net="alex", pnet_rand=True).eval()
    state = _load_state(path)
    for slice_name, sl in net.net.named_children():
        for idx, layer in sl.named_children():
            for pname, p in layer.named_parameters():
                key = f"features.{idx}.{pname}"
                if key not in state:
                    raise KeyError(f"{path} is not a torchvision AlexNet state dict (missing {key!r}, {slice_name})")
                p.data.copy_(state[key])

    @torch.no_grad()
    def lpips(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        lead = pred.shape[:-3]
        x = pred.reshape(-1, *pred.shape[-3:]).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        y = target.reshape(-1, *target.shape[-3:]).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        return net(x, y).reshape(lead)

    return lpips


def load_fid(inception_weights: str | Path | None) -> nn.Module | None:
    """torchmetrics ``FrechetInceptionDistance`` built from a user-supplied Inception weights file (the
    ``pt_inception-2015-12-05`` file of torch-fidelity / pytorch-fid), or ``None`` (logged) without one."""
    if inception_weights is None:
        _skip("FID", "it needs the Inception-v3 FID weights, which cannot be downloaded here; pass their file")
        return None
    if not Path(inception_weights).is_file():
        raise FileNotFoundError(f"FID Inception weights {inception_weights} not found")
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        return FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(inception_weights))
    except (ImportError, ModuleNotFoundError) as exc:
        _skip("FID", f"{exc}; install torch-fidelity (`pip install torch-fidelity`)")
        return None


def load_fvd(i3d_torchscript: str | Path | None) -> VideoFeatureFn | None:
    """Standard FVD features from a user-supplied TorchScript I3D (the ``i3d_torchscript.pt`` used by StyleGAN-V
    and most FVD code), or ``None`` (logged) without one.

    Returns a function: uint8 videos ``[N, T, H, W, 3]`` -> I3D features ``[N, 400]``; combine two feature sets with
    :func:`hma_zoo.eval.metrics.frechet_distance_from_features`. Note: a TorchScript archive is code, so load only a
    file you trust.
    """
    if i3d_torchscript is None:
        _skip("FVD (I3D)", "it needs the I3D TorchScript weights, which cannot be downloaded here; pass their "
              "file (i3d_torchscript.pt). The project's own-feature distance is reported instead")
        return None
    if not Path(i3d_torchscript).is_file():
        raise FileNotFoundError(f"FVD I3D weights {i3d_torchscript} not found")
    detector = torch.jit.load(str(i3d_torchscript), map_location="cpu").eval()

    @torch.no_grad()
    def features(videos: torch.Tensor) -> torch.Tensor:
        x = videos.permute(0, 4, 1, 2, 3).float()  # [N, 3, T, H, W] in [0, 255]
        return detector(x, rescale=True, resize=True, return_features=True).float()

    return features
