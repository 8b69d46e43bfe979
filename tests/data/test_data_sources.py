"""Simulator sources: each family builds 2 short episodes in its own worker process (slow)."""

import numpy as np
import pytest

from hma_zoo.data.build import build_dataset, list_mixtures, mixture_specs
from hma_zoo.data.shards import iter_episodes, join, load_manifest
from hma_zoo.data.sources.base import SourceSpec, episode_seed, smoothed_random_actions
from hma_zoo.data.sources.pusht import scripted_push_target

SPECS = {
    "dmc": SourceSpec("dmc", "dmc_reacher", 2, 8, 2, {"domain": "reacher", "task": "easy"}),
    "gym_pusher": SourceSpec("gym", "gym_pusher", 2, 8, 2, {"env_id": "Pusher-v5"}),
    "gym_reacher": SourceSpec("gym", "gym_reacher", 2, 8, 2, {"env_id": "Reacher-v5"}),
    "gym_generic": SourceSpec("gym", "gym_pendulum", 2, 6, 1, {"env_id": "Pendulum-v1"}),
    "pusht": SourceSpec("pusht", "pusht", 2, 6, 1, {"scripted_fraction": 0.5}),
    "metaworld": SourceSpec("metaworld", "metaworld_sawyer", 2, 8, 2, {"tasks": ["reach-v3"]}),
}
DIMS = {"dmc": 2, "gym_pusher": 7, "gym_reacher": 2, "gym_generic": 1, "pusht": 2, "metaworld": 4}


def _read(root):
    m = load_manifest(root)
    return m, {ep.episode_id: ep for s in m["shards"] for ep in iter_episodes(join(str(root), s["path"]))}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(SPECS))
def test_source_builds_two_episodes(tmp_path, family):
    spec = SPECS[family]
    manifest = build_dataset([spec], tmp_path / "d", workers=1, image_size=(32, 32), val_fraction=0, progress=False)
    m, eps = _read(tmp_path / "d")
    assert len(eps) == 2 and manifest["embodiments"][spec.name]["action_dim"] == DIMS[family]
    for ep in eps.values():
        assert ep.frames.shape == (spec.num_frames, 32, 32, 3)
        assert ep.actions.shape == ((spec.num_frames - 1) * spec.stride, DIMS[family])
        assert ep.frames.std() > 1.0  # rendered something (dm_control beside EGL gives black frames)
    a, b = eps.values()
    assert not np.array_equal(a.actions, b.actions)  # different seeds -> different episodes


@pytest.mark.slow
def test_build_is_deterministic_across_worker_counts(tmp_path):
    spec = SourceSpec("dmc", "dmc_cartpole", 3, 8, 2, {"domain": "cartpole", "task": "swingup"})
    build_dataset([spec], tmp_path / "a", workers=1, chunk_size=3, image_size=(32, 32), progress=False)
    build_dataset([spec], tmp_path / "b", workers=2, chunk_size=1, image_size=(32, 32), progress=False)
    _, ea = _read(tmp_path / "a")
    _, eb = _read(tmp_path / "b")
    assert sorted(ea) == sorted(eb)
    for k in ea:
        np.testing.assert_array_equal(ea[k].actions, eb[k].actions)
        np.testing.assert_array_equal(ea[k].frames, eb[k].frames)


def test_mixtures_meet_the_brief():
    specs = mixture_specs("sim-mix")
    assert len(specs) >= 8
    dims = {"dmc_cartpole": 1, "dmc_reacher": 2, "dmc_hopper": 4, "dmc_manipulator": 5, "dmc_cheetah": 6,
            "gym_pusher": 7, "gym_hopper": 3}
    assert set(dims) <= {s.name for s in specs}
    assert set(dims.values()) == set(range(1, 8))
    assert "sim-mix-mini" in list_mixtures()
    assert len(mixture_specs("sim-mix-mini")) >= 3
    assert all(s.episodes == 5 for s in mixture_specs("sim-mix", episodes=5))


def test_seeds_and_smoothed_actions():
    assert episode_seed(0, "a", 1) == episode_seed(0, "a", 1) != episode_seed(0, "a", 2)
    assert episode_seed(0, "a", 1) != episode_seed(0, "b", 1) != episode_seed(1, "a", 1)
    rng = np.random.default_rng(0)
    a = smoothed_random_actions(rng, np.array([-1.0, 0.0]), np.array([1.0, 2.0]), 500)
    assert a.shape == (500, 2) and (a >= [-1, 0]).all() and (a <= [1, 2]).all()
    white = np.random.default_rng(1).uniform(-1, 1, 500)
    lag1 = np.corrcoef(a[1:, 0], a[:-1, 0])[0, 1]
    assert lag1 > 0.5 > abs(np.corrcoef(white[1:], white[:-1])[0, 1])  # temporally correlated, unlike white noise


def test_scripted_pusher_goes_behind_then_pushes():
    block, goal = np.array([256.0, 256.0]), np.array([356.0, 256.0])
    behind = scripted_push_target(np.array([211.0, 256.0]), block, goal)  # at the contact point -> push to goal
    assert behind[0] > block[0]
    detour = scripted_push_target(np.array([400.0, 256.0]), block, goal)  # on the goal side -> go around
    assert abs(detour[1] - 256.0) > 40
