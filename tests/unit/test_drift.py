"""Drift statistics from sketches (transforms/slo/drift.py) against numpy and scipy on the
raw samples: PSI and Jensen-Shannon over the exact deciles of the raw reference, scipy's
Wasserstein distance."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from msewatch.transforms.metrics.sketch import ALPHA, ValueSketch
from msewatch.transforms.slo.drift import (
    DECILES,
    PSI_EPSILON,
    drift,
    histograms,
    sketch_drift,
)

RNG = np.random.default_rng(21)
REFERENCE = RNG.normal(50.0, 10.0, 20_000)
CASES = {
    "same-distribution": RNG.normal(50.0, 10.0, 5000),
    "shifted": RNG.normal(53.0, 10.0, 5000),
    "wider": RNG.normal(50.0, 14.0, 5000),
    "far-away": RNG.normal(90.0, 2.0, 3000),  # empty bins: the floor decides
}


def raw_shares(reference, window):
    """Shares per bin cut at the exact deciles (numpy 'lower') of the raw reference:
    bin j holds the values in (d_j-1, d_j], the last bin everything above d_9."""
    cuts = np.quantile(reference, DECILES, method="lower")
    shares = []
    for x in (reference, window):
        bins = np.searchsorted(cuts, x, side="left")  # x <= cuts[j] -> bin j
        shares.append(np.bincount(bins, minlength=10) / x.size)
    return shares


def raw_psi(reference, window):
    r, w = (np.maximum(s, PSI_EPSILON) for s in raw_shares(reference, window))
    return float(((w - r) * np.log(w / r)).sum())


@pytest.mark.parametrize("name", CASES)
def test_psi_matches_numpy_on_raw_deciles(name):
    window = CASES[name]
    want = raw_psi(REFERENCE, window)
    got = sketch_drift("psi", ValueSketch.from_values(REFERENCE), ValueSketch.from_values(window))
    # A sketch's cut is the whole bucket holding the decile (a bucket spans 2 * ALPHA,
    # 1 % of the value): the values of up to one bucket per cut change bins, ~1 % of a
    # bin's share here, which moves PSI by up to ~4 % (3.5 % seen for "wider").
    assert got == pytest.approx(want, rel=0.05, abs=0.003), (got, want)


def test_psi_reading_of_the_cases():
    sketch = ValueSketch.from_values
    values = {n: sketch_drift("psi", sketch(REFERENCE), sketch(x)) for n, x in CASES.items()}
    assert values["same-distribution"] < 0.01
    assert 0.05 < values["shifted"] < 0.25  # a 0.3 sd shift: minor
    assert values["far-away"] > 5  # ~all values in the top bin (floored shares elsewhere)


def test_psi_of_a_sketch_with_itself_is_zero():
    sketch = ValueSketch.from_values(REFERENCE)
    assert sketch_drift("psi", sketch, sketch) == 0.0


@pytest.mark.parametrize("name", CASES)
def test_jensen_shannon_matches_scipy_on_raw_deciles(name):
    r, w = raw_shares(REFERENCE, CASES[name])
    want = float(jensenshannon(r, w, base=2))
    got = sketch_drift(
        "js", ValueSketch.from_values(REFERENCE), ValueSketch.from_values(CASES[name])
    )
    assert 0.0 <= got <= 1.0
    assert got == pytest.approx(want, rel=0.03, abs=0.005), (got, want)  # as PSI; ~2 % seen


@pytest.mark.parametrize(
    "window",
    [*CASES.values(), RNG.normal(-5.0, 30.0, 4000), np.zeros(50)],
    ids=[*CASES, "mixed-signs", "zeros"],
)
def test_wasserstein_within_the_sketch_accuracy_of_scipy(window):
    want = wasserstein_distance(REFERENCE, window)
    got = sketch_drift(
        "wasserstein", ValueSketch.from_values(REFERENCE), ValueSketch.from_values(window)
    )
    # Each value moves by at most ALPHA of itself (the bucket's representative value).
    bound = ALPHA * (np.abs(REFERENCE).mean() + np.abs(window).mean())
    assert abs(got - want) <= bound, (got, want, bound)


def test_wasserstein_equals_scipy_on_the_bucket_values():
    ref, win = ValueSketch.from_values(REFERENCE), ValueSketch.from_values(CASES["wider"])
    (rv, rc), (wv, wc) = ref.buckets(), win.buckets()
    grid, counts = histograms([ref, win])
    got = drift("wasserstein", grid, counts[:1], counts[1:])[0]
    # buckets() clamps the extreme buckets into [min, max]; the grid does not: the two
    # differ only by those end pieces, below ALPHA of the extremes.
    want = wasserstein_distance(rv, wv, rc, wc)
    assert got == pytest.approx(want, rel=1e-3)


def test_rows_are_independent_and_empty_rows_are_nan():
    sketches = [ValueSketch.from_values(x) for x in (REFERENCE, CASES["shifted"])]
    grid, counts = histograms([*sketches, None, ValueSketch.empty()])
    ref = counts[[0, 0, 0, 2]]
    win = counts[[1, 0, 2, 1]]
    got = drift("psi", grid, ref, win)
    assert got[0] == pytest.approx(sketch_drift("psi", *sketches), rel=1e-12)
    assert got[1] == 0.0
    assert math.isnan(got[2]) and math.isnan(got[3])


def test_unknown_statistic_is_refused():
    grid, counts = histograms([ValueSketch.from_values(np.array([1.0]))])
    with pytest.raises(ValueError, match="psi, js, wasserstein"):
        drift("kl", grid, counts, counts)
