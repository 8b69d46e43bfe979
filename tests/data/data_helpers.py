"""Small synthetic episodes for the data tests (no simulator)."""

from __future__ import annotations

import numpy as np

from hma_zoo.data.schema import EmbodimentInfo, Episode

ARM = EmbodimentInfo("arm", action_dim=2, control_hz=10.0, frame_hz=5.0, action_names=("x", "y"))  # stride 2
CART = EmbodimentInfo("cart", action_dim=1, control_hz=4.0, frame_hz=4.0)  # stride 1


def make_episode(ep_id: str, emb: EmbodimentInfo, num_frames: int, seed: int = 0, extra_chunk: bool = False,
                 size: int = 8) -> Episode:
    """Episode whose frame i is filled with value (i % 250) and whose action row k is (k, k + 0.5, ...)."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((num_frames, size, size, 3), np.uint8)
    frames += (np.arange(num_frames) % 250).astype(np.uint8)[:, None, None, None]
    frames[:, 0, 0, 0] = rng.integers(0, 255, num_frames)
    k = (num_frames - 1 + int(extra_chunk)) * emb.stride
    actions = (np.arange(k)[:, None] + 0.5 * np.arange(emb.action_dim)[None]).astype(np.float32)
    return Episode(ep_id, emb.name, actions, frames=frames, proprio=rng.normal(size=(num_frames, 3)).astype(np.float32),
                   reward=rng.normal(size=k).astype(np.float32), success=np.zeros(k, bool), meta={"seed": seed})
