"""Simulated rollouts (fixed seeds): how often a comparison FAILs, and how soon.

Each run is 7 days of hourly windows of one slice, evaluated after every window as
the pipeline does (transforms/compare/kernel.py ``evaluate`` at every frontier).
Errors are normal; a model's MSE is its error variance. The numbers printed here
are the ones in docs/slo.md (Simulated rollouts).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sp

from msewatch.transforms.compare.kernel import evaluate
from msewatch.transforms.compare.spec import Comparison

RUNS, HOURS, PER_HOUR = 200, 168, 400
HOUR_MS = 3_600_000
ENDS = np.arange(1, HOURS + 1, dtype=np.int64) * HOUR_MS
STARTS = ENDS - HOUR_MS


def _group(e: np.ndarray) -> np.ndarray:
    """(hours, per_hour) errors -> per window (sum_w, sum_w2, Σe², Σe⁴), unit weights."""
    se = e * e
    n = np.full(e.shape[0], float(e.shape[1]))
    return np.column_stack([n, n, se.sum(axis=1), (se * se).sum(axis=1)])


def _paired(eb: np.ndarray, ec: np.ndarray) -> np.ndarray:
    b, c = eb * eb, ec * ec
    n = np.full(eb.shape[0], float(eb.shape[1]))
    sums = [b.sum(1), c.sum(1), (b * b).sum(1), (c * c).sum(1), (b * c).sum(1)]
    return np.column_stack([n, *sums])


def _decisions(comparison, eb, ec, shadow=False):
    """After every window of one run: the decision, the fixed-horizon p-value, and
    whether a fixed-horizon one-sided interval (r - z se > margin) would FAIL."""
    scored = np.full(HOURS, float(eb.shape[1]))
    pairs = _paired(eb, ec) if shadow else np.zeros((HOURS, 6))
    cols = evaluate(
        comparison,
        ENDS,
        (STARTS, scored, _group(eb)),
        (STARTS, scored, _group(ec), pairs),
        ENDS,
    )
    z = sp.norm.ppf(1 - comparison.alpha)
    naive_fail = (cols["ratio"] - 1 - z * cols["se_ratio"]) > comparison.margin
    return cols["decision"], cols["p_value"], naive_fail


def _first(hit: np.ndarray) -> float:
    """Hours until the first True (inf if never)."""
    return float(np.argmax(hit) + 1) if hit.any() else np.inf


def _canaries(comparison, mse_ratio, seed, shadow=False):
    """Per run: hours to the first FAIL, whether p < alpha at any window, and whether a
    fixed-horizon interval FAILs at any window."""
    rng = np.random.default_rng(seed)
    first_fail, naive, naive_fail = [], [], []
    for _ in range(RUNS):
        if shadow:  # both models see the same labels: the label noise is shared
            noise = rng.normal(0.0, 1.0, (HOURS, PER_HOUR))
            eb = rng.normal(0.0, 0.5, noise.shape) - noise  # MSE 1.25
            extra = 1.25 * mse_ratio - 1.0  # the candidate's own error variance
            ec = rng.normal(0.0, np.sqrt(extra), noise.shape) - noise
        else:  # a canary split: independent requests
            eb = rng.normal(0.0, 1.0, (HOURS, PER_HOUR))
            ec = rng.normal(0.0, np.sqrt(mse_ratio), (HOURS, PER_HOUR))
        decision, p, fixed = _decisions(comparison, eb, ec, shadow)
        first_fail.append(_first(decision == "FAIL"))
        naive.append(bool((p < comparison.alpha).any()))
        naive_fail.append(bool(fixed.any()))
    return np.array(first_fail), np.array(naive), np.array(naive_fail)


def _comparison(**kw) -> Comparison:
    args = {"name": "sim", "baseline": "v1", "candidate": "v2", "lookback_s": 7 * 86400}
    return Comparison(**{**args, **kw})


def _slack(alpha: float) -> float:
    """The share of RUNS that a true rate of alpha stays under 99.9 % of the time."""
    return sp.binom.ppf(0.999, RUNS, alpha) / RUNS


def test_equal_canaries_rarely_fail_even_when_looked_at_every_hour(capsys):
    c = _comparison(mode="unpaired")
    first_fail, naive, _ = _canaries(c, 1.0, seed=1)
    ever = np.isfinite(first_fail).mean()
    day_first, _, _ = _canaries(_comparison(mode="unpaired", lookback_s=86400), 1.0, seed=2)
    with capsys.disabled():
        print(
            f"\n[simulation] equal models, {RUNS} canaries x {HOURS} hourly looks: "
            f"ever FAIL {ever:.1%} (7d lookback), {np.isfinite(day_first).mean():.1%} "
            f"(24h lookback); a fixed-horizon p < {c.alpha} at any look: {naive.mean():.1%}"
        )
    assert ever <= _slack(c.alpha)
    assert np.isfinite(day_first).mean() <= _slack(c.alpha)
    # the naive repeated test is the reason for the confidence sequence: it errs often
    assert naive.mean() > 2 * c.alpha


def test_a_candidate_exactly_at_the_margin_fails_at_most_alpha_of_the_time(capsys):
    # the hardest true null: C / B - 1 equals the margin (5 %), looked at every hour
    c = _comparison(mode="unpaired")
    first_fail, _, fixed = _canaries(c, 1.05, seed=7)
    ever = np.isfinite(first_fail).mean()
    with capsys.disabled():
        print(
            f"\n[simulation] candidate exactly 5 % worse (at the margin): ever FAIL {ever:.1%}; "
            f"a fixed-horizon {1 - c.alpha:.0%} bound at every look would FAIL {fixed.mean():.1%}"
        )
    assert ever <= _slack(c.alpha)
    assert fixed.mean() > ever


def test_a_candidate_ten_percent_worse_is_failed(capsys):
    c = _comparison(mode="unpaired")
    first_fail, _, _ = _canaries(c, 1.10, seed=3)
    power = np.isfinite(first_fail).mean()
    delay = np.median(first_fail)
    with capsys.disabled():
        print(
            f"\n[simulation] candidate 10 % worse MSE, margin 5 %: FAILed in {power:.1%} of "
            f"{RUNS} runs, median detection after {delay:.0f} h "
            f"({delay * PER_HOUR:.0f} predictions per version)"
        )
    assert power >= 0.90


def test_shadow_pairs_need_fewer_predictions_than_a_canary_split(capsys):
    unpaired_first, _, _ = _canaries(_comparison(mode="unpaired"), 1.10, seed=4)
    paired_first, _, _ = _canaries(_comparison(mode="paired"), 1.10, seed=4, shadow=True)
    equal_first, _, _ = _canaries(_comparison(mode="paired"), 1.0, seed=5, shadow=True)
    u, p = np.median(unpaired_first) * PER_HOUR, np.median(paired_first) * PER_HOUR
    with capsys.disabled():
        print(
            f"\n[simulation] 10 % worse: median predictions per version until FAIL: "
            f"paired (shadow) {p:.0f}, unpaired (canary) {u:.0f} ({u / p:.1f}x); "
            f"equal shadow models ever FAIL {np.isfinite(equal_first).mean():.1%}"
        )
    assert np.isfinite(paired_first).mean() >= 0.90
    assert p < u
    assert np.isfinite(equal_first).mean() <= _slack(0.05)


@pytest.mark.parametrize("mode", ["unpaired", "paired"])
def test_too_few_predictions_are_inconclusive(mode):
    rng = np.random.default_rng(6)
    eb = rng.normal(0.0, 1.0, (HOURS, 1))
    decision, _, _ = _decisions(
        _comparison(mode=mode, min_scored=500), eb, 3 * eb, mode == "paired"
    )
    # 1 prediction an hour: 168 < 500 after 7 days, so never a decision, however bad
    assert set(decision) == {"INCONCLUSIVE"}
