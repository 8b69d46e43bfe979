"""``hma-zoo fit|validate|test|predict --config recipes/...yaml``: the LightningCLI of hma_zoo.

Model and data are given by ``class_path`` (subclass mode), so the same entry point trains world models
(:class:`hma_zoo.lit.HMALitModule`) and tokenizers. What the data know is linked into the model once the data
module is built (``apply_on="instantiate"``), so a recipe never repeats it:

=====================  =================================
data attribute         model argument
=====================  =================================
``embodiments``        ``embodiments`` (names, action dims, strides, action statistics)
``max_chunk_dim``      ``max_chunk_dim``
``window``             ``window``
=====================  =================================

In subclass mode jsonargparse skips a link whose target the chosen model class does not take (a tokenizer
module takes none of them), so one CLI serves both.
The token grid and vocabulary come from the model's ``tokenizer`` (its :class:`TokenizerSpec`).

Always added: a Rich progress bar (``--progress_bar.*``) and a ``ModelCheckpoint`` (``--checkpoint.*``) keeping
``last.ckpt`` and the best ``val/loss`` (a module that logs no ``val/loss`` sets ``checkpoint.monitor``); the
default logger is TensorBoard under ``outputs/runs``. Resume a killed run with
``hma-zoo fit --config same.yaml --ckpt_path last``.
"""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

log = logging.getLogger(__name__)

# (data attribute, model __init__ argument)
DATA_TO_MODEL_LINKS: tuple[tuple[str, str], ...] = (
    ("embodiments", "embodiments"),
    ("max_chunk_dim", "max_chunk_dim"),
    ("window", "window"),
)


def _link_compute(attr: str):
    """A link function that reads ``attr`` from the instantiated data module (``None`` if it lacks it)."""

    def compute(data: Any) -> Any:
        value = getattr(data, attr, None)
        if attr == "embodiments" and value is not None:
            return list(value)
        return value

    compute.__name__ = f"data_{attr}"
    return compute


class HMACLI(LightningCLI):
    """LightningCLI with hma_zoo's links and defaults (see the module docstring)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(RichProgressBar, "progress_bar")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.save_last": True,
            "checkpoint.monitor": "val/loss",
            "checkpoint.mode": "min",
            "checkpoint.save_top_k": 1,
            "checkpoint.filename": "best-{step}",
            "trainer.logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                               "init_args": {"save_dir": "outputs", "name": "runs"}},
        })
        for attr, arg in DATA_TO_MODEL_LINKS:
            parser.link_arguments("data", f"model.init_args.{arg}", compute_fn=_link_compute(attr),
                                  apply_on="instantiate")


def main(argv: list[str] | None = None) -> int:
    """Run ``fit|validate|test|predict`` (``argv`` includes the subcommand)."""
    HMACLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
    return 0

