"""Comparison statistics against scipy on the raw per-example losses."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats as sp

from msewatch.schemas.records import EXAMPLES, ExampleKind
from msewatch.transforms.compare import stats
from msewatch.transforms.metrics.paired import MOMENTS, group_paired, pair_rows


def _losses(rng, n, scale):
    e = rng.normal(0.0, scale, n)
    return e * e, np.abs(e)


@pytest.mark.parametrize("which", ["se", "ae"])
def test_unpaired_equals_scipy_welch(which):
    rng = np.random.default_rng(7)
    b = _losses(rng, 311, 1.0)[which == "ae"]
    c = _losses(rng, 457, 1.15)[which == "ae"]
    # unit weights: sum_w = n, sum_w2 = n, sum_loss = Σx, sum_loss2 = Σx²
    est = stats.unpaired(
        (len(b), len(b), b.sum(), (b * b).sum()), (len(c), len(c), c.sum(), (c * c).sum())
    )
    ref = sp.ttest_ind(c, b, equal_var=False, alternative="greater")
    assert est.t_stat == pytest.approx(ref.statistic, rel=1e-9)
    assert est.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert est.df == pytest.approx(ref.df, rel=1e-9)
    assert est.metric_baseline == pytest.approx(b.mean(), rel=1e-12)
    assert est.ratio == pytest.approx(c.mean() / b.mean(), rel=1e-12)


def test_integer_weights_equal_repeated_examples():
    # a weight of 3 is (as to the means) three copies; Kish's n is then sum_w²/sum_w2
    rng = np.random.default_rng(3)
    x = rng.exponential(2.0, 50)
    w = rng.integers(1, 4, 50).astype(float)
    mean, var_mean, n = stats.group_moments(
        w.sum(), (w * w).sum(), (w * x).sum(), (w * x * x).sum()
    )
    assert mean == pytest.approx(np.average(x, weights=w), rel=1e-12)
    assert n == pytest.approx(w.sum() ** 2 / (w * w).sum(), rel=1e-12)
    # hand: weighted variance (population form), Bessel-corrected with Kish's n, over n
    pop = np.average((x - mean) ** 2, weights=w)
    assert var_mean == pytest.approx(pop * n / (n - 1) / n, rel=1e-9)


def _examples(ids, versions, y_pred, y_true):
    n = len(ids)
    return pa.Table.from_pydict(
        {
            "kind": np.full(n, ExampleKind.LABELED, np.int8),
            "event_time_ms": np.zeros(n, np.int64),
            "y_pred": y_pred,
            "y_true": y_true,
            "weight": np.ones(n),
            "label_lag_s": np.zeros(n),
            "model_version": versions,
            "prediction_id": ids,
        },
        schema=EXAMPLES,
    )


@pytest.mark.parametrize("metric", ["mse", "mae"])
def test_paired_moments_from_examples_equal_scipy_ttest_rel(metric):
    rng = np.random.default_rng(11)
    n = 400
    y = rng.normal(10, 3, n)
    pb, pc = y + rng.normal(0, 1.0, n), y + rng.normal(0.1, 1.05, n)
    ids = [f"id{i}" for i in range(n)]
    # shuffled, with 30 baseline-only and 20 candidate-only ids that have no twin
    table = _examples(
        ids + ids + [f"b{i}" for i in range(30)] + [f"c{i}" for i in range(20)],
        ["v1"] * n + ["v2"] * n + ["v1"] * 30 + ["v2"] * 20,
        np.concatenate([pb, pc, rng.normal(0, 1, 50)]),
        np.concatenate([y, y, rng.normal(0, 1, 50)]),
    )
    table = table.take(rng.permutation(table.num_rows))
    found = pair_rows(table, [("v1", "v2")])
    [(baseline, moments)] = group_paired(found, np.zeros(table.num_rows, np.int64), 1)[0]
    m = dict(zip(MOMENTS, moments, strict=True))
    assert baseline == "v1" and m["n"] == n
    eb, ec = pb - y, pc - y
    if metric == "mse":
        b, c = eb**2, ec**2
        args = (m["sum_se_b"], m["sum_se_c"], m["sum_se_bb"], m["sum_se_cc"], m["sum_se_bc"])
    else:  # Σ|e|² is Σe²: the squared-error sums serve as the absolute errors' squares
        b, c = np.abs(eb), np.abs(ec)
        args = (m["sum_ae_b"], m["sum_ae_c"], m["sum_se_b"], m["sum_se_c"], m["sum_ae_bc"])
    est = stats.paired(m["n"], *args)
    ref = sp.ttest_rel(c, b, alternative="greater")
    assert est.t_stat == pytest.approx(ref.statistic, rel=1e-9)
    assert est.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert est.df == ref.df
    assert est.ratio == pytest.approx(c.mean() / b.mean(), rel=1e-12)


def test_paired_ratio_standard_error_matches_the_delta_method_by_hand():
    # b = (1, 2, 3), c = (2, 2, 5): means 2 and 3; var_b = 1, var_c = 3, cov = 1.5
    # var(C/B) = (var_c - 2 q cov + q² var_b) / (n B²), q = 3/2: (3 - 4.5 + 2.25)/12 = 0.0625
    b, c = np.array([1.0, 2, 3]), np.array([2.0, 2, 5])
    est = stats.paired(3, b.sum(), c.sum(), (b * b).sum(), (c * c).sum(), (b * c).sum())
    assert est.se_ratio == pytest.approx(0.25, rel=1e-12)


def test_the_confidence_sequence_is_wider_than_the_fixed_interval_and_shrinks():
    t = np.array([100.0, 1e3, 1e4, 1e5])
    m = stats.cs_multiplier(t, 0.05, t_opt=1e3)
    assert (m > sp.norm.ppf(0.975)).all()  # a price for looking after every window
    # at t_opt the multiplier is sqrt(2 (x+1)/x log(sqrt(x+1)/α)), x = -2logα + log(1-2logα)
    x = -2 * np.log(0.05) + np.log(1 - 2 * np.log(0.05))
    assert m[1] == pytest.approx(np.sqrt(2 * (x + 1) / x * np.log(np.sqrt(x + 1) / 0.05)))
    assert m[0] > m[1] < m[2] < m[3]  # wide early; grows like sqrt(log t) past t_opt


def test_decisions_follow_the_bounds_and_the_margin():
    low = np.array([0.06, -0.10, 0.01, 0.06, np.nan])
    high = np.array([0.20, 0.04, 0.09, 0.20, 0.1])
    enough = np.array([True, True, True, False, True])
    got = stats.decide(low, high, 0.05, enough)
    assert got.tolist() == ["FAIL", "PASS", "INCONCLUSIVE", "INCONCLUSIVE", "INCONCLUSIVE"]


def test_a_run_without_comparisons_does_not_import_scipy():
    """scipy.stats costs ~0.7 s at start-up; only a run that compares versions pays it."""
    import subprocess
    import sys

    code = (
        "import sys, msewatch.cli, msewatch.runners.launch, msewatch.pipelines.monitor; "
        "print('scipy.stats' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
