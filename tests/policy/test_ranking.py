"""hma_zoo.policy.ranking: intervals, agreement statistics (Pearson, Spearman, MMRV), summaries, reports and the
side-by-side GIF, against hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hma_zoo.policy.ranking import (
    NA_TEXT,
    PolicyResult,
    combine,
    mean_interval,
    mmrv,
    pearson,
    side_by_side_gif,
    spearman,
    summarize,
    to_markdown,
    wilson_interval,
    write_report,
)
from hma_zoo.video import read_video

# ------------------------------------------------------------------------------------------------------ intervals


def test_wilson_known_values() -> None:
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    z2 = 1.96**2
    low, high = wilson_interval(0, 10)  # closed forms at the edges: (0, z^2/(n+z^2)) and (n/(n+z^2), 1)
    assert low == 0.0 and high == pytest.approx(z2 / (10 + z2), abs=1e-12)
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(10 / (10 + z2), abs=1e-12)


@pytest.mark.parametrize("n", [1, 3, 10, 50])
def test_wilson_contains_rate_and_narrows(n: int) -> None:
    for k in range(n + 1):
        low, high = wilson_interval(k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0
    # more trials at the same rate give a narrower interval
    a, b = wilson_interval(4, 10), wilson_interval(40, 100)
    assert b[1] - b[0] < a[1] - a[0]
    # a smaller z gives a narrower interval
    c = wilson_interval(4, 10, z=1.0)
    assert c[1] - c[0] < a[1] - a[0]


def test_wilson_rejects_bad_counts() -> None:
    with pytest.raises(ValueError):
        wilson_interval(0, 0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_mean_interval() -> None:
    mean, low, high = mean_interval([0.2, 0.4, 0.6])  # s = 0.2
    half = 1.96 * 0.2 / math.sqrt(3)
    assert mean == pytest.approx(0.4)
    assert (low, high) == (pytest.approx(0.4 - half), pytest.approx(0.4 + half))
    assert mean_interval([0.7]) == (0.7, 0.7, 0.7)
    assert mean_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError):
        mean_interval([])


# ------------------------------------------------------------------------------------------------------ agreement


def test_pearson_hand_computed() -> None:
    x, y = [1, 2, 3, 4], [1, 4, 9, 16]  # dx.dy = 25, |dx|^2 = 5, |dy|^2 = 129
    assert pearson(x, y) == pytest.approx(25 / math.sqrt(5 * 129), abs=1e-9)
    assert pearson(x, [2 * v + 1 for v in x]) == pytest.approx(1.0, abs=1e-9)
    assert pearson(x, [-v for v in x]) == pytest.approx(-1.0, abs=1e-9)


def test_spearman_hand_computed() -> None:
    # perfectly monotone but non-linear: rank correlation 1, linear correlation below 1
    x, y = [0.1, 0.2, 0.3, 0.4, 0.5], [0.001, 0.008, 0.027, 0.064, 0.125]
    assert spearman(x, y) == pytest.approx(1.0, abs=1e-5)
    assert pearson(x, y) < 0.99
    # rho = 1 - 6 sum d^2 / (n (n^2 - 1)) with d = (1, -1, 1, -1, 0): 1 - 24 / 120
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8, abs=1e-5)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0, abs=1e-5)
    # ties take their mean rank: ranks (1, 2.5, 2.5, 4) vs (1, 3, 2, 4): 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(22.5), abs=1e-5)


@pytest.mark.parametrize("fn", [pearson, spearman])
def test_correlation_undefined_is_nan(fn, recwarn) -> None:
    assert math.isnan(fn([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]))  # no spread in one list
    assert math.isnan(fn([0.1, 0.2, 0.3], [0.0, 0.0, 0.0]))
    assert math.isnan(fn([0.1, 0.2], [0.3, 0.4]))  # fewer than 3 policies
    assert math.isnan(fn([], []))
    assert not [w for w in recwarn.list if "variance" in str(w.message)]
    with pytest.raises(ValueError):
        fn([0.1, 0.2, 0.3], [0.1, 0.2])


def test_mmrv_hand_computed() -> None:
    real = [0.1, 0.5, 0.9]
    assert mmrv(real, real) == 0.0
    assert mmrv(real, [0.0, 0.2, 0.3]) == 0.0  # same order, other scale
    # last two swapped: policies 1 and 2 each violate by |0.5 - 0.9|, policy 0 not at all
    assert mmrv(real, [0.1, 0.9, 0.5]) == pytest.approx(0.8 / 3)
    # fully reversed: max violations 0.8, 0.4, 0.8 (in real units, whatever the predicted gaps)
    assert mmrv(real, [0.9, 0.5, 0.1]) == pytest.approx(2.0 / 3)
    assert mmrv(real, [0.3, 0.2, 0.0]) == pytest.approx(2.0 / 3)
    # ties are violations under strict comparison: (P_i < P_j) != (R_i < R_j); here policy 0 is charged 0.2 and
    # policies 1 and 2 are charged 0.1 each
    assert mmrv([0.1, 0.3, 0.2], [0.5, 0.5, 0.9]) == pytest.approx(0.4 / 3)
    assert math.isnan(mmrv([0.5], [0.1]))
    with pytest.raises(ValueError):
        mmrv([0.1, 0.2], [0.1])


# ------------------------------------------------------------------------------------------------- results, report


def _results(judge: bool = True) -> list[PolicyResult]:
    rates = {"expert": (8, 7, 8), "bc": (5, 5, 4), "noisy": (3, 3, 3), "random": (0, 1, 0)}  # real, world, judge
    out = []
    for name, (r, w, j) in rates.items():
        out.append(
            PolicyResult(
                name,
                real=[1] * r + [0] * (10 - r),
                world=[1] * w + [0] * (10 - w),
                world_on_real=[1] * j + [0] * (10 - j) if judge else None,
            )
        )
    return out


def test_policy_result_properties() -> None:
    res = _results()[0]
    assert res.real_mean == pytest.approx(0.8) and res.world_mean == pytest.approx(0.7)
    assert res.real_interval == wilson_interval(8, 10) and res.world_interval == wilson_interval(7, 10)
    assert res.world_on_real_mean == pytest.approx(0.8)
    assert PolicyResult("x", real=[1, 0], world=[0, 0]).world_on_real_mean is None
    cont = PolicyResult("p", real=[0.2, 0.4, 0.6], world=[0.5], binary=False)
    assert cont.real_interval == mean_interval([0.2, 0.4, 0.6])[1:]
    assert cont.world_interval == (0.5, 0.5)
    with pytest.raises(ValueError):
        PolicyResult("bad", real=[0.5], world=[1])  # binary scores must be 0/1
    with pytest.raises(ValueError):
        PolicyResult("empty", real=[], world=[1])


def test_summarize_and_markdown() -> None:
    results = _results()
    summary = summarize("reach", results, {"model": "hma-vq", "seeds": (0, 1), "out": Path("/tmp/x")})
    json.dumps(summary, allow_nan=False)  # strict JSON
    real = [0.8, 0.5, 0.3, 0.0]
    world = [0.7, 0.5, 0.3, 0.1]
    a = summary["agreement"]
    assert a["n_policies"] == 4
    assert a["pearson"] == pytest.approx(pearson(real, world))
    assert a["pearson"] == pytest.approx(0.26 / math.sqrt(0.34 * 0.2), abs=1e-9)  # centred dot products by hand
    assert a["spearman"] == pytest.approx(1.0, abs=1e-5)
    assert a["mmrv"] == 0.0
    assert summary["judge_agreement"]["pearson"] == pytest.approx(pearson(real, [0.8, 0.4, 0.3, 0.0]))
    row = summary["policies"][0]
    assert row["name"] == "expert" and row["n"] == 10 and row["real"]["mean"] == pytest.approx(0.8)
    assert (row["real"]["low"], row["real"]["high"]) == pytest.approx(wilson_interval(8, 10))
    assert summary["meta"] == {"model": "hma-vq", "seeds": [0, 1], "out": "/tmp/x"}

    md = to_markdown(summary)
    assert md.startswith("# Policy evaluation: reach")
    assert "| expert | 10 | 0.80 [0.49, 0.94] | 0.70 [0.40, 0.89] | 0.80 [0.49, 0.94] |" in md
    assert f"Pearson {a['pearson']:.3f} (target ≥ 0.95: met)" in md
    assert "Spearman 1.000 (target ≥ 0.9: met)" in md and "MMRV 0.000" in md
    assert "Judge only" in md and "- model: hma-vq" in md


def test_markdown_missed_and_undefined() -> None:
    backwards = [  # the world model ranks the policies backwards
        PolicyResult(r.name, real=r.real, world=[1.0] * w + [0.0] * (10 - w))
        for r, w in zip(_results(judge=False), [1, 3, 6, 8])
    ]
    md = to_markdown(summarize("pusht", backwards, {}))
    assert "(target ≥ 0.95: missed)" in md and "(target ≥ 0.9: missed)" in md and "Judge only" not in md

    two = summarize("pusht", _results()[:2], {})
    assert two["agreement"]["pearson"] is None and two["agreement"]["spearman"] is None
    json.dumps(two, allow_nan=False)
    md = to_markdown(two)
    assert f"Pearson {NA_TEXT}" in md and f"Spearman {NA_TEXT}" in md and "nan" not in md.lower()


def test_write_report_and_combine(tmp_path) -> None:
    summary = summarize("reach", _results(), {"judge": "probe"})
    json_path, md_path = write_report(summary, tmp_path / "out" / "reach")
    assert json.loads(json_path.read_text()) == summary
    assert md_path.read_text() == to_markdown(summary)
    write_report(summary, tmp_path / "out" / "reach")  # overwrites in place, leaves no temporary files
    assert sorted(p.name for p in (tmp_path / "out" / "reach").iterdir()) == ["report.md", "summary.json"]

    other = summarize("pusht", _results()[:2], {})
    doc = combine([summary, other])
    assert doc.startswith("# Policy evaluation\n")
    assert f"| reach | 4 | {summary['agreement']['pearson']:.3f} | 1.000 | 0.000 |" in doc
    assert f"| pusht | 2 | {NA_TEXT} | {NA_TEXT} |" in doc
    assert "## Policy evaluation: reach" in doc and "## Policy evaluation: pusht" in doc


# ----------------------------------------------------------------------------------------------------------- video


def _clip(t: int, h: int, w: int, colour: tuple[int, int, int]) -> np.ndarray:
    frames = np.zeros((t, h, w, 3), dtype=np.uint8)
    for i in range(t):  # a coloured bar that moves right: every frame differs (GIF merges identical frames)
        frames[i, 4:8, 2 * i : 2 * i + 3] = colour
    return frames


def test_side_by_side_gif(tmp_path) -> None:
    real = _clip(6, 16, 20, (255, 0, 0))
    world = _clip(4, 16, 24, (0, 0, 255))
    path = side_by_side_gif(real, world, tmp_path / "cmp.gif", labels=None)
    back = read_video(path)
    assert back.shape == (6, 16, 20 + 2 + 24, 3)  # longest clip; widths plus the 2-pixel separator
    assert (back[:, :, 20:22] == 255).all()  # white separator
    np.testing.assert_array_equal(back[5, :, 22:], world[-1])  # shorter clip padded with its last frame
    np.testing.assert_array_equal(back[5, :, :20], real[5])

    labelled = read_video(side_by_side_gif(real, world, tmp_path / "sub" / "lab.gif"))
    assert labelled.shape[0] == 6 and labelled.shape[2] == 46 and labelled.shape[1] > 16
    np.testing.assert_array_equal(labelled[0, -16:, :20], real[0])  # the label strip sits above the clip
    with pytest.raises(ValueError):
        side_by_side_gif(real, _clip(4, 12, 24, (0, 0, 255)), tmp_path / "bad.gif")
