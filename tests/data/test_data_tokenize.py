import numpy as np
import pytest
import torch
from data_helpers import ARM, CART, make_episode

from hma_zoo.data.datamodule import HMADataModule
from hma_zoo.data.shards import DatasetWriter, load_manifest
from hma_zoo.data.tokenize import tokenize_dataset
from hma_zoo.tokenizers.base import Tokenizer, TokenizerSpec


class MeanPoolTokenizer(Tokenizer):
    """Test tokenizer: id of a 4x4 patch = its mean red value quantised to 16 levels (deterministic)."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = TokenizerSpec(kind="vq", image_size=(8, 8), downsample=4, vocab_size=16, factor_sizes=(4, 4))
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode_images(self, images):
        red = (images[:, 0] + 1) * 127.5  # [N, H, W] in 0..255
        pooled = torch.nn.functional.avg_pool2d(red[:, None], 4)[:, 0]
        return (pooled / 16).floor().long().clamp(0, 15)

    def decode_images(self, tokens):
        return (tokens.float() * 16 / 127.5 - 1)[:, None].repeat(1, 3, 4, 4)


@pytest.fixture()
def frames_dataset(tmp_path):
    with DatasetWriter(tmp_path / "ep", [ARM, CART], image_size=(8, 8)) as w:
        for i in range(3):
            w.add(make_episode(f"arm{i}", ARM, 7, seed=i))
        w.add(make_episode("cart0", CART, 6), split="val")
    return tmp_path


def test_tokenize_round_trip_and_datamodule(frames_dataset):
    tok = MeanPoolTokenizer()
    src = str(frames_dataset / "ep")
    manifest = tokenize_dataset(src, tok, frames_dataset / "tok", progress=False)
    assert manifest["kind"] == "tokens" and manifest["token_info"]["shape"] == [2, 2]
    assert manifest["embodiments"]["arm"]["action_stats"] == load_manifest(src)["embodiments"]["arm"]["action_stats"]
    dm_frames = HMADataModule(src, window=3, num_workers=0, train_mode="finite", batch_size=64)
    dm_tokens = HMADataModule(str(frames_dataset / "tok"), window=3, num_workers=0, train_mode="finite", batch_size=64)
    assert dm_tokens.embodiments == dm_frames.embodiments and dm_tokens.image_size == (8, 8)
    (bf,) = list(dm_frames.train_dataloader())
    (bt,) = list(dm_tokens.train_dataloader())
    assert "frames" not in bt and bt["tokens"].dtype == torch.int64 and bt["tokens"].shape[2:] == (2, 2)
    by_key_f = {(e, s): i for i, (e, s) in enumerate(zip(bf["episode_id"], bf["start"].tolist()))}
    for j, key in enumerate(zip(bt["episode_id"], bt["start"].tolist())):
        i = by_key_f[key]
        expected = tok.encode(bf["frames"][i : i + 1])[0]
        torch.testing.assert_close(bt["tokens"][j], expected)
        torch.testing.assert_close(bt["actions"][j], bf["actions"][i])


def test_tokenize_refuses_wrong_size(frames_dataset):
    tok = MeanPoolTokenizer()
    object.__setattr__(tok, "spec", TokenizerSpec(kind="vq", image_size=(16, 16), downsample=4, vocab_size=16,
                                                  factor_sizes=(4, 4)))
    with pytest.raises(ValueError, match="tokenizer takes"):
        tokenize_dataset(str(frames_dataset / "ep"), tok, frames_dataset / "tok2", progress=False)


def test_tokens_encode_helper_batches():
    from hma_zoo.data.tokenize import encode_frames

    frames = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    a = encode_frames(MeanPoolTokenizer(), frames, batch_frames=2)
    b = encode_frames(MeanPoolTokenizer(), frames, batch_frames=10)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 2, 2)
