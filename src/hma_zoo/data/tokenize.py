"""Pre-tokenise an episode dataset into token shards (``hma-zoo data tokenize``).

The output has the same layout, splits, embodiments and action statistics as the input; each sample holds
``tokens.npy`` instead of frames: ids ``[F, h, w]`` (stored as uint16 when the vocabulary fits, else int32) for
``vq`` tokenizers, latents ``[F, h, w, c]`` (float16) for continuous ones. ``manifest.json`` records the
tokenizer and its spec in ``token_info``. :class:`~hma_zoo.data.HMADataModule` then yields ``batch["tokens"]``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hma_zoo.data.schema import EmbodimentInfo, Episode
from hma_zoo.data.shards import MANIFEST, DatasetWriter, ShardExpectation, iter_episodes, join, load_manifest

log = logging.getLogger(__name__)


def _resolve(tokenizer: Any) -> tuple[Any, str]:
    from hma_zoo.tokenizers.base import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        return tokenizer, getattr(tokenizer, "name", type(tokenizer).__name__)
    from hma_zoo.tokenizers import load_tokenizer  # lazy: another package, heavier imports

    return load_tokenizer(str(tokenizer)), str(tokenizer)


@torch.no_grad()
def encode_frames(tokenizer: Any, frames: np.ndarray, batch_frames: int = 256, device: str = "cpu") -> np.ndarray:
    """Encode uint8 frames ``[F, H, W, 3]`` in batches of ``batch_frames`` -> tokens ``[F, ...]`` (numpy)."""
    out = []
    for i in range(0, frames.shape[0], batch_frames):
        x = torch.from_numpy(np.ascontiguousarray(frames[i:i + batch_frames]))[None].to(device)
        out.append(tokenizer.encode(x)[0].cpu().numpy())
    return np.concatenate(out)


def tokenize_dataset(data: str, tokenizer: Any, out: str | os.PathLike, batch_frames: int = 256,
                     device: str = "cpu", overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Write token shards of every episode of ``data`` with ``tokenizer`` (a Tokenizer, name or path).

    Returns the new manifest. The action statistics are copied from the source manifest.
    """
    from rich.progress import Progress

    manifest = load_manifest(data)
    if manifest["kind"] != "episodes":
        raise ValueError(f"{data} holds {manifest['kind']}, not episode (frame) shards; tokenize the frame dataset")
    tok, tok_name = _resolve(tokenizer)
    tok = tok.to(device).eval()
    spec = tok.spec
    if tuple(spec.image_size) != tuple(manifest["image_size"]):
        raise ValueError(f"tokenizer takes {tuple(spec.image_size)} frames but {data} has "
                         f"{tuple(manifest['image_size'])}; pick a tokenizer of the data's size")
    discrete = spec.kind == "vq"
    shape = list(spec.grid) + ([] if discrete else [spec.latent_channels])
    dtype = ("uint16" if spec.vocab_size <= 65536 else "int32") if discrete else "float16"
    token_info = {"kind": spec.kind, "shape": shape, "dtype": dtype, "tokenizer": tok_name, "spec": spec.to_dict()}
    out = Path(out)
    if (out / MANIFEST).exists():
        if not overwrite:
            raise FileExistsError(f"{out} already holds a dataset; pass overwrite=True (--overwrite)")
        shutil.rmtree(out)
    embodiments = [EmbodimentInfo.from_dict(e) for e in manifest["embodiments"].values()]
    writer = DatasetWriter(out, embodiments, image_size=tuple(manifest["image_size"]), kind="tokens",
                           token_info=token_info, episodes_per_shard=10**9)
    total = sum(len(s["episodes"]) for s in manifest["shards"])
    with Progress(disable=not progress) as bar:
        task = bar.add_task(f"tokenizing with {tok_name}", total=total)
        for shard in manifest["shards"]:
            for ep in iter_episodes(join(data, shard["path"]), expect=ShardExpectation.from_manifest(manifest, shard)):
                tokens = encode_frames(tok, ep.frames, batch_frames, device)
                writer.add(Episode(ep.episode_id, ep.embodiment, ep.actions, tokens=tokens, proprio=ep.proprio,
                                   reward=ep.reward, success=ep.success, meta=ep.meta.get("meta", {})),
                           split=shard["split"])
                bar.advance(task)
            writer._close_shards()  # one output shard per input shard
    # same actions and splits as the source, so the recomputed action statistics are the source's
    writer.close(extra={"name": manifest.get("name", ""), "source_dataset": str(data)})
    log.info("tokenized %d episodes of %s with %s -> %s", total, data, tok_name, out)
    return load_manifest(out)
