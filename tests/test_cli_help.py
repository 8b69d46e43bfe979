"""Every argument of every argparse subcommand of ``hma-zoo`` says what it is for in ``--help``."""

from __future__ import annotations

import argparse
from unittest import mock

import pytest

from hma_zoo import cli

# LightningCLI commands take their help from the docstrings of the classes a recipe names; `policy-eval` is an
# alias of `policy eval`, walked there.
_ARGPARSE_COMMANDS = [c for c in cli._COMMANDS if c not in ("fit", "validate", "test", "predict", "policy-eval")]


class _CapturedParserError(Exception):
    """Carries the parser a command built, raised instead of parsing."""


def _parser_of(command: str) -> argparse.ArgumentParser:
    """The top-level parser ``hma-zoo COMMAND`` builds (caught at its first parse call, whatever builds it)."""

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _CapturedParserError(self)

    with mock.patch.object(argparse.ArgumentParser, "parse_known_args", capture):
        try:
            cli._dispatch(command, [command, "--help"])
        except _CapturedParserError as got:
            return got.args[0]
    raise AssertionError(f"hma-zoo {command} parsed no arguments")


def _undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    """Arguments and subcommands under ``parser`` without help text, as ``"hma-zoo data build --seed"``."""
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not helps.get(name):
                    missing.append(f"{path} {name} (the subcommand)")
                missing += _undocumented(sub, f"{path} {name}")
        elif not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


@pytest.mark.parametrize("command", _ARGPARSE_COMMANDS)
def test_every_argument_has_help(command: str) -> None:
    parser = _parser_of(command)
    assert parser.prog == f"hma-zoo {command}"
    assert _undocumented(parser, parser.prog) == []


def test_the_walk_finds_an_undocumented_argument() -> None:
    parser = argparse.ArgumentParser(prog="x")
    sub = parser.add_subparsers()
    build = sub.add_parser("build", help="documented")
    build.add_argument("--seed", type=int)
    sub.add_parser("stats")
    assert _undocumented(parser, "x") == ["x build --seed", "x stats (the subcommand)"]


def test_models_help_prints_usage(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["models", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hma-zoo models") and "no variant matches" not in out
