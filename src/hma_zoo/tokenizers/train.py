"""Tokenizer training on frames held in memory, and evaluation: used by the quickstart, ``new-robot`` and reports.

::

    from hma_zoo.tokenizers.train import train_tokenizer
    tok = train_tokenizer("tok-vq-f8-1k", "data/sim-mix-mini", steps=2000, out_dir="outputs/tokenizers/tok-vq-f8-1k")

:func:`train_tokenizer` is a Lightning ``Trainer`` fitting :class:`hma_zoo.lit.tokenizer.TokenizerLitModule` (the
one tokenizer training step, also run by ``hma-zoo fit --config recipes/tokenizer/...``) on a :class:`FramePool`.

Frames come from :func:`load_frames`: a folder of ``*.npz`` arrays (``train`` / ``val`` keys, uint8
``[..., H, W, 3]``, one file per embodiment) or an episode-shard dataset read through
:mod:`hma_zoo.data.shards` (``manifest.json`` + WebDataset shards). The whole sample is held in memory
(64x64 frames: 12 KiB each).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import track

from hma_zoo import hub
from hma_zoo.eval.metrics import psnr
from hma_zoo.tokenizers import Tokenizer
from hma_zoo.tokenizers.losses import codebook_usage, ssim

log = logging.getLogger(__name__)


def _to_images(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float ``[N, 3, H, W]`` in [-1, 1]."""
    return frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def image_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR ``[N]`` in dB of images ``[N, 3, H, W]`` in ``[-1, 1]`` (clamped to it), through the project's one
    PSNR :func:`hma_zoo.eval.metrics.psnr` (data range 2; identical images read 100 dB)."""
    return psnr(pred.detach().float().clamp(-1, 1).permute(0, 2, 3, 1),
                target.detach().float().clamp(-1, 1).permute(0, 2, 3, 1), data_range=2.0)


def _episodes_from_shards(data_dir: str, split: str) -> dict[str, list[np.ndarray]]:
    from hma_zoo.data.shards import ShardExpectation, iter_episodes, join, load_manifest  # lazy: optional package

    manifest = load_manifest(data_dir)
    out: dict[str, list[np.ndarray]] = {}
    shards = [s for s in manifest["shards"] if s.get("split") == split]
    if not shards:
        raise KeyError(f"{data_dir} has no {split!r} shards")
    for shard in track(shards, description=f"read {split} frames", transient=True):
        expect = ShardExpectation.from_manifest(manifest, shard)
        for ep in iter_episodes(join(str(data_dir), shard["path"]), expect=expect):
            if ep.frames is None:
                raise ValueError(f"{data_dir} holds token shards; tokenizers train on episode (frame) shards")
            out.setdefault(ep.embodiment, []).append(ep.frames)
    return out


def load_episode_frames(data_dir: str | os.PathLike, split: str = "train") -> dict[str, list[np.ndarray]]:
    """Frames per embodiment and episode, uint8 ``[T, H, W, 3]`` each, in time order (for :func:`motion_masks`).

    An episode-shard dataset gives its episodes; a ``<embodiment>.npz`` array ``[E, T, H, W, 3]`` gives ``E``
    episodes, and a flat ``[N, H, W, 3]`` array one sequence.
    """
    root = Path(data_dir)
    if not root.exists():
        raise FileNotFoundError(f"data folder {root} does not exist; build it with `hma-zoo data build` first")
    npz = sorted(root.glob("*.npz"))
    if not npz:
        return _episodes_from_shards(str(root), split)
    out = {}
    for path in npz:
        with np.load(path) as arrays:
            if split not in arrays:
                raise KeyError(f"{path} has no {split!r} array (has {list(arrays)})")
            arr = arrays[split]
        out[path.stem] = list(arr.reshape(-1, *arr.shape[-4:])) if arr.ndim >= 5 else [arr]
    return out


def motion_masks(episode: np.ndarray | torch.Tensor, threshold: int = 12, dilate: int = 1) -> torch.Tensor:
    """Pixels that move: bool ``[T, H, W]`` for frames uint8 ``[T, H, W, 3]`` of one episode in time order.

    A pixel is marked when any channel differs by more than ``threshold`` (of 255) from the previous or the next
    frame, then the marks are grown by ``dilate`` pixels. In a fixed-camera scene that is the robot and the
    objects it pushes, both where they were and where they went: the content an action-conditioned world model
    needs and a reconstruction loss averaged over a mostly static frame neglects (the 2-pixel Push-T agent).
    """
    x = torch.as_tensor(np.asarray(episode)).to(torch.int16)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"motion_masks takes one episode of frames [T, H, W, 3], got {tuple(x.shape)}")
    moved = torch.zeros(x.shape[:3], dtype=torch.bool)
    if x.shape[0] > 1:
        d = (x[1:] - x[:-1]).abs().amax(-1) > threshold  # [T-1, H, W]: changed between t and t+1
        moved[1:] |= d
        moved[:-1] |= d
    if dilate > 0:
        k = 2 * dilate + 1
        moved = torch.nn.functional.max_pool2d(moved[:, None].float(), k, stride=1, padding=dilate)[:, 0] > 0
    return moved


def load_frames(
    data_dir: str | os.PathLike, split: str = "train", max_frames: int | None = None
) -> dict[str, torch.Tensor]:
    """Frames per embodiment, uint8 ``[N, H, W, 3]``, from ``data_dir``.

    Args:
        data_dir: a folder of ``<embodiment>.npz`` files (arrays keyed by split) or an episode-shard dataset.
        split: ``"train"`` or ``"val"``.
        max_frames: cap on frames per embodiment (evenly strided over the split), ``None`` for all.
    """
    episodes = load_episode_frames(data_dir, split)
    out = {k: torch.from_numpy(np.concatenate([np.asarray(e) for e in v])) for k, v in episodes.items()}
    if max_frames is not None:
        out = {k: v[:: max(1, math.ceil(v.shape[0] / max_frames))][:max_frames] for k, v in out.items()}
    return out


@torch.no_grad()
def evaluate_tokenizer(
    tokenizer: Tokenizer, frames: Mapping[str, torch.Tensor], batch_size: int = 128
) -> dict[str, dict[str, float]]:
    """Reconstruction PSNR / SSIM (mean over frames) per embodiment and overall, plus codebook usage (vq).

    Args:
        tokenizer: any zoo tokenizer.
        frames: embodiment -> uint8 ``[N, H, W, 3]``.

    Returns:
        ``{embodiment: {"psnr", "ssim", "frames"[, "usage", "perplexity"]}, "all": {...}}``.
    """
    was_training = tokenizer.training
    tokenizer.eval()
    results: dict[str, dict[str, float]] = {}
    vocab = tokenizer.spec.vocab_size if tokenizer.spec.kind == "vq" else 0
    all_counts = torch.zeros(vocab, dtype=torch.long)
    all_p, all_s = [], []
    for emb, f in frames.items():
        counts = torch.zeros(vocab, dtype=torch.long)
        ps, ss = [], []
        for i in range(0, f.shape[0], batch_size):
            chunk = f[i : i + batch_size].unsqueeze(1)
            tokens = tokenizer.encode(chunk)
            recon = tokenizer.decode(tokens)
            x, y = _to_images(chunk), _to_images(recon.cpu())
            ps.append(image_psnr(y, x))
            ss.append(ssim(y, x))
            if vocab:
                counts += torch.bincount(tokens.flatten().cpu(), minlength=vocab)
        p, s = torch.cat(ps), torch.cat(ss)
        all_p.append(p)
        all_s.append(s)
        results[emb] = {"psnr": float(p.mean()), "ssim": float(s.mean()), "frames": float(p.numel())}
        if vocab:
            results[emb].update(codebook_usage(counts))
            all_counts += counts
    p, s = torch.cat(all_p), torch.cat(all_s)
    results["all"] = {"psnr": float(p.mean()), "ssim": float(s.mean()), "frames": float(p.numel())}
    if vocab:
        results["all"].update(codebook_usage(all_counts))
    tokenizer.train(was_training)
    return results


class FramePool(torch.utils.data.Dataset):
    """Frames in memory, fetched a whole batch at a time: ``pool[idx]`` for a list of ``B`` indices is the batch
    ``{"frames": uint8 [B, 1, H, W, 3], "embodiment": [str] * B[, "motion": bool [B, 1, H, W]]}`` that
    :class:`hma_zoo.lit.tokenizer.TokenizerLitModule` trains on (one frame per sample).

    Args:
        frames: uint8 ``[N, H, W, 3]``.
        moving: optional motion mask ``[N, H, W]`` (:func:`motion_masks`) of the same frames.
        names: the embodiment of each frame (``N`` names), for per-embodiment logging.
    """

    def __init__(self, frames: torch.Tensor, moving: torch.Tensor | None = None,
                 names: list[str] | None = None) -> None:
        self.frames, self.moving = frames, moving
        self.names = names if names is not None else ["?"] * frames.shape[0]

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def __getitem__(self, idx: list[int] | torch.Tensor) -> dict[str, Any]:
        idx = torch.as_tensor(idx, dtype=torch.long)
        batch: dict[str, Any] = {"frames": self.frames[idx].unsqueeze(1),
                                 "embodiment": [self.names[i] for i in idx.tolist()]}
        if self.moving is not None:
            batch["motion"] = self.moving[idx].unsqueeze(1)
        return batch


class UniformBatches(torch.utils.data.Sampler):
    """``steps`` batches of ``batch_size`` indices drawn uniformly (with replacement) from ``range(n)``, from a
    generator seeded with ``seed``: the same draws on every run, independent of the model's random stream."""

    def __init__(self, n: int, batch_size: int, steps: int, seed: int = 0) -> None:
        self.n, self.batch_size, self.steps, self.seed = int(n), int(batch_size), int(steps), int(seed)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Any:
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.steps):
            yield torch.randint(0, self.n, (self.batch_size,), generator=gen)


def _training_pool(
    data_dir: str | os.PathLike | None, frames: Mapping[str, torch.Tensor] | None, motion_weight: float
) -> FramePool:
    """All training frames of ``data_dir`` (or ``frames``) in one :class:`FramePool`, with motion masks when
    ``motion_weight > 0``."""
    moving: torch.Tensor | None = None
    if frames is None:
        if data_dir is None:
            raise ValueError("train_tokenizer needs data_dir or frames")
        episodes = load_episode_frames(data_dir, "train")
        frames = {k: torch.from_numpy(np.concatenate(v)) for k, v in episodes.items()}
        if motion_weight > 0:
            moving = torch.cat([motion_masks(e) for v in episodes.values() for e in v])
    elif motion_weight > 0:
        moving = torch.cat([motion_masks(f.reshape(-1, *f.shape[-3:])) for f in frames.values()])
    flat = {k: f.reshape(-1, *f.shape[-3:]) for k, f in frames.items()}
    pool = torch.cat(list(flat.values()))
    if pool.dtype != torch.uint8 or pool.shape[-1] != 3:
        raise ValueError(f"training frames must be uint8 [..., H, W, 3], got {pool.dtype} {tuple(pool.shape)}")
    if moving is not None:
        log.info("motion weighting: %.1f%% of training pixels move (weight %.1f)",
                 100 * float(moving.float().mean()), 1 + motion_weight)
    return FramePool(pool, moving, [k for k, f in flat.items() for _ in range(f.shape[0])])


def train_tokenizer(
    name: str,
    data_dir: str | os.PathLike | None,
    steps: int,
    *,
    frames: Mapping[str, torch.Tensor] | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    warmup_steps: int = 100,
    weight_decay: float = 0.0,
    loss: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    out_dir: str | os.PathLike | None = None,
    val_frames: int | None = 256,
    time_limit_s: float | None = None,
    seed: int = 0,
    progress: bool = True,
    num_threads: int | None = None,
    init_from: str | os.PathLike | None = None,
    motion_weight: float = 0.0,
    accelerator: str = "cpu",
) -> Tokenizer:
    """Train tokenizer ``name`` on the frames of ``data_dir`` held in memory and return it (saved to ``out_dir`` if
    given): a Lightning ``Trainer`` fitting :class:`hma_zoo.lit.tokenizer.TokenizerLitModule` on a
    :class:`FramePool`, so this and ``hma-zoo fit --config recipes/tokenizer/...`` share one training step.

    Args:
        name: registry name, e.g. ``"tok-vq-f8-1k"`` or ``"tok-kl-f8-c4"``.
        data_dir: dataset folder (see :func:`load_frames`); ignored when ``frames`` is given.
        steps: optimiser steps (cosine decay to 10% after ``warmup_steps`` of linear warm-up; with
            ``time_limit_s`` the decay follows whichever of steps and time runs out first).
        frames: embodiment -> uint8 ``[N, H, W, 3]`` training frames, instead of ``data_dir``.
        batch_size: images per step (drawn uniformly from all frames, with replacement).
        lr, weight_decay: AdamW settings.
        loss: keyword arguments of :class:`~hma_zoo.tokenizers.losses.TokenizerLoss` (weights, adversarial).
        overrides: constructor overrides of the tokenizer (e.g. ``{"vocab_size": 2**14}``).
        out_dir: if given, the trained tokenizer is written there with :func:`hma_zoo.hub.save_pretrained`,
            with validation metrics in ``meta`` (``data_dir``'s ``val`` split, ``val_frames`` per embodiment).
        time_limit_s: stop early after this many seconds (the schedule still assumes ``steps``).
        seed: seed of initialisation and batch sampling.
        progress: show a progress bar.
        num_threads: torch intra-op threads while training (``1`` is much faster than oversubscribing a busy
            machine: on a loaded 2-core CPU one step took 0.04 s with 1 thread and 4-7 s with 2).
        init_from: continue from a saved tokenizer folder (its architecture wins over ``name``'s defaults and
            ``overrides``; a KL tokenizer's scale is re-fitted at the end).
        motion_weight: extra weight of the pixels that move between frames (:func:`motion_masks`) in the L1 / L2
            terms: a moving pixel counts ``1 + motion_weight`` times. Needs episodes in time order (``data_dir``,
            or ``frames`` given as consecutive frames of one sequence per embodiment).
        accelerator: Lightning accelerator (``"cpu"``, ``"gpu"``, ``"auto"``).

    Returns:
        The trained tokenizer (eval mode); ``tokenizer.train_metrics`` holds the final running losses, steps and
        seconds, and ``tokenizer.val_metrics`` the validation figures when ``out_dir`` was given.
    """
    import lightning.pytorch as pl

    from hma_zoo.lit.tokenizer import TokenizerLitModule

    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        pool = _training_pool(data_dir, frames, motion_weight)
        image_size = tuple(pool.frames.shape[1:3])
        torch.manual_seed(seed)  # the initial weights
        module = TokenizerLitModule(
            tokenizer=name, tokenizer_overrides={"image_size": list(image_size), **(overrides or {})}, lr=lr,
            weight_decay=weight_decay, warmup_steps=warmup_steps, frames_per_sample=None, log_images_every_n_steps=0,
            motion_weight=motion_weight, init_from=None if init_from is None else str(init_from),
            time_limit_s=time_limit_s, **(loss or {}),
        )
        tok = module.tokenizer
        if tuple(tok.spec.image_size) != image_size:
            raise ValueError(f"{init_from or name} takes {tok.spec.image_size} frames, the data has {image_size}")
        # its own generator: the loader then draws nothing from the global stream the model's sampling uses
        loader = torch.utils.data.DataLoader(pool, sampler=UniformBatches(len(pool), batch_size, steps, seed),
                                             batch_size=None, generator=torch.Generator().manual_seed(seed))
        callbacks = []
        if progress:
            from lightning.pytorch.callbacks import RichProgressBar

            callbacks.append(RichProgressBar(leave=False))
        trainer = pl.Trainer(accelerator=accelerator, devices=1, max_steps=steps, max_epochs=1, logger=False,
                             enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
                             callbacks=callbacks, log_every_n_steps=max(1, min(50, steps)), limit_val_batches=0)
        trainer.fit(module, train_dataloaders=loader)
    finally:
        torch.set_num_threads(old_threads)
    tok = module.tokenizer.cpu().eval()
    tok.train_metrics = dict(module.train_metrics)  # type: ignore[attr-defined]
    if out_dir is not None:
        meta: dict[str, Any] = {"variant": name, "train": tok.train_metrics, "data_dir": str(data_dir),
                                "motion_weight": motion_weight, "batch_size": batch_size, "lr": lr,
                                "overrides": overrides or {}}
        if init_from is not None:
            prior = getattr(tok, "pretrained_meta", {})
            meta["continued_from"] = {"path": str(init_from), "train": prior.get("train"), "val": prior.get("val")}
        if data_dir is not None and val_frames != 0:
            try:
                val = load_frames(data_dir, "val", max_frames=val_frames)
                tok.val_metrics = evaluate_tokenizer(tok, val)  # type: ignore[attr-defined]
                meta["val"] = tok.val_metrics
            except (KeyError, FileNotFoundError) as err:
                log.warning("no validation split evaluated: %s", err)
        hub.save_pretrained(tok, out_dir, meta=meta)
        from hma_zoo.cards import write_card

        write_card(out_dir)  # the one card renderer: front matter, measured metrics
        log.info("saved %s to %s", name, out_dir)
    return tok
