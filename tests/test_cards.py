"""Every model card in the repository has valid hub front matter with its measured metrics, and the cards of the
shipped weights are what `hma-zoo card` renders from their metadata today."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from hma_zoo.cards import REQUIRED_KEYS, card_name, card_problems, render_card
from hma_zoo.hub import read_config

ROOT = Path(__file__).resolve().parents[1]
CARDS = sorted((ROOT / "model_cards").glob("*.md")) + sorted((ROOT / "pretrained").glob("**/README.md"))
# World models and tokenizers carry cards; the policy-evaluation helpers in pretrained/eval (success judges, state
# probes) are tools documented in docs/policy.md.
SHIPPED = sorted(p.parent for p in (ROOT / "pretrained").glob("**/config.json") if "eval" not in p.parts)


def test_the_repository_has_cards_to_check() -> None:
    assert len(CARDS) >= 12 and len(SHIPPED) == 9  # 6 shipped folders, 3 bundled tokenizers


@pytest.mark.parametrize("path", CARDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_card_has_valid_front_matter(path: Path) -> None:
    text = path.read_text()
    assert card_problems(text) == []
    front = yaml.safe_load(text.split("---\n", 2)[1])
    assert set(REQUIRED_KEYS) <= set(front)
    data = ModelCard.load(path).data
    assert data.library_name == "hma_zoo" and data.pipeline_tag == "robotics" and data.license == "apache-2.0"
    assert {"vq", "mar", "kl"} & set(data.tags) and data.datasets
    assert data.eval_results and all(isinstance(r.metric_value, float) for r in data.eval_results)
    assert {"psnr", "ssim"} <= {r.metric_type for r in data.eval_results}


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_cards_are_rendered_from_the_metadata(folder: Path) -> None:
    text = render_card(read_config(folder), folder)
    assert (folder / "README.md").read_text() == text, "stale card: run `hma-zoo card FOLDER --cards-dir model_cards`"
    if folder.name != "tokenizer":
        assert (ROOT / "model_cards" / f"{card_name(folder)}.md").read_text() == text


def test_lightning_exports_record_the_dataset_they_were_trained_on() -> None:
    from types import SimpleNamespace

    from hma_zoo.lit.callbacks import trained_on

    def trainer(hparams):
        return SimpleNamespace(datamodule=SimpleNamespace(hparams=hparams))

    assert trained_on(trainer({"data": "data/sim-mix-mini/"})) == {"data": "sim-mix-mini"}
    assert trained_on(trainer({"data": ["data/a", Path("b")]})) == {"data": "a+b"}
    assert trained_on(trainer({})) == {} and trained_on(SimpleNamespace(datamodule=None)) == {}
