"""``hma-zoo data build`` is crash-safe (issue 15, finding 7): worker processes die with their parent, a signal to
the parent stops the workers and removes partial shards, a rerun says exactly what to do with a folder left by an
interrupted build (``--resume`` or ``--overwrite``), and ``--resume`` builds only the missing chunks."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hma_zoo.data.build import build_dataset, mixture_specs, prepare_build_dir
from hma_zoo.data.commands import main

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc; psutil is not a dependency)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            status = Path(f"/proc/{d}/status").read_text()
        except OSError:
            continue
        ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), None)
        if ppid == pid:
            out.append(int(d))
    return out


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status  # a zombie has exited


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    end = time.time() + timeout
    while time.time() < end and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _kill_all(pids: list[int]) -> None:
    for p in pids:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"), PYTHONPATH=str(ROOT))


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal and /proc: Linux")


def test_pool_worker_dies_when_its_parent_is_killed(tmp_path):
    """A worker busy with a long task is gone within seconds of SIGKILL to its parent (it used to live on)."""
    script = textwrap.dedent("""
        import sys, time
        from hma_zoo.data.build import worker_pool
        pool = worker_pool(1)
        pool.submit(time.sleep, 300)
        time.sleep(300)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], env=_env(), cwd=tmp_path)
    workers: list[int] = []
    try:
        end = time.time() + 60
        while time.time() < end and not workers:
            workers = [p for p in _children(parent.pid)
                       if "spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
            time.sleep(0.05)
        assert workers, "the pool started no worker"
        time.sleep(1.0)  # the worker runs its task
        parent.kill()
        parent.wait()
        survivors = _wait_gone(workers, 10)
        assert not survivors, f"worker(s) {survivors} survived their parent"
    finally:
        parent.kill()
        _kill_all(workers)


def test_rerun_on_interrupted_build_says_what_to_do(tmp_path, capsys):
    out = tmp_path / "d"
    (out / "train").mkdir(parents=True)
    (out / "train" / "c0000-dmc_cartpole-00000.tar").write_bytes(b"")
    (out / "train" / "c0001-dmc_cartpole-00000.tar.tmp").write_bytes(b"partial")
    with pytest.raises(FileExistsError) as info:
        build_dataset(mixture_specs("sim-mix-test"), out, workers=1, progress=False)
    msg = str(info.value)
    assert "already holds a dataset" not in msg
    assert "manifest.json" in msg and "--resume" in msg and "--overwrite" in msg and str(out) in msg
    assert main(["build", "--mixture", "sim-mix-test", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err


def test_overwrite_removes_partial_outputs_but_not_other_files(tmp_path):
    out = tmp_path / "d"
    for rel in ("train/c0000-a-00000.tar", "train/c0001-a-00000.tar.tmp", "val/c0000-a-00000.tar",
                "manifest.json.tmp", ".build/config.json", ".build/c0000.json"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("x")
    (out / "notes.txt").write_text("mine")
    prepare_build_dir(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_resume_refuses_another_build_config(tmp_path):
    out = tmp_path / "d"
    (out / ".build").mkdir(parents=True)
    (out / ".build" / "config.json").write_text(json.dumps({"seed": 5}))
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_dataset(mixture_specs("sim-mix-test"), out, workers=1, progress=False, resume=True)


# ------------------------------------------------------------------------------------------ real builds (simulators)
def _build_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hma_zoo.cli", "data", "build", "--mixture", "sim-mix-test", "--out", str(out),
            "--workers", "2", "--episodes", "24", *extra]


def _start_and_wait_for_workers(cmd: list[str], cwd: Path) -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen(cmd, env=_env(), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    end = time.time() + 120
    while time.time() < end and len(workers) < 2 and proc.poll() is None:
        workers = [p for p in _children(proc.pid)
                   if "spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        time.sleep(0.05)
    return proc, workers


@pytest.mark.slow
def test_killed_build_leaves_no_worker_and_resumes(tmp_path):
    pytest.importorskip("dm_control")
    out = tmp_path / "d"
    proc, workers = _start_and_wait_for_workers(_build_cmd(out), tmp_path)
    try:
        assert len(workers) == 2, proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no workers"
        end = time.time() + 120
        while time.time() < end and not list((out / ".build").glob("c[0-9]*.json")) and proc.poll() is None:
            time.sleep(0.02)  # kill once a chunk has finished, while others run
        finished = sorted((out / ".build").glob("c[0-9]*.json"))
        assert finished and proc.poll() is None
        others = [p for p in _children(proc.pid) if p not in workers]  # e.g. multiprocessing's resource tracker
        proc.kill()
        proc.wait()
        survivors = _wait_gone(workers + others, 15)
        assert not survivors, f"process(es) {survivors} survived the killed build"
    finally:
        proc.kill()
        _kill_all(workers)
    assert not (out / "manifest.json").exists()
    kept = {p: p.stat().st_mtime_ns for f in finished for p in out.glob(f"*/{f.stem}-*.tar")}
    assert kept
    # a plain rerun says what to do
    rerun = subprocess.run(_build_cmd(out), env=_env(), cwd=tmp_path, capture_output=True, text=True)
    assert rerun.returncode == 2 and "--resume" in rerun.stderr and "--overwrite" in rerun.stderr
    # --resume completes the build; the result is the same as an uninterrupted build
    done = subprocess.run(_build_cmd(out, "--resume"), env=_env(), cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(out.rglob("*.tmp")) and not (out / ".build").exists()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the finished chunks were not built again
    ref = tmp_path / "ref"
    fresh = subprocess.run(_build_cmd(ref), env=_env(), cwd=tmp_path, capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (out, ref))
    assert a["shards"] == b["shards"] and a["embodiments"] == b["embodiments"]
    assert main(["validate", str(out)]) == 0
    # --overwrite on a finished dataset rebuilds it
    again = subprocess.run(_build_cmd(out, "--overwrite"), env=_env(), cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]


@pytest.mark.slow
def test_sigterm_to_build_stops_workers_and_removes_partial_shards(tmp_path):
    pytest.importorskip("dm_control")
    out = tmp_path / "d"
    proc, workers = _start_and_wait_for_workers(_build_cmd(out), tmp_path)
    try:
        assert len(workers) == 2
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        err = proc.stderr.read().decode()
        assert code == 128 + signal.SIGTERM, err[-2000:]
        assert "--resume" in err and "Traceback" not in err
        assert not _wait_gone(workers, 5)
    finally:
        proc.kill()
        _kill_all(workers)
    assert not list(out.rglob("*.tmp"))
