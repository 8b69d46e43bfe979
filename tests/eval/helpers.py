"""Tiny synthetic world for evaluation tests: a 4x4 square on an 8x8 image that actions move.

* :class:`PixelClassTokenizer`: the identity "tokenizer": ids are pixel classes (0 = black, 1 = white) of an 8x8
  frame, so a ``vq`` world model can be trained on the token grid directly and decoded exactly.
* :func:`square_videos`: tokens and actions; action ``(ax, ay)`` puts the square at one of 5x5 positions (the action
  is an absolute target, as in Push-T), so the next frame is a deterministic function of the action. Absolute
  targets are learnable by a 2-block model in a few seconds; relative moves need more depth and steps.
* :func:`train_tiny`: a few seconds of training of ``hma-vq-test`` on those tokens.
"""

from __future__ import annotations

import torch

import hma_zoo
from hma_zoo.configs import EmbodimentSpec, TokenSpec
from hma_zoo.tokenizers.base import Tokenizer, TokenizerSpec

SIZE = 8
SIDE = 4
LOSSES: list[float] = []  # training losses of the last train_tiny call (for checks)
EMB = EmbodimentSpec("square", action_dim=2, stride=1, action_mean=(0.0, 0.0), action_std=(1.0, 1.0))
TOKENS = TokenSpec(kind="vq", grid=(SIZE, SIZE), vocab_size=2, factor_sizes=(2,))


class PixelClassTokenizer(Tokenizer):
    """uint8 8x8 frames <-> ids ``[B, T, 8, 8]`` in {0, 1} (brightness above / below the middle)."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = TokenizerSpec(kind="vq", image_size=(SIZE, SIZE), downsample=1, vocab_size=2, factor_sizes=(2,))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return (images.mean(1) > 0).long()

    def decode_images(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens.float() * 2 - 1).unsqueeze(1).expand(-1, 3, -1, -1)


def move(action: torch.Tensor) -> torch.Tensor:
    """Actions ``[B, 2]`` -> square positions ``[B, 2]`` (x, y) in ``0..4``: ``clamp(floor(1.25 a + 2.5), 0, 4)``."""
    return (action * 1.25 + 2.5).floor().clamp(0, SIZE - SIDE).long()


def render(pos: torch.Tensor) -> torch.Tensor:
    """Token grids ``[B, 8, 8]`` with a 4x4 square of ones whose top-left corner is ``pos`` (x, y)."""
    b = pos.shape[0]
    grid = torch.zeros(b, SIZE, SIZE, dtype=torch.long)
    for dy in range(SIDE):
        for dx in range(SIDE):
            grid[torch.arange(b), pos[:, 1] + dy, pos[:, 0] + dx] = 1
    return grid


def square_videos(batch: int, frames: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``[B, T, 8, 8]`` and actions ``[B, T, 2]`` (row ``t`` executed after frame ``t``)."""
    pos = torch.randint(0, SIZE - SIDE + 1, (batch, 2), generator=generator)
    actions = torch.randn(batch, frames, 2, generator=generator)
    grids = []
    for t in range(frames):
        grids.append(render(pos))
        pos = move(actions[:, t])
    return torch.stack(grids, 1), actions


def frames_from_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Ids ``[B, T, 8, 8]`` -> uint8 frames ``[B, T, 8, 8, 3]`` (what PixelClassTokenizer decodes to)."""
    return (tokens * 255).to(torch.uint8).unsqueeze(-1).expand(*tokens.shape, 3).contiguous()


def make_model(conditioned: bool = True, seed: int = 0) -> torch.nn.Module:
    """A fresh ``hma-vq-test`` on the 8x8 binary grid (action-free when ``conditioned`` is False)."""
    torch.manual_seed(seed)
    # "add" conditioning learns this mapping within ~150 steps; concat+adaln needs several times more.
    cond = {"mode": "add", "action_dropout": 0.0} if conditioned else {"mode": "none"}
    return hma_zoo.create_model("hma-vq-test", embodiments=[EMB], tokens=TOKENS, conditioning=cond,
                                trunk={"d_model": 32, "depth": 2, "num_heads": 2, "max_frames": 4},
                                predict_actions=False, label_smoothing=0.0)


def train_tiny(conditioned: bool, steps: int = 150, seed: int = 0, batch: int = 16) -> torch.nn.Module:
    """Train ``make_model(conditioned)`` on next-frame prediction of the square world (a few seconds on a CPU)."""
    model = make_model(conditioned, seed)
    LOSSES.clear()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        tokens, actions = square_videos(batch, 3, g)
        # hide every frame after the first entirely (what the first MaskGIT step sees) or most of it
        ratio = torch.rand(batch, 1, 1, 1, generator=g) * 0.5 + 0.6
        mask = torch.rand(tokens.shape, generator=g) < ratio
        mask[:, 0] = False
        loss = model.compute_loss(tokens, actions, ["square"] * batch, mask)["loss"]
        LOSSES.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
