"""The `hma-zoo` dispatcher and the `models` table."""

from __future__ import annotations

import pytest

from hma_zoo.cli import main
from hma_zoo.data.shards import DataError, ShardError
from hma_zoo.pretrained import NoPretrainedWeightsError
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


def test_version_and_subcommand_help(capsys) -> None:
    import hma_zoo

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hma-zoo {hma_zoo.__version__}"
    with pytest.raises(SystemExit) as exit_:
        main(["models", "--help"])  # was "no variant matches '--help'"
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: hma-zoo models" in out and "--pretrained" in out


def test_models_lists_the_pretrained_tags(capsys) -> None:
    assert main(["models", "--pretrained"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert {"hma-vq-t64.simmix", "hma-mar-t64.simmix", "tok-vq-f8-1k.simmix"} <= set(rows)
    assert rows["tok-vq-f8-1k.simmix"][1:5] == ["tokenizer", "sim-mix", "apache-2.0", "yes"]
    assert rows["hma-vq-t64.simmix"][5:7] == ["tok-vq-f4-4k.simmix", "(bundled)"]


class _Marker:
    """Raises what the test puts in ``error`` when called as a subcommand's ``main``."""

    error: BaseException | None = None

    @classmethod
    def main(cls, argv: list[str]) -> int:
        if argv and argv[0] == "usage":
            import argparse

            argparse.ArgumentParser(prog="hma-zoo boom").parse_args(argv)  # exits with 2
        raise cls.error


@pytest.fixture
def boom(monkeypatch):
    import sys
    import types

    from hma_zoo import cli

    module = types.ModuleType("hma_zoo_test_boom")
    module.main = _Marker.main
    monkeypatch.setitem(sys.modules, "hma_zoo_test_boom", module)
    monkeypatch.setitem(cli._COMMANDS, "boom", ("hma_zoo_test_boom", "raises"))
    return _Marker


@pytest.mark.parametrize("error", [
    FileNotFoundError("data/x does not exist"), ValueError("bad window 0"), KeyError("unknown embodiment 'arm'"),
    DataError("shard 3 is truncated"), ShardError("cannot read shard-000001.tar"),
    NoPretrainedWeightsError("no pretrained weights for 'x'"),
], ids=lambda e: type(e).__name__)
def test_user_errors_are_one_line_unless_debug(boom, capsys, error) -> None:
    boom.error = error
    assert main(["boom"]) == 1
    err = capsys.readouterr().err
    message = error.args[0]
    assert err == f"hma-zoo boom: error: {message} (--debug shows the traceback)\n" and "Traceback" not in err
    for argv in (["--debug", "boom"], ["boom", "--debug"]):  # a global flag, before or after the command
        with pytest.raises(type(error)):
            main(argv)


def test_bugs_keep_their_traceback_and_usage_errors_exit_2(boom) -> None:
    boom.error = RuntimeError("an internal bug")
    with pytest.raises(RuntimeError, match="internal bug"):
        main(["boom"])
    with pytest.raises(SystemExit) as exit_:
        main(["boom", "usage", "--nope"])
    assert exit_.value.code == 2


def test_a_missing_file_is_one_line_from_a_real_command(tmp_path, capsys) -> None:
    assert main(["card", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("hma-zoo card: error:") and "missing" in err[0]


def test_evaluate_refuses_the_flags_it_would_ignore(capsys) -> None:
    for flag in ("--fid-weights", "--fvd-weights=x.pt"):
        with pytest.raises(SystemExit) as exit_:
            main(["evaluate", "--model", "m", "--data", "d", flag, *(["x.pt"] if "=" not in flag else [])])
        assert exit_.value.code == 2
        assert f"{flag.split('=')[0]} is not supported" in capsys.readouterr().err


_UNPICKLED: list[str] = []


class _Payload:
    """An object whose unpickling is visible: a checkpoint holding it must not be unpickled."""

    def __reduce__(self):
        return (_UNPICKLED.append, ("ran",))


def test_evaluate_reads_checkpoints_weights_only(tmp_path) -> None:
    import pickle

    import torch

    from hma_zoo.configs import EmbodimentSpec
    from hma_zoo.eval.commands import load_world_model
    from hma_zoo.lit.world_model import HMALitModule

    lit = HMALitModule("hma-vq-test", embodiments=(EmbodimentSpec("arm", 2, 1),))
    ckpt = {"state_dict": lit.state_dict(), "hma_config": lit.model.config.to_dict()}
    torch.save(ckpt, tmp_path / "ok.ckpt")
    model = load_world_model(str(tmp_path / "ok.ckpt"))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in lit.model.state_dict().items())
    torch.save({**ckpt, "extra": _Payload()}, tmp_path / "bad.ckpt")
    with pytest.raises(pickle.UnpicklingError):
        load_world_model(str(tmp_path / "bad.ckpt"))
    assert _UNPICKLED == []
