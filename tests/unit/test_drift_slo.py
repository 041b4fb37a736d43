"""The drift SLIs: their SLO-file keys (reference, statistic, feature) and their window
rules on hand-built columns, against the statistics of numpy-built sketches."""

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from msewatch.transforms.metrics.sketch import ValueSketch
from msewatch.transforms.slo.config import SloFileError, parse_slo_file
from msewatch.transforms.slo.drift import sketch_drift
from msewatch.transforms.slo.kernel import SloEvaluator, as_columns, evaluate_history
from msewatch.transforms.slo.sli import SLI_RULES

HOUR_MS = 3_600_000
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def drift_slo(tmp_path, extra="reference: {trailing: 3h}", sli="prediction_drift", **keys):
    fields = {"name": "d", "sli": sli, "threshold": 0.25, "objective": 0.9, **keys}
    lines = [f"{k}: {v}" for k, v in fields.items()] + ([extra] if extra else [])
    text = "version: 1\nslos:\n  - " + "\n    ".join(lines) + "\n"
    path = tmp_path / "slo.yaml"
    path.write_text(text)
    return parse_slo_file(text, str(path)).slos[0]


def test_defaults_and_keys(tmp_path):
    slo = drift_slo(tmp_path, min_scored=5)
    assert (slo.statistic, slo.reference.kind, slo.reference.trailing_s) == (
        "psi",
        "trailing",
        3 * 3600,
    )
    assert slo.min_scored == 5  # allowed for drift SLIs though not label-gated
    ranged = drift_slo(
        tmp_path, 'reference: {from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z"}'
    )
    assert (ranged.reference.from_ms, ranged.reference.to_ms) == (T0_MS, T0_MS + 24 * HOUR_MS)


def test_a_reference_file_is_read_relative_to_the_slo_file(tmp_path):
    values = np.random.default_rng(0).normal(10.0, 2.0, 500)
    (tmp_path / "ref").mkdir()
    pq.write_table(
        pa.table({"y_pred": values, "y_true": values + 1}), tmp_path / "ref" / "train.parquet"
    )
    slo = drift_slo(tmp_path, "reference: {file: ref/train.parquet}")
    assert slo.reference.sketch("y_pred") == ValueSketch.from_values(values)
    (tmp_path / "ref" / "labels.jsonl").write_text(
        '{"y_true": 1.5}\n{"y_true": null}\n{"y_true": 3}\n'
    )
    labels = drift_slo(tmp_path, "reference: {file: ref/labels.jsonl}", sli="label_drift")
    assert labels.reference.sketch("y_true") == ValueSketch.from_values(np.array([1.5, 3.0]))


@pytest.mark.parametrize(
    ("extra", "keys", "message"),
    [
        ("", {}, "d: reference: is required"),
        ("reference: {file: missing.parquet}", {}, "d: reference.file: cannot read"),
        ("reference: {file: notes.txt}", {}, "d: reference.file: "),
        ("reference: {trailing: 0s}", {}, "d: reference.trailing: trailing must be"),
        ("reference: {trailing: 1d, file: x.jsonl}", {}, "d: reference: must be one of"),
        ("reference: {since: 1d}", {}, "d: reference.since: unknown key"),
        ("reference: {trailing: 1d}", {"statistic": "kl"}, "d: statistic: must be one of psi, js"),
        (
            "reference: {trailing: 1d}",
            {"statistic": "js", "threshold": 2},
            "d: threshold: for statistic js",
        ),
        (
            "reference: {trailing: 1d}",
            {"feature": "age"},
            "d: feature: applies only to sli: feature_drift",
        ),
        ("reference: {trailing: 1d}", {"min_coverage": 0.5}, "d: min_coverage: applies only to"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(tmp_path, extra, keys, message):
    (tmp_path / "notes.txt").write_text("y_pred\n1\n")
    with pytest.raises(SloFileError) as e:
        drift_slo(tmp_path, extra, **keys)
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"{tmp_path / 'slo.yaml'}: {message}"), text


def test_feature_drift_needs_a_feature_and_non_drift_slis_refuse_the_keys(tmp_path):
    with pytest.raises(SloFileError, match="feature: is required for sli: feature_drift"):
        drift_slo(tmp_path, "reference: {trailing: 1d}", sli="feature_drift")
    with pytest.raises(SloFileError, match="reference.file: feature_drift takes"):
        (tmp_path / "ref.jsonl").write_text('{"y_pred": 1}\n')
        drift_slo(tmp_path, "reference: {file: ref.jsonl}", sli="feature_drift", feature="age")
    slo = drift_slo(tmp_path, "reference: {trailing: 1d}", sli="feature_drift", feature="age")
    assert (slo.feature, slo.reference.trailing_s) == ("age", 86400)
    with pytest.raises(SloFileError, match="reference: applies only to sli: prediction_drift"):
        drift_slo(tmp_path, "reference: {trailing: 1d}", sli="rmse")


def test_the_feature_drift_slos_name_the_features_the_metrics_sketch(tmp_path):
    text = "version: 1\nslos:\n" + "".join(
        f"  - {{name: {n}, sli: feature_drift, feature: {f}, threshold: 0.25, objective: 0.9,"
        " reference: {trailing: 1d}}\n"
        for n, f in (("a", "price"), ("b", "age"), ("c", "price"))
    )
    assert parse_slo_file(text).metrics_needs()["features"] == ("price", "age")


def test_feature_drift_psi_of_a_window_is_the_hand_computed_one(tmp_path):
    """Hand-built integer samples (each integer its own sketch bucket, so binning is exact).

    Reference (windows 0 and 1, {from, to}): 1..10, ten of each (100 values). Its lower
    deciles, rank floor(q * 99): q = 0.1 -> rank 9 -> 1, q = 0.2 -> 2, ..., q = 0.9 -> 9,
    so the bins are (-inf, 1], (1, 2], ..., (8, 9], (9, inf), 0.1 of the reference each.
    Window 2 holds 2..11, ten of each: shares [0, 0.1 x 8, 0.2], so
    PSI = (1e-4 - 0.1) ln(1e-4 / 0.1) + (0.2 - 0.1) ln(0.2 / 0.1) = 0.6901 + 0.0693 = 0.7594.
    Window 3 repeats the reference: PSI 0. Another feature's sketch in the rows is ignored.
    """
    from msewatch.schemas.slo import utc_datetime
    from msewatch.transforms.slo.transform import window_row

    base = np.repeat(np.arange(1.0, 11.0), 10)
    samples = [base[:50], base[50:], base + 1, base]
    extra = 'reference: {from: "2026-01-01T00:00:00Z", to: "2026-01-01T02:00:00Z"}'
    slo = drift_slo(tmp_path, extra, sli="feature_drift", feature="age", min_scored=10)
    rows = []
    for i, x in enumerate(samples):
        start, end = (utc_datetime(T0_MS + (i + k) * HOUR_MS) for k in (0, 1))
        other = ValueSketch.from_values(np.full(100, 1000.0 * (i + 1))).to_bytes()
        sketches = [
            {"feature": "income", "sketch": other},
            {"feature": "age", "sketch": ValueSketch.from_values(x).to_bytes()},
        ]
        row = {"window_start": start, "window_end": end, "feature_sketches": sketches}
        rows.append(window_row(slo, row))
    names = ("window_start_ms", "window_end_ms", *SLI_RULES["feature_drift"].columns)
    v = SLI_RULES["feature_drift"].verdicts(slo, as_columns(rows, names), math.inf)
    want = (1e-4 - 0.1) * math.log(1e-4 / 0.1) + (0.2 - 0.1) * math.log(2.0)
    assert v.settled.tolist() == [False, False, True, True]
    assert v.value[2] == pytest.approx(want, rel=1e-9)
    assert v.value[3] == pytest.approx(0.0, abs=1e-12)
    assert v.bad.tolist() == [0, 0, 1, 0]


def windows(samples, start_ms=T0_MS):
    """Hourly windows, one y_pred sample each (None: no predictions)."""
    n = len(samples)
    starts = start_ms + HOUR_MS * np.arange(n)
    sketches = [None if s is None else ValueSketch.from_values(s).to_bytes() for s in samples]
    return {"window_start_ms": starts, "window_end_ms": starts + HOUR_MS, "y_pred_sketch": sketches}


RNG = np.random.default_rng(5)
STEADY = [RNG.normal(100.0, 10.0, 200) for _ in range(6)]
SHIFTED = RNG.normal(115.0, 10.0, 200)


def test_trailing_reference_is_the_merged_windows_before(tmp_path):
    slo = drift_slo(tmp_path, min_scored=50)
    samples = [*STEADY, SHIFTED, np.ones(10)]  # the last window has too few values
    c = as_columns(windows(samples), ("window_start_ms", "window_end_ms", "y_pred_sketch"))
    v = SLI_RULES["prediction_drift"].verdicts(slo, c, math.inf)
    assert v.settled.tolist() == [False, True, True, True, True, True, True, False]
    for i in (1, 3, 6):  # the windows ending in (start - 3h, start]
        ref = ValueSketch.from_values(np.concatenate(samples[max(0, i - 3) : i]))
        assert v.value[i] == pytest.approx(
            sketch_drift("psi", ref, ValueSketch.from_values(samples[i])), rel=1e-12
        )
    assert v.bad.tolist() == [0, 0, 0, 0, 0, 0, 1, 0]  # a 1.5 sd shift is a major one


def test_a_window_waits_for_the_watermark(tmp_path):
    slo = drift_slo(tmp_path, min_scored=50)
    c = as_columns(
        windows([*STEADY, SHIFTED]), ("window_start_ms", "window_end_ms", "y_pred_sketch")
    )
    v = SLI_RULES["prediction_drift"].verdicts(slo, c, T0_MS + 6 * HOUR_MS + HOUR_MS - 1)
    assert not v.settled[6] and v.settled[5]


def test_range_reference_judges_the_windows_after_it(tmp_path):
    extra = 'reference: {from: "2026-01-01T01:00:00Z", to: "2026-01-01T03:00:00Z"}'
    slo = drift_slo(tmp_path, extra, min_scored=50)
    c = as_columns(
        windows([*STEADY, SHIFTED]), ("window_start_ms", "window_end_ms", "y_pred_sketch")
    )
    v = SLI_RULES["prediction_drift"].verdicts(slo, c, math.inf)
    assert v.settled.tolist() == [False, False, False, True, True, True, True]
    ref = ValueSketch.from_values(np.concatenate(STEADY[1:3]))
    assert v.value[6] == pytest.approx(
        sketch_drift("psi", ref, ValueSketch.from_values(SHIFTED)), rel=1e-12
    )


def test_streaming_updates_give_the_history_and_keep_the_range_windows(tmp_path):
    extra = 'reference: {from: "2026-01-01T00:00:00Z", to: "2026-01-01T02:00:00Z"}'
    alerting = "{page: [{long: 2h, short: 1h, burn_rate: 1}], ticket: []}"
    slo = drift_slo(tmp_path, extra, min_scored=50, period="4h", alerting=alerting)
    samples = [*STEADY, *STEADY, SHIFTED]
    all_rows = windows(samples)
    _, history = evaluate_history(slo, "overall", all_rows)
    evaluator = SloEvaluator(slo, "overall")
    streamed = []
    for i in range(len(samples)):
        one = {k: v[i : i + 1] for k, v in all_rows.items()}
        streamed += evaluator.update(one, watermark_ms=int(all_rows["window_end_ms"][i]))[1]
    assert [s.value for s in streamed] == pytest.approx([s.value for s in history], rel=1e-12)
    assert evaluator._table["window_start_ms"][0] == T0_MS  # the range outlives the period
    assert streamed[-1].value > 0.25


def test_describe_reads_the_statistic():
    class S:  # the fields describe reads
        statistic, threshold = "psi", 0.2
        reference = type("R", (), {"text": lambda self: "trailing 7d"})()

    text = SLI_RULES["prediction_drift"].describe(S, 0.31)
    assert text == "PSI 0.31 against trailing 7d (major shift above 0.25; bad above 0.2)"


def test_slo_check_says_what_a_drift_slo_means(tmp_path):
    from msewatch.commands.slo import describe_slo

    lines = describe_slo(drift_slo(tmp_path, min_scored=50))
    assert lines[0] == (
        "d (prediction_drift): a window is bad when the psi of its y_pred distribution "
        "against trailing 3h is above 0.25"
    )
    assert "when the window closes with >= 50 values (its reference too)" in lines[2]


def test_label_drift_waits_for_the_label_gate_and_reads_y_true(tmp_path):
    values = RNG.normal(100.0, 10.0, 2000)
    pq.write_table(pa.table({"y_true": values}), tmp_path / "ref.parquet")
    slo = drift_slo(tmp_path, "reference: {file: ref.parquet}", sli="label_drift", min_scored=50)
    c = windows([STEADY[0], SHIFTED, SHIFTED])
    c = {
        "window_start_ms": c["window_start_ms"],
        "window_end_ms": c["window_end_ms"],
        "y_true_sketch": c["y_pred_sketch"],  # the same samples, as labels
        "label_coverage": [1.0, 1.0, 0.5],  # the last window's labels are still coming
        "complete": [True, True, False],
        "scored": [200, 200, 100],
    }
    names = ("window_start_ms", "window_end_ms", *SLI_RULES["label_drift"].columns)
    v = SLI_RULES["label_drift"].verdicts(slo, as_columns(c, names), math.inf)
    assert v.settled.tolist() == [True, True, False]
    ref = ValueSketch.from_values(values)
    want = [sketch_drift("psi", ref, ValueSketch.from_values(x)) for x in (STEADY[0], SHIFTED)]
    assert v.value[:2] == pytest.approx(want, rel=1e-12)
    assert v.bad.tolist() == [0, 1, 0]
