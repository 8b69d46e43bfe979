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
``token_info``         ``token_info`` (pre-tokenised data: the token grid / vocabulary and tokenizer used)
=====================  =================================

In subclass mode jsonargparse skips a link whose target the chosen model class does not take (a tokenizer
module takes none of them), so one CLI serves both.
The token grid and vocabulary come from the model's ``tokenizer`` (its :class:`TokenizerSpec`).

Always added: a Rich progress bar (unless ``trainer.enable_progress_bar`` is false) and a
``ModelCheckpoint`` (``--checkpoint.*``) keeping ``last.ckpt`` and the best ``val/loss`` (tokenizer modules:
``val/psnr``); the default logger is TensorBoard under ``outputs/runs``. Resume a killed run with
``hma-zoo fit --config same.yaml --ckpt_path last``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

log = logging.getLogger(__name__)

# (data attribute, model __init__ argument)
DATA_TO_MODEL_LINKS: tuple[tuple[str, str], ...] = (
    ("embodiments", "embodiments"),
    ("max_chunk_dim", "max_chunk_dim"),
    ("window", "window"),
    ("token_info", "token_info"),
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


    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Add a Rich progress bar unless the recipe disables bars or brings its own."""
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        own = [c for c in (trainer_cfg.get("callbacks") or []) if isinstance(c, ProgressBar)]
        if trainer_cfg.get("enable_progress_bar", True) is not False and not own:
            kwargs["callbacks"] = [*(trainer_cfg.get("callbacks") or []), RichProgressBar()]
        return super().instantiate_trainer(**kwargs)

    def before_instantiate_classes(self) -> None:
        """Pick the checkpoint metric from the model class when the recipe left the default ``val/loss``.

        A module may declare ``checkpoint_monitor = ("metric", "min"|"max")``; tokenizer modules, which log no
        ``val/loss``, default to the best ``val/psnr``.
        """
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        model_cfg = cfg.get("model")
        class_path = getattr(model_cfg, "class_path", None) if model_cfg is not None else None
        ckpt = cfg.get("checkpoint")
        if not class_path or ckpt is None or ckpt.get("monitor") != "val/loss":
            return
        module_name, _, cls_name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module_name), cls_name, None)
        choice = getattr(cls, "checkpoint_monitor", None)
        if choice is None and cls_name == "TokenizerLitModule":
            choice = ("val/psnr", "max")
        if choice is not None:
            ckpt["monitor"], ckpt["mode"] = choice


def main(argv: list[str] | None = None) -> int:
    """Run ``fit|validate|test|predict``; ``argv`` includes the subcommand (default: the process's arguments).

    ``argv`` is the command line of the run, so LightningCLI reads it as ``sys.argv`` (its usage then says
    ``hma-zoo fit``). Handing it over as ``args=`` instead, while ``sys.argv`` still holds the console script's own
    arguments, is what made LightningCLI warn "not recommended to provide both args and command line arguments"
    on every ``hma-zoo fit``.
    """
    command_line = list(sys.argv[1:] if argv is None else argv)
    saved = sys.argv
    sys.argv = ["hma-zoo", *command_line]
    try:
        HMACLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=None,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    finally:
        sys.argv = saved
    return 0
