"""A tiny world for the demo tests: a random ``hma-vq-test`` (weights perturbed so that actions matter) that knows
``pusht`` (the packaged example prompt) and ``arm`` (3-D actions, stride 2, a synthetic prompt)."""

from __future__ import annotations

import numpy as np
import torch

import hma_zoo
from hma_zoo.configs import EmbodimentSpec, TokenSpec
from hma_zoo.demo.prompts import ExamplePrompt, load_examples
from hma_zoo.demo.session import DemoConfig, ModelStore, SessionManager
from hma_zoo.tokenizers.base import Tokenizer, TokenizerSpec

TOKENS = TokenSpec(kind="vq", grid=(8, 8), vocab_size=16, factor_sizes=(4, 4))


class Gray16Tokenizer(Tokenizer):
    """uint8 8x8 frames <-> ids ``[B, T, 8, 8]`` in ``0..15`` (16 grey levels): exact, free, 16 values per token."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = TokenizerSpec(kind="vq", image_size=(8, 8), downsample=1, vocab_size=16, factor_sizes=(4, 4))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return ((images.mean(1) + 1) * 8).floor().clamp(0, 15).long()

    def decode_images(self, tokens: torch.Tensor) -> torch.Tensor:
        return ((tokens.float() + 0.5) / 8 - 1).unsqueeze(1).expand(-1, 3, -1, -1)

PUSHT = EmbodimentSpec("pusht", action_dim=2, stride=1, action_mean=(250.0, 250.0), action_std=(120.0, 120.0))
ARM = EmbodimentSpec("arm", action_dim=3, stride=2)


def tiny_world(seed: int = 0, predict_actions: bool = True) -> tuple[torch.nn.Module, Gray16Tokenizer]:
    """A random 8x8-token world model (16 values a token) over :data:`PUSHT` and :data:`ARM`, and its tokenizer."""
    torch.manual_seed(seed)
    model = hma_zoo.create_model("hma-vq-test", embodiments=[PUSHT, ARM], tokens=TOKENS,
                                 conditioning={"mode": "add", "action_dropout": 0.0},
                                 trunk={"d_model": 32, "depth": 2, "num_heads": 2, "max_frames": 4},
                                 predict_actions=predict_actions)
    with torch.no_grad():  # zero-initialised paths (adaLN, heads) would make actions a no-op
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return model.eval(), Gray16Tokenizer()


def arm_prompt() -> ExamplePrompt:
    """A synthetic 4-frame ``arm`` episode (noise frames, 40 control steps of actions in [-1, 1])."""
    rng = np.random.default_rng(0)
    return ExamplePrompt("arm", frames=rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8),
                         actions=rng.uniform(-1, 1, (40, 3)).astype(np.float32), frame_hz=20.0, stride=2,
                         low=-np.ones(3, np.float32), high=np.ones(3, np.float32), action_names=("x", "y", "z"),
                         source="synthetic")


def tiny_manager(**config: object) -> SessionManager:
    """A session manager serving the tiny world as model ``tiny`` (and ``tiny-no-policy``, without action heads)."""
    worlds = {"tiny": lambda: tiny_world(), "tiny-no-policy": lambda: tiny_world(predict_actions=False)}
    store = ModelStore(list(worlds), loader=lambda name: worlds[name]())
    examples = {"pusht": load_examples()["pusht"], "arm": arm_prompt()}
    return SessionManager(DemoConfig(default_model="tiny", models=tuple(worlds), **config), store=store,
                          examples=examples)
