"""The LightningCLI: data -> model links, the debug recipe for real, and kill + resume from last.ckpt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule

from hma_zoo.lit.cli import HMACLI, main

ROOT = Path(__file__).resolve().parents[2]
DEBUG = str(ROOT / "recipes" / "debug.yaml")


def _quiet(tmp_path: Path) -> list[str]:
    return ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--checkpoint.dirpath", str(tmp_path / "ckpt"), "--trainer.default_root_dir", str(tmp_path)]


def test_links_pass_data_facts_to_the_model(tmp_path: Path) -> None:
    cli = HMACLI(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True, run=False,
                 args=["--config", DEBUG, "--data.init_args.window", "3", *_quiet(tmp_path)],
                 save_config_callback=None, auto_configure_optimizers=False)
    assert cli.model.model.config.embodiments == cli.datamodule.embodiments
    assert cli.model.model.config.max_chunk_dim == cli.datamodule.max_chunk_dim == 4
    assert cli.model.hparams.window == 3
    assert cli.trainer.checkpoint_callback.save_last is True
    assert cli.trainer.checkpoint_callback.monitor == "val/loss"


@pytest.mark.slow
def test_debug_recipe_runs_for_real(tmp_path: Path) -> None:
    out = tmp_path / "run"
    main(["fit", "--config", DEBUG, "--trainer.max_steps", "30", "--trainer.val_check_interval", "15",
          "--trainer.default_root_dir", str(out), "--trainer.logger.init_args.save_dir", str(out),
          "--checkpoint.dirpath", str(out / "ckpt"),
          "--trainer.callbacks.init_args.dirpath", str(out / "pretrained")])
    assert (out / "ckpt" / "last.ckpt").is_file()
    assert list(out.glob("tb/version_*/events.out.tfevents.*"))
    assert list(out.glob("tb/version_*/videos/step_000015.gif")) or list(out.glob("**/step_*.gif"))
    ckpt = torch.load(out / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 30
    from hma_zoo.registry import load_pretrained

    model = load_pretrained(str(out / "pretrained"))
    assert model.config.embodiment_names == ("square_s1", "square_s2")


def _ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


@pytest.mark.slow
def test_kill_and_resume_continues_optimizer_and_schedule(tmp_path: Path) -> None:
    ckpt_dir = tmp_path / "ckpt"
    common = ["--config", DEBUG, "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
              "--trainer.callbacks", "[]", "--trainer.limit_val_batches", "0", "--checkpoint.dirpath", str(ckpt_dir),
              "--checkpoint.monitor", "null", "--checkpoint.every_n_train_steps", "2",
              "--trainer.default_root_dir", str(tmp_path), "--model.init_args.schedule", "cosine",
              "--model.init_args.total_steps", "100", "--model.init_args.warmup_steps", "3"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hma_zoo.cli", "fit", *common, "--trainer.max_steps", "200"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = ckpt_dir / "last.ckpt"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if last.is_file():
                time.sleep(0.5)
                try:
                    if _ckpt_step(last) >= 4:
                        break
                except Exception:  # being written
                    pass
            time.sleep(0.5)
        else:
            pytest.fail("no checkpoint with >= 4 steps appeared")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a hard kill, as on a pre-empted node
        proc.wait()
    killed = torch.load(last, map_location="cpu", weights_only=True)
    step = int(killed["global_step"])
    assert step < 200
    opt_steps = {float(s["step"]) for s in killed["optimizer_states"][0]["state"].values()}
    assert opt_steps == {float(step)}
    main(["fit", *common, "--trainer.max_steps", str(step + 4), "--ckpt_path", "last"])
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["global_step"] == step + 4
    assert {float(s["step"]) for s in resumed["optimizer_states"][0]["state"].values()} == {float(step + 4)}
    assert resumed["lr_schedulers"][0]["last_epoch"] == step + 4
    # Adam moments carried over: after 4 more steps they are not a fresh start (a fresh exp_avg_sq is ~g^2)
    k = next(iter(killed["optimizer_states"][0]["state"]))
    assert not torch.equal(killed["optimizer_states"][0]["state"][k]["exp_avg"],
                           resumed["optimizer_states"][0]["state"][k]["exp_avg"])


def test_hma_zoo_fit_passes_its_command_line_without_the_lightning_args_warning(monkeypatch, capsys) -> None:
    """`hma-zoo fit` handed LightningCLI its arguments as ``args=`` while ``sys.argv`` held them too, so every run
    warned "not recommended to provide both args and command line arguments"; now ``argv`` is the command line."""
    import warnings

    from hma_zoo.cli import main as hma_zoo

    command = ["fit", "--config", DEBUG, "--trainer.max_steps", "7", "--print_config"]
    console = ["/venv/bin/hma-zoo", "--debug", *command]
    monkeypatch.setattr(sys, "argv", console)  # as the console script runs it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit) as exit_:
            hma_zoo()
    assert exit_.value.code in (0, None)
    assert not [w for w in caught if "args" in str(w.message) and "command line" in str(w.message)]
    assert "max_steps: 7" in capsys.readouterr().out  # the arguments reached the parser (--debug did not)
    assert sys.argv == console  # restored
