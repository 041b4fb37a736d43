"""The comparison kernel: which windows count, when it evaluates, the alert's life."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from msewatch.transforms.compare.kernel import ComparisonEvaluator, evaluate, evaluate_history
from msewatch.transforms.compare.spec import Comparison

H = 3_600_000
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _t(ms: int) -> datetime.datetime:
    return EPOCH + datetime.timedelta(milliseconds=ms)


def _row(version, hour, n, mse, *, pane=0, coverage=1.0, length_h=1, kurtosis=3.0):
    """A metrics row of ``n`` unit-weight scored predictions whose squared errors have
    mean ``mse`` and mean square ``kurtosis * mse²`` (3: normal errors)."""
    return {
        "slice": f"model_version={version},region=eu",
        "window_start": _t((hour + 1 - length_h) * H),
        "window_end": _t((hour + 1) * H),
        "pane_index": pane,
        "label_coverage": coverage,
        "complete": False,
        "scored": n,
        "sum_w": float(n),
        "sum_w2": float(n),
        "sum_se": n * mse,
        "sum_se2": n * kurtosis * mse * mse,
        "sum_ae": n * np.sqrt(mse),
        "paired": [],
    }


def _cmp(**kw):
    args = {"name": "c", "baseline": "v1", "candidate": "v2", "min_scored": 100}
    return Comparison(**{**args, **kw})


def test_a_window_counts_only_when_both_versions_pass_the_label_gate():
    rows = [_row("v1", h, 200, 1.0) for h in range(3)]
    rows += [_row("v2", 0, 200, 1.0), _row("v2", 1, 200, 1.0, coverage=0.5)]  # no hour 2
    results, _ = evaluate_history(_cmp(), "region=eu", rows)
    # hour 1's candidate is at 50 % coverage, hour 2 has no candidate: one frontier, 01:00
    assert [(r.frontier_ms, r.windows, r.n_baseline) for r in results] == [(H, 1, 200)]


def test_the_frontier_freezes_without_new_labels_and_a_late_pane_reevaluates_it():
    ev = ComparisonEvaluator(_cmp(), "region=eu")
    results, _ = ev.update([_row("v1", 0, 200, 1.0), _row("v2", 0, 200, 1.0)])
    assert [r.frontier_ms for r in results] == [H]
    # hour 1's candidate is still unlabeled: nothing counts, nothing is evaluated
    assert ev.update([_row("v1", 1, 200, 1.0), _row("v2", 1, 200, 1.0, coverage=0.1)]) == ([], [])
    # a late pane of hour 0 changes a summed window: evaluated again at the same frontier
    results, _ = ev.update([_row("v2", 0, 300, 1.0, pane=1)])
    assert [(r.frontier_ms, r.n_candidate) for r in results] == [(H, 300)]
    # an older pane arriving late does not replace the newer one: nothing to evaluate
    assert ev.update([_row("v2", 0, 50, 1.0, pane=0)]) == ([], [])


def test_the_alert_fires_at_fail_holds_through_inconclusive_and_resolves_at_pass():
    ev = ComparisonEvaluator(_cmp(margin=0.05), "region=eu")
    n = 20_000
    # C/B - 1 = +50 % with 20 000 each: se_r ~ sqrt(2/n + 2·1.5²/n) ~ 0.018: FAIL
    _, fired = ev.update([_row("v1", 0, n, 1.0), _row("v2", 0, n, 1.5)])
    assert [(t.state, t.sli, t.value) for t in fired] == [("firing", "comparison", 0.5)]
    # +5 % exactly on 200 each: the bounds straddle the margin: INCONCLUSIVE, no change
    results, none = ev.update([_row("v1", 30, 200, 1.0), _row("v2", 30, 200, 1.05)])
    assert results[0].decision == "INCONCLUSIVE" and none == []
    assert ev.firing() and ev.firing()[0].alert == "c/page/region=eu"
    # equal models on 200 000 each (a lookback of 24h has dropped the +50 % hour): PASS
    results, resolved = ev.update([_row("v1", 40, 200_000, 1.0), _row("v2", 40, 200_000, 1.0)])
    assert results[0].decision == "PASS"
    assert [t.state for t in resolved] == ["resolved"] and ev.firing() == []


def test_sliding_windows_are_summed_without_counting_a_prediction_twice():
    # 2h windows every hour: the lookback of 4h at frontier 05:00 holds the windows ending
    # 02:00, 03:00, 04:00, 05:00; only 03:00 and 05:00 tile back from 05:00 (no overlap)
    rows = [_row(v, h, 100, 1.0, length_h=2) for h in range(1, 5) for v in ("v1", "v2")]
    results, _ = evaluate_history(_cmp(lookback_s=4 * 3600), "region=eu", rows)
    last = results[-1]
    assert (last.frontier_ms, last.windows, last.n_baseline) == (5 * H, 2, 200)


def test_a_long_history_is_evaluated_in_chunks_with_the_numbers_of_one_pass():
    rng = np.random.default_rng(5)
    hours = 700  # several chunks of frontiers
    mse_b, mse_c = rng.uniform(0.8, 1.2, hours), rng.uniform(0.8, 1.3, hours)
    rows = [_row("v1", h, 150, mse_b[h]) for h in range(hours)]
    rows += [_row("v2", h, 150, mse_c[h]) for h in range(hours)]
    c = _cmp(lookback_s=24 * 3600)
    results, _ = evaluate_history(c, "region=eu", rows)
    ends = np.arange(1, hours + 1, dtype=np.int64) * H
    starts, scored = ends - H, np.full(hours, 150.0)
    group = lambda m: np.column_stack([scored, scored, 150 * m, 150 * 3 * m * m])  # noqa: E731
    whole = evaluate(
        c,
        ends,
        (starts, scored, group(mse_b)),
        (starts, scored, group(mse_c), np.zeros((hours, 6))),
        ends,
    )
    assert [r.frontier_ms for r in results] == list(ends)
    np.testing.assert_allclose([r.ratio for r in results], whole["ratio"], rtol=1e-12)
    np.testing.assert_allclose([r.ci_low for r in results], whole["ci_low"], rtol=1e-12)
    assert [r.decision for r in results] == list(whole["decision"])
    assert max(r.windows for r in results) == 24


@pytest.mark.parametrize("mode", ["paired", "auto"])
def test_without_pairs_paired_mode_is_inconclusive_and_auto_falls_back_to_welch(mode):
    rows = [_row("v1", 0, 5000, 1.0), _row("v2", 0, 5000, 2.0)]
    [result], _ = evaluate_history(_cmp(mode=mode), "region=eu", rows)
    assert result.paired == (mode == "paired")
    assert result.decision == ("INCONCLUSIVE" if mode == "paired" else "FAIL")


def test_routing_keeps_escaped_slice_values_and_versions_with_separators():
    # a version "v,2" and a region "eu,north=1" are written escaped in slice names
    # (metrics/slices.py); the route unescapes the version and keeps the rest's escaping
    import functools

    from msewatch.transforms.compare.transform import _keys
    from msewatch.transforms.keyed_evaluation import RouteBySlice

    comparisons = (_cmp(baseline="v1", candidate="v,2", slices=("region=*",)),)
    route = RouteBySlice(functools.partial(_keys, comparisons))
    rows = {
        "model_version=v%2C2,region=eu%2Cnorth%3D1": [("c", "region=eu%2Cnorth%3D1")],
        "model_version=v1,region=eu%2Cnorth%3D1": [("c", "region=eu%2Cnorth%3D1")],
        "model_version=v3,region=eu": [],  # neither version
        "region=eu": [],  # no model_version
        "model_version=v1": [],  # overall is not among the patterns
    }
    for name, keys in rows.items():
        assert [key for key, _ in route.process({"slice": name})] == keys, name
