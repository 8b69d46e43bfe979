"""The ``hma-zoo`` command: a thin dispatcher to the subcommands, each imported lazily.

* ``hma-zoo fit|validate|test|predict --config recipes/...yaml``: LightningCLI (:mod:`hma_zoo.lit.cli`).
* ``hma-zoo data build|tokenize|validate|stats ...``: datasets (:mod:`hma_zoo.data.commands`).
* ``hma-zoo models [PATTERN] [--pretrained]``: the table of registered variants (or pretrained tags).
* ``hma-zoo sweep ...``: scaling-law sweeps (:mod:`hma_zoo.sweep`).
* ``hma-zoo evaluate ...``: metrics, baselines, rollouts (:mod:`hma_zoo.eval.commands`).
* ``hma-zoo card FOLDER`` / ``hma-zoo push NAME REPO_ID``: model cards and hub publishing.
* ``hma-zoo policy ...`` / ``hma-zoo policy-eval`` / ``hma-zoo generate``: the world model's uses
  (:mod:`hma_zoo.policy`).
* ``hma-zoo new-robot --data DIR --model NAME``: add a robot to a pretrained world model (:mod:`hma_zoo.new_robot`).
* ``hma-zoo quickstart``: the README's main job end to end (:mod:`hma_zoo.quickstart`).
* ``hma-zoo demo [--model NAME] [--port 7860]``: drive a world model in the browser (:mod:`hma_zoo.demo`).

Global flags (before or after the command): ``--version``, ``--debug``. A user error (a missing file, a bad
value, an unknown name, broken data) prints one line, ``hma-zoo COMMAND: error: ...``, and exits with 1;
``--debug`` shows the traceback instead (and hma_zoo's debug log). Usage errors exit with 2.
"""

from __future__ import annotations

import importlib
import logging
import sys

_COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("hma_zoo.lit.cli", "LightningCLI training (world models and tokenizers)"),
    "validate": ("hma_zoo.lit.cli", "LightningCLI validation"),
    "test": ("hma_zoo.lit.cli", "LightningCLI test"),
    "predict": ("hma_zoo.lit.cli", "LightningCLI predict"),
    "data": ("hma_zoo.data.commands", "build, tokenize, validate and inspect datasets"),
    "models": ("hma_zoo.registry", "list registered variants with parameter counts"),
    "sweep": ("hma_zoo.sweep.commands", "scaling-law sweeps: a grid of fits on a job engine, table, fitted laws"),
    "evaluate": ("hma_zoo.eval.commands", "evaluate a checkpoint: metrics, baselines, rollout videos"),
    "probe": ("hma_zoo.eval.probe", "fit an action-following state probe (frame -> state) on a dataset"),
    "card": ("hma_zoo.cards", "render the model card of a saved model from its measured metadata"),
    "push": ("hma_zoo.publish", "publish saved weights (card, bundled tokenizer) to the Hugging Face hub"),
    "policy": ("hma_zoo.policy.commands", "policy tasks: demonstrations, BC policies, success judges, policy-eval"),
    "policy-eval": ("hma_zoo.policy.commands", "rank policies in a world model against the real simulator"),
    "generate": ("hma_zoo.policy.generate", "write world-model rollouts as a dataset (synthetic data)"),
    "new-robot": ("hma_zoo.new_robot", "add your robot to a pretrained world model (and compare with scratch)"),
    "quickstart": ("hma_zoo.quickstart", "the README's main job: data, tokenizer, world model, rollout, metrics"),
    "demo": ("hma_zoo.demo", "drive a world model in the browser, in real time (web app on 127.0.0.1)"),
}


def _usage() -> str:
    lines = ["usage: hma-zoo [--version] [--debug] COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in _COMMANDS.items()]
    lines += ["", "Run `hma-zoo COMMAND --help` for the arguments of a command; `--debug` shows tracebacks."]
    return "\n".join(lines)


def _version() -> str:
    from hma_zoo import __version__

    return __version__


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exception kinds that mean "the input is wrong", not "hma_zoo is broken": shown as one line."""
    kinds: list[type[BaseException]] = [FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                                        PermissionError, ConnectionError, ValueError, KeyError, FloatingPointError]
    try:  # the data package's own kinds (ShardError is a RuntimeError)
        from hma_zoo.data.shards import ShardError

        kinds.append(ShardError)
    except ImportError:  # pragma: no cover - a broken install shows the traceback
        pass
    return tuple(kinds)


def _message(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else err  # KeyError's str() is a repr
    return " ".join(str(text).split()) or type(err).__name__


def _split_global(argv: list[str]) -> tuple[list[str], bool, bool]:
    """Remove the global ``--debug`` / ``--version`` flags (anywhere before a ``--``); returns the rest and them."""
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    rest = [a for i, a in enumerate(argv) if not (i < end and a == "--debug")]
    version = rest[:1] == ["--version"]  # only before the command: a subcommand may have a --version of its own
    return (rest[1:] if version else rest), debug, version


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hma-zoo`` console script; returns the exit code (0 ok, 1 failure, 2 usage)."""
    argv, debug, version = _split_global(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if debug:
        logging.getLogger("hma_zoo").setLevel(logging.DEBUG)
    if version:
        print(f"hma-zoo {_version()}")
        return 0
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command = argv[0]
    if command not in _COMMANDS:
        print(f"hma-zoo: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        return _dispatch(command, argv)
    except Exception as err:
        if debug or not isinstance(err, _user_errors()):
            raise
        print(f"hma-zoo {command}: error: {_message(err)} (--debug shows the traceback)", file=sys.stderr)
        return 1


def _dispatch(command: str, argv: list[str]) -> int:
    module = importlib.import_module(_COMMANDS[command][0])
    # LightningCLI subcommands keep their own name in argv; the others receive only their arguments.
    if command in ("fit", "validate", "test", "predict"):
        return int(module.main(argv) or 0)
    if command == "policy-eval":  # an alias of `hma-zoo policy eval`
        return int(module.main(["eval", *argv[1:]]) or 0)
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
