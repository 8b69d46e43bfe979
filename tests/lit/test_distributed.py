"""Two-process training on the CPU (gloo): DDP and FSDP2 (Lightning's ModelParallelStrategy).

Each run is a separate script (tests/lit/dist_train.py) because Lightning's launcher re-runs the command line per
rank. Checked: both ranks finish the steps, hold identical weights, see disjoint samples, FSDP2 really shards,
the hub export gathers the shards, and DDP and FSDP2 reach the same weights from the same seed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("dist_train.py")


def _run(kind: str, out: Path) -> dict:
    out.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), kind, str(out)], env=env, capture_output=True, text=True,
                          timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_ddp_and_fsdp2_on_two_cpu_processes(tmp_path: Path) -> None:
    from hma_zoo.registry import load_pretrained

    results = {kind: _run(kind, tmp_path / kind) for kind in ("ddp", "fsdp2")}
    for kind, r in results.items():
        assert r["world_size"] == 2 and r["global_step"] == 4, kind
        assert r["checksums"][0] == pytest.approx(r["checksums"][1], rel=1e-9), kind  # replicas agree
        seen0, seen1 = (set(s) for s in r["seen"])
        assert seen0 and seen1 and not seen0 & seen1, kind  # each rank reads its own part of the data
        model = load_pretrained(str(tmp_path / kind / "pretrained"))
        assert model.config.embodiment_names == ("square_s1", "square_s2")
    assert results["fsdp2"]["sharded"] and not results["ddp"]["sharded"]
    assert results["ddp"]["checksums"][0] == pytest.approx(results["fsdp2"]["checksums"][0], rel=1e-6)
