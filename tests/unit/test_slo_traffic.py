"""The traffic SLI: predictions of a window against the trailing median of the slice.

Windows are hourly (window i is [i h, (i + 1) h)); each expected median comes from
``statistics.median`` over the windows picked by hand, never from the rule itself.
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from msewatch.transforms.slo.config import parse_slo_file
from msewatch.transforms.slo.kernel import SloEvaluator, evaluate_history
from msewatch.transforms.slo.sli import SLI_RULES, trailing_median
from msewatch.transforms.slo.spec import Alerting, BurnWindow, InvalidValue, Slo

H = 3_600_000
PAGE = Alerting(page=(BurnWindow(7200, 3600, 5.0),), ticket=())


def traffic_slo(**kw) -> Slo:
    args = dict(name="tr", sli="traffic", threshold=0.5, objective=0.9, trailing_s=6 * 3600)
    args.update(kw, alerting=kw.get("alerting", PAGE))
    return Slo(**args, period_s=86400)


def columns(counts, first=0) -> dict[str, np.ndarray]:
    """Hourly windows first, first + 1, ... with these prediction counts."""
    i = np.arange(first, first + len(counts))
    return {
        "window_start_ms": i * H,
        "window_end_ms": (i + 1) * H,
        "predictions": np.asarray(counts, float),
    }


def test_trailing_median_is_the_median_of_the_windows_ending_in_the_span_before():
    rng = np.random.default_rng(7)
    ends = np.sort(rng.choice(np.arange(1, 60), size=30, replace=False)) * H
    values = rng.integers(0, 500, size=30).astype(float)
    median, count, oldest = trailing_median(ends, values, 5 * H)
    for i, end in enumerate(ends):
        inside = [j for j in range(len(ends)) if end - 5 * H <= ends[j] < end]
        assert count[i] == len(inside)
        if inside:
            assert median[i] == statistics.median(values[inside].tolist())
            assert oldest[i] == ends[inside[0]]
        else:
            assert np.isnan(median[i]) and np.isnan(oldest[i])


def test_a_window_settles_once_its_baseline_covers_half_the_span():
    # trailing 6h: window k (ending (k+1)h) reads the windows ending in [(k-5)h, (k+1)h),
    # i.e. windows max(0, k-6) .. k-1. It needs >= 3 of them, the oldest ending at or
    # before (k+1)h - 3h: window 0 (ending 1h) qualifies from k = 3 (1h <= 4h - 3h).
    c = columns([100, 120, 80, 100, 90, 40, 100, 100])
    v = SLI_RULES["traffic"].verdicts(traffic_slo(), c, np.inf)
    assert v.settled.tolist() == [False, False, False, True, True, True, True, True]
    # window 3: median(100, 120, 80) = 100 -> 1.0; window 5: median(100, 120, 80, 100,
    # 90) = 100 -> 0.4, bad (below 0.5); window 7 reads windows 1..6: 120, 80, 100, 90,
    # 40, 100 -> median (90 + 100) / 2 = 95 -> 100 / 95.
    for k in (3, 5, 7):
        lo = max(0, k - 6)
        expected = c["predictions"][k] / statistics.median(c["predictions"][lo:k].tolist())
        assert v.value[k] == pytest.approx(expected)
    assert v.value[5] == pytest.approx(0.4)
    assert v.bad.tolist() == [0, 0, 0, 0, 0, 1, 0, 0]


def test_a_silent_window_is_bad_and_counts_as_zero_in_later_medians():
    # windows 0-3 have 100, 4-6 are zero rows (silent): window 4 is 0 / 100 = 0, bad;
    # window 6 reads 0..5 = 100, 100, 100, 100, 0, 0: median 100 -> still 0, bad.
    c = columns([100, 100, 100, 100, 0, 0, 0])
    v = SLI_RULES["traffic"].verdicts(traffic_slo(), c, np.inf)
    assert v.settled[3:].all()
    assert v.value[4:].tolist() == [0.0, 0.0, 0.0]
    assert v.bad[4:].tolist() == [1, 1, 1]


def test_a_zero_median_judges_only_windows_with_traffic():
    # trailing 6h, windows 0-2 have 100, 3-9 are silent. Window 9 reads windows 3..8, all
    # zero: median 0 and no predictions: unsettled (a slice silent for most of the span
    # is not judged again). Had window 9 had 5 predictions: 5 / 0 = inf, good.
    counts = [100, 100, 100] + [0] * 7
    v = SLI_RULES["traffic"].verdicts(traffic_slo(), columns(counts), np.inf)
    assert not v.settled[9]
    v = SLI_RULES["traffic"].verdicts(traffic_slo(), columns(counts[:-1] + [5]), np.inf)
    assert v.settled[9] and v.value[9] == np.inf and v.bad[9] == 0


def test_a_window_waits_for_the_watermark_to_pass_its_end():
    c = columns([100, 100, 100, 100, 10])
    v = SLI_RULES["traffic"].verdicts(traffic_slo(), c, 5 * H - 1)  # window 4 ends at 5h
    assert v.settled.tolist() == [False, False, False, True, False]
    v = SLI_RULES["traffic"].verdicts(traffic_slo(), c, 5 * H)
    assert v.settled[4] and v.bad[4] == 1  # 10 / 100 = 0.1 < 0.5


def test_the_rule_reads_windows_in_any_order():
    c = columns([100, 120, 80, 100, 90, 40, 100, 100])
    shuffled = np.random.default_rng(3).permutation(8)
    mixed = {k: v[shuffled] for k, v in c.items()}
    a = SLI_RULES["traffic"].verdicts(traffic_slo(), c, np.inf)
    b = SLI_RULES["traffic"].verdicts(traffic_slo(), mixed, np.inf)
    assert b.settled.tolist() == a.settled[shuffled].tolist()
    np.testing.assert_array_equal(b.value, a.value[shuffled])


def test_the_page_fires_on_silence_and_streaming_window_by_window_agrees():
    # 12 windows of 100, then 4 silent (zero rows), then 100 again (trailing 6h: window k
    # reads windows k-6 .. k-1). Window 12 (frontier 13h) is 0 / 100: bad; the 1h
    # lookback burns 1 / 0.1 = 10 >= 5 and the 2h one (windows 11, 12: one bad of two)
    # 0.5 / 0.1 = 5 >= 5: the page fires at 13h. Windows 13-15 read medians 100, 100 and
    # (0 + 100) / 2 = 50: all bad. Window 16 reads 100, 100, 0, 0, 0, 0: median 0, and
    # has 100 predictions: inf, good. At 17h the 1h lookback is 0: nothing holds; the
    # last frontier where a condition held is 16h, 1h ago (keep_firing_for): resolved.
    counts = [100] * 12 + [0] * 4 + [100] * 3
    c = columns(counts)
    slo = traffic_slo()
    transitions, _ = evaluate_history(slo, "region=eu", c)
    got = [(t.state, t.frontier_ms // H) for t in transitions]
    assert got == [("firing", 13), ("resolved", 17)]
    assert "no predictions: silent" in transitions[0].summary
    ev, streamed = SloEvaluator(slo, "region=eu"), []
    for k in range(len(counts)):
        one = {n: v[k : k + 1] for n, v in c.items()}
        streamed += ev.update(one, watermark_ms=int(c["window_end_ms"][k]))[0]
    assert [(t.state, t.frontier_ms) for t in streamed] == [
        (t.state, t.frontier_ms) for t in transitions
    ]


def test_the_slo_file_keys_and_their_defaults():
    text = """
version: 1
slos:
  - name: tr
    sli: traffic
    threshold: 0.5
    objective: 0.99
    slices: ["region=*"]
  - name: tr2
    sli: traffic
    threshold: 1
    objective: 0.99
    trailing: 1d
    retire_after: 12h
"""
    default, custom = parse_slo_file(text).slos
    assert (default.trailing_s, default.retire_after_s) == (7 * 86400, 7 * 86400)
    assert (custom.trailing_s, custom.retire_after_s) == (86400, 12 * 3600)
    assert SLI_RULES["traffic"].reach_s(custom) == 86400


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(threshold=0), "threshold: for traffic is a share in (0, 1]"),
        (dict(threshold=1.5), "threshold: for traffic is a share in (0, 1]"),
        (dict(trailing_s=0), "trailing: must be a whole number of seconds >= 1s"),
        (dict(retire_after_s=0), "retire_after: must be a whole number of seconds >= 1s"),
        (dict(sli="rmse", threshold=4), "trailing: applies only to sli: traffic"),
    ],
)
def test_bad_values_are_refused_naming_the_key(kw, message):
    with pytest.raises(InvalidValue, match=message.replace("(", r"\(").replace("]", r"\]")):
        traffic_slo(**kw)


@pytest.mark.parametrize("key", ["min_coverage: 0.5", "min_scored: 3"])
def test_the_label_gate_does_not_apply(key):
    slo = f"{{name: tr, sli: traffic, threshold: 0.5, objective: 0.9, {key}}}"
    text = f"version: 1\nslos:\n  - {slo}\n"
    with pytest.raises(ValueError, match=key.split(":")[0] + ": applies only to sli: rmse"):
        parse_slo_file(text)


def test_describe_says_silent_for_no_predictions():
    slo = traffic_slo(trailing_s=7 * 86400)
    describe = SLI_RULES["traffic"].describe
    assert describe(slo, 0.0) == (
        "no predictions: silent (bad below 50% of the trailing 7d median of predictions)"
    )
    assert describe(slo, 0.08) == (
        "predictions 8% of the trailing 7d median of predictions (bad below 50%)"
    )


def test_the_pipeline_refuses_a_trailing_span_shorter_than_three_window_steps():
    from msewatch.transforms.slo.spec import SloFile
    from msewatch.transforms.slo.transform import EvaluateSlos

    slo_file = SloFile(1, (traffic_slo(trailing_s=3 * 3600),))
    EvaluateSlos(slo_file, True, lambda: None, 3600)  # 3 hourly steps: accepted
    with pytest.raises(ValueError, match="tr: trailing: must span at least 3 windows"):
        EvaluateSlos(slo_file, True, lambda: None, 7200)  # 3h < 3 x 2h
    with pytest.raises(ValueError, match="window grid"):
        EvaluateSlos(slo_file, True, lambda: None)


def test_slo_check_says_what_a_traffic_slo_means():
    from msewatch.commands.slo import describe_slo

    lines = describe_slo(traffic_slo(retire_after_s=4 * 3600))
    assert lines[0] == (
        "tr (traffic): a window is bad when its predictions are under 50% of the median of "
        "the slice's windows in the 6h before it (a silent window counts 0)"
    )
    assert "a silent slice gets zero rows until idle for 4h" in lines[2]
