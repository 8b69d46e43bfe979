"""Every recipe opens with the command that runs it and parses with the LightningCLI parser (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch import LightningDataModule, LightningModule

from hma_zoo.lit.cli import HMACLI

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if not p.name.endswith(".sweep.yaml"))
SWEEPS = sorted((ROOT / "recipes").rglob("*.sweep.yaml"))


class _ParseOnly(HMACLI):
    """Parse and type-check the config (class paths resolve, init_args match signatures); build nothing."""

    def instantiate_classes(self) -> None:
        pass


def test_there_are_recipes() -> None:
    names = {p.relative_to(ROOT / "recipes").as_posix() for p in RECIPES}
    for required in ("debug.yaml", "quickstart.yaml", "pretrain/hma-vq-s64_simmix.yaml",
                     "pretrain/hma-mar-s64_simmix.yaml", "pretrain/hma-vq-b_simmix_gpu.yaml",
                     "pretrain/hma-mar-b_simmix_gpu.yaml"):
        assert required in names
    assert any(n.startswith("finetune/") for n in names)


def _parse(args: list[str]):  # noqa: ANN202 - a jsonargparse Namespace
    return _ParseOnly(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                      run=False, args=args, save_config_callback=None, auto_configure_optimizers=False).config


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.relative_to(ROOT / "recipes").as_posix())
def test_recipe_opens_with_its_command_and_parses(recipe: Path) -> None:
    first = recipe.read_text().splitlines()[0]
    rel = recipe.relative_to(ROOT).as_posix()
    assert first.startswith("# hma-zoo ") and rel in first, f"{rel} must open with '# hma-zoo fit --config {rel}'"
    cfg = _parse(["--config", str(recipe)])
    assert cfg.model.class_path and cfg.data.class_path
    if cfg.model.class_path.endswith("HMALitModule"):
        assert cfg.model.init_args.variant.startswith("hma-")
        # what the data know is linked, never repeated by hand
        assert cfg.model.init_args.embodiments is None
    if "_gpu" in rel:
        assert "ModelParallelStrategy" in str(cfg.trainer.strategy) and cfg.trainer.precision == "bf16-mixed"
    if rel.startswith("recipes/finetune/"):
        assert cfg.model.init_args.from_pretrained


def test_there_are_sweeps() -> None:
    assert {p.name for p in SWEEPS} >= {"vq-size-data.sweep.yaml", "vq-embodiments.sweep.yaml"}


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.relative_to(ROOT / "recipes").as_posix())
def test_sweep_opens_with_its_command_and_every_point_parses(sweep: Path) -> None:
    """A sweep file is not a LightningCLI config: it names a base recipe and overrides. Every point it expands to must
    parse as the `hma-zoo fit` arguments the sweep will pass (a typo in a grid key fails here, not an hour in)."""
    from hma_zoo.sweep.point import cli_value
    from hma_zoo.sweep.spec import load_sweep

    rel = sweep.relative_to(ROOT).as_posix()
    first = sweep.read_text().splitlines()[0]
    assert first.startswith(f"# hma-zoo sweep --config {rel}"), f"{rel} must open with '# hma-zoo sweep --config {rel}'"
    spec = load_sweep(sweep)
    points = spec.points()
    assert len(points) >= 3
    for point in points:
        cfg = _parse(["--config", spec.base, *[f"--{k}={cli_value(v)}" for k, v in point.overrides.items()]])
        for key, value in point.overrides.items():
            assert cfg[key] == value, f"{rel} point {point.id}: {key} parsed as {cfg[key]!r}, not {value!r}"
