"""benchmarks/gpu_suite.sh: the GPU benchmark suite keeps working, run in its CPU smoke mode (no GPU needed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"


def _run(*args: str, env: dict[str, str] | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(["bash", str(SUITE), *args], capture_output=True, text=True, cwd=ROOT, env=full_env,
                          timeout=timeout)


def test_suite_script_parses_and_refuses_unknown_arguments() -> None:
    assert subprocess.run(["bash", "-n", str(SUITE)], capture_output=True).returncode == 0
    bad = _run("--gpu-please")
    assert bad.returncode == 2 and "--cpu-smoke" in bad.stderr
    helped = _run("--help")
    assert helped.returncode == 0 and "cpu-smoke" in helped.stdout


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "env"])
def test_suite_runs_in_cpu_smoke_mode(how: str) -> None:
    """Every part runs and prints its rows: generation (vq and mar, DDPM and DDIM, two batches), training MFU, and
    a sharded (FSDP2) training run whose loss is finite."""
    out = _run("--cpu-smoke", timeout=600) if how == "flag" else _run(env={"HMA_GPU_SUITE_CPU": "1"}, timeout=600)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "CPU smoke mode" in text
    gen_rows = [line for line in out.stdout.splitlines() if re.match(r"hma-(vq|mar)-test\s+(-|ddpm|ddim)", line)]
    assert {r.split()[1] for r in gen_rows if r.startswith("hma-mar")} == {"ddpm:10", "ddim:4"}
    assert {r.split()[2] for r in gen_rows} == {"1", "2"}  # batches 1 and 2
    assert re.search(r"hma-vq-test\s+fp32 .*%", out.stdout)  # the MFU row
    smoke = re.search(r"fsdp2 smoke: .* 3/3 steps .* loss ([\d.]+) -> ([\d.]+), sharded \(DTensor\) True", out.stdout)
    assert smoke, out.stdout[-2000:]
