"""``hma-zoo sweep``: sweep files, points, resume/skip, the power-law fits, the frontier, the submitit path, and a
tiny sweep end to end (grid -> runs -> table -> fit -> plot) on the synthetic data module."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml

from hma_zoo.sweep import IllPosedFitError, fit_power_law, frontier, load_sweep
from hma_zoo.sweep.commands import main as sweep_main
from hma_zoo.sweep.commands import point_jobs
from hma_zoo.sweep.engines import slurm_executor, submit_slurm
from hma_zoo.sweep.laws import analyse, collect
from hma_zoo.sweep.point import fit_args

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "seed_everything": 0,
    "trainer": {"accelerator": "cpu", "devices": 1, "precision": "32-true", "max_steps": 12, "val_check_interval": 6,
                "check_val_every_n_epoch": None, "limit_val_batches": 2, "log_every_n_steps": 2,
                "enable_model_summary": False},
    "checkpoint": {"every_n_train_steps": 6},
    "model": {"class_path": "hma_zoo.lit.HMALitModule",
              "init_args": {"variant": "hma-vq-test", "tokenizer": "tok-vq-test", "lr": 0.003, "warmup_steps": 2,
                            "schedule": "cosine", "val_metric_samples": 0}},
    "data": {"class_path": "hma_zoo.lit.synthetic.SyntheticDataModule",
             "init_args": {"window": 4, "image_size": [64, 64], "train_size": 64, "val_size": 16, "batch_size": 4}},
}


def _write_sweep(tmp_path: Path, **extra) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    sweep = {"name": "tiny", "base": "base.yaml", "out": str(tmp_path / "out"), "engine": "debug",
             "grid": {"model.init_args.overrides": [{"trunk": {"d_model": w, "num_heads": 1}}
                                                    for w in (8, 16, 32, 64)]},
             "eval": {"batches": 2}, **extra}
    path = tmp_path / "tiny.sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


# ------------------------------------------------------------------------------------------- sweep files / points
def test_points_are_grid_times_seeds_plus_list_with_stable_ids(tmp_path: Path) -> None:
    path = _write_sweep(tmp_path, seeds=[0, 1], overrides={"trainer.max_steps": 5},
                        points=[{"model.init_args.lr": 0.01}, {"model.init_args.lr": 0.01}])
    spec = load_sweep(path)
    points = spec.points()
    assert len(points) == 4 * 2 + 2  # grid x seeds, the duplicate list entry kept once (x 2 seeds)
    assert all(p.overrides["trainer.max_steps"] == 5 for p in points)
    assert {p.overrides["seed_everything"] for p in points} == {0, 1}
    assert len({p.id for p in points}) == len(points)
    assert [p.id for p in load_sweep(path).points()] == [p.id for p in points]  # stable across reads
    assert load_sweep(path, engine="local", workers=2).workers == 2


@pytest.mark.parametrize("change, message", [
    ({"grid": {"trainer.max_steps": []}}, "non-empty lists"),
    ({"engine": "kubernetes"}, "engine"),
    ({"color": "red"}, "unknown sweep keys"),
    ({"grid": {"--trainer.max_steps": [1]}}, "without dashes"),
    ({"eval": {"batchez": 3}}, "unknown eval keys"),
])
def test_bad_sweep_files_are_refused_with_the_fix(tmp_path: Path, change: dict, message: str) -> None:
    path = _write_sweep(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw.update(change)
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=message):
        load_sweep(path)


def test_missing_base_recipe_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "nowhere.yaml", "grid": {"trainer.max_steps": [1]}}))
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        load_sweep(path)


def test_fit_args_resume_from_last_checkpoint(tmp_path: Path) -> None:
    args = fit_args("base.yaml", {"model.init_args.variant": "hma-vq-w32", "data.init_args.embodiments": ["a"]},
                    tmp_path)
    assert args[:3] == ["fit", "--config", "base.yaml"]
    assert "--model.init_args.variant=hma-vq-w32" in args and '--data.init_args.embodiments=["a"]' in args
    assert not any(a.startswith("--ckpt_path") for a in args)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert fit_args("base.yaml", {}, tmp_path)[-1] == f"--ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"


# ------------------------------------------------------------------------------------------- fits
def test_power_law_recovers_exponent_with_an_interval() -> None:
    rng = np.random.default_rng(0)
    x = np.repeat(np.geomspace(1e4, 1e7, 6), 2)
    y = 30.0 * x ** -0.35 + 1.5 + rng.normal(0, 0.002, x.shape)
    fit = fit_power_law(x, y, "N", n_boot=200)
    assert fit.b == pytest.approx(0.35, abs=0.03)
    assert fit.c == pytest.approx(1.5, abs=0.05)
    assert fit.b_ci[0] <= fit.b <= fit.b_ci[1] and fit.b_ci[1] - fit.b_ci[0] < 0.1
    assert fit.r2 > 0.99 and not fit.notes
    assert np.allclose(fit.predict(x), 30.0 * x ** -0.35 + 1.5, atol=0.01)


def test_ill_posed_fits_say_why() -> None:
    with pytest.raises(IllPosedFitError, match="at least 4 distinct"):
        fit_power_law([1, 2, 4, 4], [3.0, 2.0, 1.0, 1.1], "N")
    with pytest.raises(IllPosedFitError, match="does not fall"):
        fit_power_law([1, 2, 4, 8, 16], [1.0, 1.2, 1.1, 1.5, 1.6], "D")
    with pytest.raises(IllPosedFitError, match="within noise"):  # falls overall, but mostly noise
        fit_power_law([1, 2, 4, 8, 16, 32], [2.0, 1.2, 1.9, 1.1, 1.5, 1.0], "D", n_boot=20)  # Spearman -0.71
    fit = fit_power_law([1, 2, 4, 8, 16], [3.0, 2.0, 2.1, 1.4, 1.3], "N", n_boot=50)
    assert fit.notes and "2->4" in fit.notes[0]


def test_frontier_is_the_lower_envelope_in_compute() -> None:
    rows = [{"id": "small", "flops_per_step": 1.0, "curve": [[10, 3.0], [20, 2.5], [40, 2.4]]},
            {"id": "big", "flops_per_step": 4.0, "curve": [[10, 2.6], [20, 2.0]]}]
    front = frontier(rows)
    assert [(c, v, pid) for c, v, pid in front] == [(10.0, 3.0, "small"), (20.0, 2.5, "small"), (40.0, 2.4, "small"),
                                                     (80.0, 2.0, "big")]
    assert all(b[1] < a[1] and b[0] > a[0] for a, b in zip(front, front[1:]))


def test_points_of_different_budgets_are_never_fitted_together() -> None:
    """L(D) over 4 data sizes at 500 steps fits; the same sizes at 2000 steps are their own group, never mixed in."""
    from hma_zoo.sweep.laws import fit_table

    frames = [1000, 2000, 4000, 8000]
    rows = [{"id": f"s{steps}-{d}", "params": 1e5, "train_frames": d, "steps": steps,
             "val_video_loss": 2.0 + (5.0 if steps == 500 else 1.0) * d ** -0.5}
            for steps in (500, 2000) for d in frames]
    fits, problems = fit_table(rows, "train_frames", n_boot=20)
    assert not problems and len(fits) == 2
    by_group = {f.group: f for f in fits}
    assert set(by_group) == {"N_trunk=0.10M, 500 steps", "N_trunk=0.10M, 2000 steps"}
    for f in fits:  # each group recovers its own law (mixing them would not)
        assert f.b == pytest.approx(0.5, abs=0.05) and f.c == pytest.approx(2.0, abs=0.05)

def _fake_result(root: Path, pid: str, **fields) -> None:
    folder = root / "points" / pid
    folder.mkdir(parents=True)
    row = {"id": pid, "overrides": {}, "steps": 500, "flops_per_step": 1e9, "val_loss": 0.0, **fields}
    row["flops"] = row["flops_per_step"] * row["steps"]
    (folder / "result.json").write_text(json.dumps(row))


def test_an_embodiment_sweep_is_not_fitted_in_size_data_or_compute(tmp_path: Path) -> None:
    """Stems make the total size grow with the mixture and the data with it, and each mixture validates on its own
    split: no L(N), no L(D), no common frontier; the loss against the number of embodiments is plotted."""
    mixes = [["a"], ["a", "b", "c", "d"], [f"e{i}" for i in range(11)] + ["a"]]
    for i, mix in enumerate(mixes):
        _fake_result(tmp_path, f"mix{i}", params=1000 + 10 * len(mix), params_trunk=900, train_frames=100 * len(mix),
                     embodiments=mix, val_video_loss=1.0 + i, curve=[[100, 3.0 + i], [200, 2.0 + i]])
    report = analyse(tmp_path, n_boot=10)
    assert report["fits"]["params"] == [] and "not swept" in report["problems"]["params"][0]
    assert report["fits"]["train_frames"] == [] and "not swept" in report["problems"]["train_frames"][0]
    assert report["fits"]["flops"] == [] and "different embodiment mixtures" in report["problems"]["flops"][0]
    assert [Path(p).name for p in report["plots"]] == ["loss_vs_embodiments.png"]
    assert (tmp_path / "loss_vs_embodiments.png").stat().st_size > 1000


def test_a_size_sweep_groups_by_data_and_draws_the_frontier(tmp_path: Path) -> None:
    """Four trunk sizes at two data sizes on one mixture: one L(N) group per data size, L(D) not fittable (two
    values: said, not drawn as a curve), the frontier over all curves."""
    for n in (1e4, 2e4, 4e4, 8e4):
        for d in (900, 1000):
            loss = 2.0 + 30 * n ** -0.5 + 0.1 * (d == 900)
            _fake_result(tmp_path, f"n{int(n)}-d{d}", params=n + 50, params_trunk=n, train_frames=d,
                         embodiments=["a", "b"], val_video_loss=loss, flops_per_step=n,
                         curve=[[100, loss + 1], [500, loss]])
    report = analyse(tmp_path, n_boot=20)
    groups = [f["group"] for f in report["fits"]["params"]]  # in the numbers' order, not the strings'
    assert groups == ["D=900 frames, 2 embodiments, 500 steps", "D=1000 frames, 2 embodiments, 500 steps"]
    assert all(f["b"] == pytest.approx(0.5, abs=0.05) for f in report["fits"]["params"])
    assert report["fits"]["train_frames"] == [] and len(report["problems"]["train_frames"]) == 4
    assert "at least 4 distinct" in report["problems"]["train_frames"][0]
    assert report["frontier"] and {"loss_vs_params.png", "loss_vs_train_frames.png", "frontier.png"} <= {
        Path(p).name for p in report["plots"]}

# ------------------------------------------------------------------------------------------- engines
def _fake_slurm(tmp_path: Path, monkeypatch) -> None:
    """`srun` (which submitit looks for) and an `sbatch` that keeps the submission script and answers a job id."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {"sbatch": f"#!/bin/sh\ncp \"$@\" {tmp_path}/submitted.sh\necho 'Submitted batch job 4242'\n",
               "srun": "#!/bin/sh\nexit 0\n"}
    for name, text in scripts.items():
        exe = bin_dir / name
        exe.write_text(text)
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_submission_through_submitit_without_a_cluster(tmp_path: Path, monkeypatch) -> None:
    """A fake `sbatch` on PATH records what submitit submits: one job array with our resources."""
    _fake_slurm(tmp_path, monkeypatch)
    spec = load_sweep(_write_sweep(tmp_path), engine="slurm")
    spec.slurm = {"partition": "gpu", "timeout_min": 90, "gpus_per_node": 1, "array_parallelism": 3}
    jobs = point_jobs(spec)
    ids = submit_slurm(jobs, tmp_path / "submitit", spec.slurm, threads=6)
    assert sorted(ids.values()) == [f"4242_{i}" for i in range(4)]
    script = (tmp_path / "submitted.sh").read_text()
    for line in ("#SBATCH --array=0-3%3", "#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=6", "#SBATCH --gpus",
                 "#SBATCH --time=90"):
        assert line in script, line
    assert "submitit.core._submit" in script
    # the pickled calls are run_point on each point's job description
    import cloudpickle

    pickles = sorted((tmp_path / "submitit").glob("*_submitted.pkl"))
    assert len(pickles) == 4
    delayed = cloudpickle.loads(pickles[0].read_bytes())
    assert delayed.function.__name__ == "run_point" and delayed.args[0]["id"] in ids


def test_slurm_keys_map_to_submitit_parameters(tmp_path: Path, monkeypatch) -> None:
    _fake_slurm(tmp_path, monkeypatch)
    ex = slurm_executor(tmp_path, {"partition": "p", "mem_gb": 32}, threads=4, cluster="slurm")
    params = ex._executor.parameters
    assert params["partition"] == "p" and params["mem"] == "32GB" and params["cpus_per_task"] == 4


# ------------------------------------------------------------------------------------------- end to end
def test_tiny_sweep_end_to_end_grid_runs_table_fit_plot(tmp_path: Path, capsys) -> None:
    path = _write_sweep(tmp_path)
    assert sweep_main(["--config", str(path)]) == 0
    out = tmp_path / "out"
    rows = collect(out)
    assert len(rows) == 4
    assert sorted(r["params"] for r in rows) == sorted(set(r["params"] for r in rows))  # four distinct sizes
    for r in rows:
        assert r["steps"] == 12 and r["train_frames"] == 64 * 4
        assert np.isfinite(r["val_video_loss"]) and r["perplexity"] == pytest.approx(np.exp(r["val_video_loss"]))
        assert r["flops_per_step"] > 0 and r["flops"] == pytest.approx(r["flops_per_step"] * 12)
        assert [s for s, _ in r["curve"]] == [5, 11]
    # bigger trunks cost more FLOPs per step
    by_size = sorted(rows, key=lambda r: r["params"])
    assert all(a["flops_per_step"] < b["flops_per_step"] for a, b in zip(by_size, by_size[1:]))
    # a rerun skips every finished point (results untouched)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("points/*/result.json")}
    capsys.readouterr()
    assert sweep_main(["--config", str(path)]) == 0
    assert "4 done, 0 to run" in capsys.readouterr().out
    assert before == {p.name: p.stat().st_mtime_ns for p in out.glob("points/*/result.json")}
    # table -> fit -> plots
    assert sweep_main(["fit", str(out), "--n-boot", "20"]) == 0
    text = capsys.readouterr().out
    assert "results.csv" in text
    report = json.loads((out / "fits.json").read_text())
    assert report["points"] == 4
    # 12 steps of a tiny model: a fit or a clear reason, never silence
    assert report["fits"]["params"] or report["problems"]["params"]
    assert (out / "loss_vs_params.png").stat().st_size > 1000 and (out / "frontier.png").is_file()
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"params", "flops", "val_video_loss", "fit_seconds"} <= set(header)
    assert list((out / "tb_hparams").rglob("events.out.tfevents.*"))
    assert analyse(out, n_boot=5)["points"] == 4


def test_killed_point_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """A point with a last.ckpt and no result continues from the checkpoint's step instead of starting over."""
    path = _write_sweep(tmp_path)
    spec = load_sweep(path)
    job = point_jobs(spec)[0]
    from hma_zoo.sweep.point import run_point

    half = dict(job, overrides={**job["overrides"], "trainer.max_steps": 6})
    run_point(half)
    folder = Path(job["folder"])
    (folder / "result.json").unlink()  # as if killed after the checkpoint, before the evaluation
    result = run_point(job)
    assert result["steps"] == 12 and result["resumed"] and result["attempts"] == 2


def test_a_killed_attempt_still_counts_in_the_wall_time(tmp_path: Path) -> None:
    """timing.json is on record from an attempt's first second and kept current while it runs (a SIGKILL loses at
    most one tick), and the attempts add up."""
    import time

    from hma_zoo.sweep.point import _FitClock

    path = tmp_path / "timing.json"
    timing = {"fit_seconds": 10.0, "attempts": 1}
    with _FitClock(path, timing, every=0.05):
        assert json.loads(path.read_text())["fit_seconds"] >= 10.0  # written at the start
        time.sleep(0.4)
        mid = json.loads(path.read_text())["fit_seconds"]  # read while the attempt still runs
        assert 10.2 <= mid < 11.0
    assert json.loads(path.read_text())["fit_seconds"] >= 10.4


def test_sampled_metrics_when_asked(tmp_path: Path) -> None:
    """eval.sample_metrics adds PSNR and delta-PSNR (MaskGIT samples decoded by the tokenizer) to the result."""
    path = _write_sweep(tmp_path, eval={"batches": 1, "sample_metrics": 2})
    job = point_jobs(load_sweep(path))[0]
    from hma_zoo.sweep.point import run_point

    result = run_point(dict(job, overrides={**job["overrides"], "trainer.max_steps": 2}))
    assert np.isfinite(result["psnr"]) and np.isfinite(result["delta_psnr"])


# ------------------------------------------------------------------------------------------- eval.rollout
def _square_episodes(root: Path, train: int = 12, val: int = 4, frames: int = 8) -> Path:
    """Frame episodes of the synthetic ``square_s1`` robot (the moving square the sweep trains on) whose proprio is
    the square's top-left corner (y, x), read off the frames: the state a probe learns to read back."""
    from hma_zoo.data.schema import EmbodimentInfo, Episode
    from hma_zoo.data.shards import DatasetWriter
    from hma_zoo.lit.synthetic import SquareDataset, default_embodiments

    spec = default_embodiments()[0]
    info = EmbodimentInfo(spec.name, action_dim=spec.action_dim, control_hz=10.0, frame_hz=10.0)
    squares = SquareDataset([spec], train + val, frames, (64, 64), square=16, speed=6.0, seed=5_000_000)
    with DatasetWriter(root, [info], image_size=(64, 64)) as writer:
        for i in range(train + val):
            s = squares[i]
            video = s["frames"].numpy()
            corner = [np.argwhere(f.any(-1)).min(0) for f in video]  # (y, x) of the square in each frame
            writer.add(Episode(f"sq_{i:03d}", spec.name, s["actions"].numpy()[:, : spec.action_dim], frames=video,
                               proprio=np.asarray(corner, np.float32)), "val" if i >= train else "train")
    return root


def test_rollout_eval_section_is_checked(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # a working directory without data/ (the repo's own may have one)
    spec = load_sweep(_write_sweep(tmp_path, eval={"rollout": {"data": "data", "max_windows": 4, "steps": None}}))
    assert spec.eval.rollout == {"data": str(data.resolve()), "max_windows": 4}  # next to the sweep file; nulls out
    assert point_jobs(spec)[0]["eval"]["rollout"] == spec.eval.rollout
    assert load_sweep(_write_sweep(tmp_path)).eval.rollout is None
    with pytest.raises(FileNotFoundError, match=r"eval.rollout.data 'nowhere'.*hma-zoo data build"):
        load_sweep(_write_sweep(tmp_path, eval={"rollout": {"data": "nowhere"}}))
    with pytest.raises(FileNotFoundError, match=r"eval.rollout.probe.*hma-zoo probe fit"):
        load_sweep(_write_sweep(tmp_path, eval={"rollout": {"data": "data", "probe": "data"}}))
    with pytest.raises(ValueError, match="unknown eval.rollout keys"):
        load_sweep(_write_sweep(tmp_path, eval={"rollout": {"data": "data", "windows": 4}}))
    with pytest.raises(ValueError, match="needs `data:`"):
        load_sweep(_write_sweep(tmp_path, eval={"rollout": {"max_windows": 4}}))


def test_rollout_eval_adds_state_error_where_a_probe_exists(tmp_path: Path, caplog) -> None:
    """eval.rollout runs the evaluator on frame episodes: teacher-forced and rollout PSNR / delta-PSNR and the probe's
    state error join the result and results.csv; without a probe the state error is absent and a note says why."""
    from hma_zoo.eval.probe import fit_probe
    from hma_zoo.sweep.point import evaluate_point, run_point

    data = _square_episodes(tmp_path / "squares")
    fit_probe(str(data), tmp_path / "probe", steps=60, batch_size=16, lr=4e-3, log_every=60)
    rollout = {"data": str(data), "max_windows": 4, "batch_size": 4, "random_draws": 1, "horizon_multiple": 1}
    path = _write_sweep(tmp_path, eval={"batches": 1, "rollout": {**rollout, "probe": str(tmp_path / "probe"),
                                                                  "rollout": True}})
    job = point_jobs(load_sweep(path))[0]
    result = run_point(dict(job, overrides={**job["overrides"], "trainer.max_steps": 2}))
    for key in ("tf_psnr", "tf_delta_psnr", "rollout_psnr", "rollout_delta_psnr"):
        assert np.isfinite(result[key]), key
    for key in ("state_error_norm", "rollout_state_error_norm", "state_error_norm_floor", "state_error/square_s1",
                "rollout_state_error/square_s1"):
        assert np.isfinite(result[key]) and result[key] >= 0, key
    # the model's predicted frames, not the probe alone: two training steps are far from the real frames' floor
    assert result["state_error_norm"] != pytest.approx(result["state_error_norm_floor"], rel=1e-3)
    assert result["eval_windows"] == 4 and "eval_notes" not in result
    # results.csv carries the new columns; the fit runs on state_error_norm (one point: a reason, not a curve)
    out = tmp_path / "out"
    assert sweep_main(["fit", str(out), "--metric", "state_error_norm", "--n-boot", "5"]) == 0
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"tf_psnr", "state_error_norm", "rollout_state_error_norm", "state_error/square_s1"} <= set(header)
    assert json.loads((out / "fits.json").read_text())["problems"]["params"]
    # no probe (none given, none at <data>/probe): the same PSNR, no state error, and a note saying why
    caplog.set_level("WARNING")
    plain = evaluate_point(job["base"], {**job["overrides"], "trainer.max_steps": 2}, Path(job["folder"]),
                           {"batches": 1, "rollout": rollout})
    assert plain["tf_psnr"] == pytest.approx(result["tf_psnr"])
    assert not [k for k in plain if "state_error" in k or k.startswith("rollout_")]
    assert "no state probe" in plain["eval_notes"][0] and "no state probe" in caplog.text


def test_fit_on_state_error_norm_from_the_table(tmp_path: Path) -> None:
    """`hma-zoo sweep fit --metric state_error_norm` fits the eval.rollout column (rows without it left out)."""
    for i, n in enumerate((1e4, 3e4, 1e5, 3e5, 1e6)):
        folder = tmp_path / "points" / f"p{i}"
        folder.mkdir(parents=True)
        row = {"id": f"p{i}", "overrides": {"model.init_args.variant": f"w{i}"}, "params": n, "params_trunk": n,
               "train_frames": 256, "embodiments": ["a"], "steps": 10, "flops_per_step": n, "flops": 10 * n,
               "val_loss": 3.0, "val_video_loss": 3.0, "curve": [[10, 3.0 - 0.1 * i]], "fit_seconds": 1.0,
               "attempts": 1}
        if i < 4:
            row.update(state_error_norm=2.0 * (n / 1e4) ** -0.3 + 0.2, **{"state_error/a": 1.0 + i})
        (folder / "result.json").write_text(json.dumps(row))
    report = analyse(tmp_path, metric="state_error_norm", n_boot=20)
    fit = report["fits"]["params"][0]
    assert fit["n"] == 4 and fit["b"] == pytest.approx(0.3, abs=0.05)
    lines = (tmp_path / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[-2:] == ["state_error_norm", "state_error/a"]
    assert lines[-1].split(",")[-2:] == ["", ""]  # the point without an eval.rollout result
