"""The ``hma-zoo`` command: a thin dispatcher to the subcommands, each imported lazily.

* ``hma-zoo fit|validate|test|predict --config recipes/...yaml``: LightningCLI (:mod:`hma_zoo.lit.cli`).
* ``hma-zoo data build|tokenize|validate|stats ...``: datasets (:mod:`hma_zoo.data.commands`).
* ``hma-zoo models [PATTERN]``: the table of registered variants with parameter counts.
* ``hma-zoo evaluate ...``: metrics, baselines, rollouts (:mod:`hma_zoo.eval.commands`).
* ``hma-zoo policy ...`` / ``hma-zoo policy-eval`` / ``hma-zoo generate``: the world model's uses
  (:mod:`hma_zoo.policy`).
* ``hma-zoo new-robot --data DIR --model NAME``: add a robot to a pretrained world model (:mod:`hma_zoo.new_robot`).
* ``hma-zoo quickstart``: the README's main job end to end (:mod:`hma_zoo.quickstart`).
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
    "evaluate": ("hma_zoo.eval.commands", "evaluate a checkpoint: metrics, baselines, rollout videos"),
    "probe": ("hma_zoo.eval.probe", "fit an action-following state probe (frame -> state) on a dataset"),
    "card": ("hma_zoo.cards", "render the model card of a saved model from its measured metadata"),
    "policy": ("hma_zoo.policy.commands", "policy tasks: demonstrations, BC policies, success judges, policy-eval"),
    "policy-eval": ("hma_zoo.policy.commands", "rank policies in a world model against the real simulator"),
    "generate": ("hma_zoo.policy.generate", "write world-model rollouts as a dataset (synthetic data)"),
    "new-robot": ("hma_zoo.new_robot", "add your robot to a pretrained world model (and compare with scratch)"),
    "quickstart": ("hma_zoo.quickstart", "the README's main job: data, tokenizer, world model, rollout, metrics"),
}


def _usage() -> str:
    lines = ["usage: hma-zoo COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in _COMMANDS.items()]
    lines += ["", "Run `hma-zoo COMMAND --help` for the arguments of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hma-zoo`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command = argv[0]
    if command not in _COMMANDS:
        print(f"hma-zoo: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(_COMMANDS[command][0])
    # LightningCLI subcommands keep their own name in argv; the others receive only their arguments.
    if command in ("fit", "validate", "test", "predict"):
        return int(module.main(argv) or 0)
    if command == "policy-eval":  # an alias of `hma-zoo policy eval`
        return int(module.main(["eval", *argv[1:]]) or 0)
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
