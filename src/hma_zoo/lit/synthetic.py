"""A tiny, deterministic, action-controlled video DataModule for debugging training (no files, no simulator).

Each embodiment moves a coloured square on a black canvas; its action is the square's velocity per control step,
and ``stride`` control steps pass between two frames (so embodiments differ in action width and frequency, as
in real heterogeneous data). Frames depend on the actions, so a world model trained on it becomes controllable
(delta-PSNR > 0). Batches follow the data contract of :class:`hma_zoo.data.HMADataModule`::

    {"frames": uint8 [B,T,H,W,3], "actions": float32 [B,T,A_max], "action_valid": bool [B,T],
     "embodiment": list[str], "episode_id": list[str]}

Used by ``recipes/debug.yaml`` and the training tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from hma_zoo.configs import EmbodimentSpec

_COLOURS = ((255, 80, 80), (80, 255, 80), (80, 120, 255), (255, 220, 60), (220, 80, 255), (60, 230, 230))
_UNIFORM_STD = 1.0 / 3**0.5  # std of U(-1, 1)


def default_embodiments() -> tuple[EmbodimentSpec, ...]:
    """Two synthetic robots: 2-D velocity at stride 1 and at stride 2 (chunk width 4)."""
    stats = {"action_mean": (0.0, 0.0), "action_std": (_UNIFORM_STD, _UNIFORM_STD)}
    return (EmbodimentSpec("square_s1", action_dim=2, stride=1, **stats),
            EmbodimentSpec("square_s2", action_dim=2, stride=2, **stats))


class SquareDataset(Dataset):
    """``length`` deterministic windows (sample ``i`` is seeded by ``seed + i``), embodiments in turn."""

    def __init__(self, embodiments: Sequence[EmbodimentSpec], length: int, window: int,
                 image_size: tuple[int, int], square: int, speed: float, seed: int) -> None:
        self.embodiments = tuple(embodiments)
        self.length, self.window, self.image_size = length, window, tuple(image_size)
        self.square, self.speed, self.seed = square, speed, seed
        self.a_max = max(e.chunk_dim for e in self.embodiments)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        gen = torch.Generator().manual_seed(self.seed + i)
        e_idx = i % len(self.embodiments)
        emb = self.embodiments[e_idx]
        h, w = self.image_size
        t, s, d = self.window, emb.stride, emb.action_dim
        act = torch.rand(t * s, d, generator=gen) * 2 - 1  # control-step velocities in [-1, 1]
        pos = torch.rand(2, generator=gen) * torch.tensor([h - self.square, w - self.square], dtype=torch.float32)
        frames = torch.zeros(t, h, w, 3, dtype=torch.uint8)
        colour = torch.tensor(_COLOURS[e_idx % len(_COLOURS)], dtype=torch.uint8)
        limit = torch.tensor([h - self.square, w - self.square], dtype=torch.float32)
        for f in range(t):
            y, x = (int(v) for v in pos.round())
            frames[f, y : y + self.square, x : x + self.square] = colour
            for step in range(s):  # the actions executed after frame f
                pos = (pos + self.speed * act[f * s + step, :2]).clamp(torch.zeros(2), limit)
        actions = torch.zeros(t, self.a_max)
        actions[:, : s * d] = act.reshape(t, s * d)
        return {"frames": frames, "actions": actions, "action_valid": torch.ones(t, dtype=torch.bool),
                "embodiment": emb.name, "episode_id": f"synthetic-{self.seed + i}"}


class SyntheticDataModule(L.LightningDataModule):
    """Moving-square videos for debugging and tests (see the module docstring).

    Args:
        embodiments: robots to simulate (default: :func:`default_embodiments`); given as specs or dicts.
        window: frames per sample ``T``.
        image_size: ``(H, W)``.
        train_size, val_size: samples per split (validation uses different seeds).
        batch_size, num_workers: DataLoader settings.
        square: side of the square in pixels.
        speed: pixels moved per control step at action 1.
        seed: base seed (sample ``i`` of train uses ``seed + i``).
    """

    def __init__(self, embodiments: Sequence[EmbodimentSpec] | None = None, window: int = 4,
                 image_size: tuple[int, int] = (64, 64), train_size: int = 256, val_size: int = 32,
                 batch_size: int = 8, num_workers: int = 0, square: int = 16, speed: float = 6.0,
                 seed: int = 0) -> None:
        super().__init__()
        embs = embodiments if embodiments else default_embodiments()
        self._embodiments = tuple(e if isinstance(e, EmbodimentSpec) else EmbodimentSpec(**e) for e in embs)
        self.window, self._image_size = int(window), (int(image_size[0]), int(image_size[1]))
        self.train_size, self.val_size = train_size, val_size
        self.batch_size, self.num_workers = batch_size, num_workers
        self.square, self.speed, self.seed = square, speed, seed

    @property
    def embodiments(self) -> tuple[EmbodimentSpec, ...]:
        return self._embodiments

    @property
    def max_chunk_dim(self) -> int:
        return max(e.chunk_dim for e in self._embodiments)

    @property
    def image_size(self) -> tuple[int, int]:
        return self._image_size

    def _dataset(self, length: int, seed: int) -> SquareDataset:
        return SquareDataset(self._embodiments, length, self.window, self._image_size, self.square, self.speed, seed)

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=shuffle, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._dataset(self.train_size, self.seed), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset(self.val_size, self.seed + 1_000_000), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset(self.val_size, self.seed + 2_000_000), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
