"""The `hma-zoo` dispatcher and the `models` table."""

from __future__ import annotations

from hma_zoo.cli import main
from hma_zoo.registry import count_parameters


def test_help_lists_commands(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "data", "models", "evaluate", "quickstart"):
        assert command in out


def test_unknown_command_fails(capsys) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_models_table_prints_measured_counts(capsys) -> None:
    assert main(["models", "hma-*-test"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in out[2:]}
    assert set(rows) == {"hma-vq-test", "hma-mar-test"}
    assert rows["hma-vq-test"][-1] == f"{count_parameters('hma-vq-test') / 1e6:.2f}M"
    assert main(["models", "nothing-*"]) == 1
