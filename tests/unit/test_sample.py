"""Tests of the sample generator: the files it writes against the stats it reports.

Every expectation is recomputed here from the files with Python's json, datetime and
pandas, never read back from the generator's own helpers.
"""

import dataclasses
import datetime as dt
import json
import math
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from msewatch.commands import generate as sample

N = 6000  # large enough for every defect kind (lines // 1000), small enough to be fast
TTL_MS = 7 * 86_400_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _ms(value):
    """Epoch ms of a JSON time (epoch ms int or RFC 3339 string); ValueError if invalid."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError(value)
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise ValueError(value)
    return (when - EPOCH) // dt.timedelta(milliseconds=1)


def _is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def _valid(rec, time_field, value_field):
    """Whether a parsed record follows the README's input rules."""
    try:
        _ms(rec[time_field])
    except (KeyError, ValueError):
        return False
    return (
        isinstance(rec.get("prediction_id"), str)
        and rec["prediction_id"] != ""
        and _is_number(rec.get(value_field))
        and (_is_number(rec.get("weight", 1.0)) and rec.get("weight", 1.0) >= 0)
    )


def _read(path, time_field, value_field):
    """(valid records as a DataFrame with ``line`` and ``ms``, raw valid lines, malformed)."""
    rows, raw, malformed = [], [], 0
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                malformed += 1
                continue
            if not _valid(rec, time_field, value_field):
                malformed += 1
                continue
            rows.append(rec | {"line": line_no, "ms": _ms(rec[time_field])})
            raw.append(line)
    return pd.DataFrame(rows), raw, malformed


def _first(df, key=("prediction_id",)):
    """First occurrence per ``key``: earliest time, ties by line (docs/semantics.md). A
    prediction is a (prediction_id, model_version) pair, a label a prediction_id."""
    return df.sort_values(["ms", "line"], kind="stable").drop_duplicates(list(key))


def _predictions(df):
    """The first occurrence of each (prediction_id, model_version): the distinct predictions."""
    return _first(df, ("prediction_id", "model_version"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    stats = sample.generate(str(out), predictions=N, seed=11, formats=("jsonl", "parquet"))
    preds, p_raw, p_bad = _read(out / "predictions.jsonl", "event_time", "y_pred")
    labels, l_raw, l_bad = _read(out / "labels.jsonl", "label_time", "y_true")
    return dict(stats=stats, out=out, preds=preds, labels=labels, p_raw=p_raw, l_raw=l_raw,
                p_bad=p_bad, l_bad=l_bad)  # fmt: skip


@pytest.fixture(scope="module")
def pairs(run):
    """Distinct predictions joined with their id's first label, arrived within the TTL."""
    preds, labels = _predictions(run["preds"]), _first(run["labels"])
    df = preds.merge(labels, on="prediction_id", suffixes=("_p", "_l"))
    df["lag_ms"] = df["ms_l"] - df["ms_p"]
    df["region"] = df["segments"].map(lambda s: s["region"])
    df = df[(df["lag_ms"] <= TTL_MS) & np.isfinite(df["y_pred"]) & np.isfinite(df["y_true"])]
    return df.assign(se=(df["y_pred"] - df["y_true"]) ** 2)


def test_malformed_lines_match_stats(run):
    stats = run["stats"]
    assert run["p_bad"] == stats.malformed_predictions
    assert run["l_bad"] == stats.malformed_labels
    assert set(stats.malformed_prediction_kinds) == set(sample.PREDICTION_DEFECTS)
    assert set(stats.malformed_label_kinds) == set(sample.LABEL_DEFECTS)
    assert stats.malformed_predictions <= 0.001 * (len(run["p_raw"]) + run["p_bad"])
    assert stats.malformed_labels <= 0.001 * (len(run["l_raw"]) + run["l_bad"])


def test_line_counts_match_stats(run):
    stats = run["stats"]
    p_lines = stats.predictions + stats.shadow_predictions + stats.duplicate_predictions
    p_lines += stats.malformed_predictions
    l_lines = stats.labels + stats.duplicate_labels + stats.malformed_labels
    with open(run["out"] / "predictions.jsonl", "rb") as f:
        assert sum(1 for _ in f) == p_lines
    with open(run["out"] / "labels.jsonl", "rb") as f:
        assert sum(1 for _ in f) == l_lines


def test_prediction_counts_match_stats(run):
    stats, preds = run["stats"], run["preds"]
    first = _predictions(preds)
    assert first["prediction_id"].nunique() == stats.predictions == N
    assert len(first) == stats.predictions + stats.shadow_predictions
    assert len(preds) - len(first) == stats.duplicate_predictions
    assert first["y_pred"].isna().sum() == stats.nan_predictions
    assert preds["y_pred"].isna().sum() == stats.nan_predictions  # repeats are never NaN


def test_shadow_predictions_repeat_a_v1_request_as_v2(run):
    stats, first = run["stats"], _predictions(run["preds"])
    shadowed = first[first.duplicated("prediction_id", keep=False)]
    assert len(shadowed) == 2 * stats.shadow_predictions
    for _, pair in shadowed.groupby("prediction_id"):
        assert sorted(pair["model_version"]) == ["v1", "v2"]
        v1, v2 = pair.sort_values("model_version").to_dict("records")
        assert (v1["event_time"], v1["segments"], v1["weight"]) == (
            v2["event_time"], v2["segments"], v2["weight"])  # fmt: skip
    # SHADOW_SHARE of the ids v1 serves (each id's other line is the shadow)
    v1_served = (first.drop_duplicates("prediction_id")["model_version"] == "v1").sum()
    assert stats.shadow_predictions == round(sample.SHADOW_SHARE * v1_served) > 0


def test_label_counts_match_stats(run):
    stats, preds, labels = run["stats"], _first(run["preds"]), run["labels"]
    first = _first(labels)
    assert len(first) == stats.labels
    assert len(labels) - len(first) == stats.duplicate_labels
    assert (first["y_true"] == 0).sum() == stats.zero_labels
    known = first.merge(preds, on="prediction_id", suffixes=("", "_p"))
    assert len(first) - len(known) == stats.orphan_labels
    assert len(preds) - len(known) == stats.labels_never_sent
    lag = known["ms"] - known["ms_p"]
    assert (lag > TTL_MS).sum() == stats.labels_past_ttl
    assert (lag < 0).sum() == stats.negative_lag_labels
    assert (lag <= TTL_MS).sum() == stats.labels_joined


def test_prediction_outcomes_match_stats(run):
    """Per (id, version): joined when the id's first label comes within the TTL (one
    label joins a v1 prediction and its shadow), else expired (docs/semantics.md)."""
    stats, preds = run["stats"], _predictions(run["preds"])
    labels = _first(run["labels"])
    both = preds.merge(labels, on="prediction_id", how="left", suffixes=("", "_l"))
    joined = (both["ms_l"] - both["ms"]) <= TTL_MS  # NaN (no label) compares False
    assert joined.sum() == stats.joined
    assert (~joined).sum() == stats.expired
    assert (joined & both["prediction_id"].duplicated(keep=False)).sum() == 2 * stats.shadow_joined


def test_rates_are_realistic(run):
    s = run["stats"]
    assert 0.05 <= s.labels_never_sent / s.predictions <= 0.10
    assert 0.005 <= s.labels_past_ttl / s.labels <= 0.02
    assert 0.003 <= s.duplicate_predictions / (s.predictions + s.shadow_predictions) <= 0.008
    assert 0.003 <= s.duplicate_labels / s.labels <= 0.008
    assert 0.001 <= s.nan_predictions / s.predictions <= 0.005
    assert 1 <= s.negative_lag_labels <= 10  # a handful
    assert 1 <= s.zero_labels <= 0.01 * s.labels
    assert s.orphan_labels >= 1


def test_weights_mostly_one_and_positive(run):
    weight = run["preds"]["weight"]
    assert (weight > 0).all()
    assert 0.7 <= (weight == 1.0).mean() < 1.0


def test_same_seed_same_bytes(run, tmp_path):
    sample.generate(str(tmp_path), predictions=N, seed=11, formats=("jsonl", "parquet"))
    for name in ("predictions.jsonl", "labels.jsonl", "predictions.parquet", "labels.parquet"):
        assert (tmp_path / name).read_bytes() == (run["out"] / name).read_bytes()


def test_other_seed_other_data(run, tmp_path):
    stats = sample.generate(str(tmp_path), predictions=N, seed=12)
    assert (tmp_path / "labels.jsonl").read_bytes() != (run["out"] / "labels.jsonl").read_bytes()
    assert stats != run["stats"]


def test_both_time_forms_and_offsets_present(run):
    times = pd.concat([run["preds"]["event_time"], run["labels"]["label_time"]])
    ints = times[times.map(lambda t: isinstance(t, int))]
    strings = times[times.map(lambda t: isinstance(t, str))]
    assert len(ints) > 0.1 * len(times) and len(strings) > 0.1 * len(times)
    assert strings.str.endswith("Z").any()
    assert strings.str.contains(r"[+-]\d\d:\d\d$").any()
    assert strings.str.contains(r"-0[1-9]:\d\d$").any()  # behind UTC
    assert strings.str.contains(r"\+0[1-9]:\d\d$").any()  # ahead of UTC
    assert strings.str.contains(r"T\d\d:\d\d:\d\d\.\d{3}").any()
    assert strings.str.contains(r"T\d\d:\d\d:\d\d[Z+-]").any()


def test_files_ordered_by_time(run):
    assert run["preds"]["ms"].is_monotonic_increasing
    assert run["labels"]["ms"].is_monotonic_increasing


def test_event_times_within_range(run):
    stats, ms = run["stats"], run["preds"]["ms"]
    assert stats.end_ms - stats.start_ms == 3 * 86_400_000
    assert ms.min() >= stats.start_ms and ms.max() <= stats.end_ms + 3_600_000


def test_duplicates_come_after_their_original(run):
    preds = run["preds"]
    key = ["prediction_id", "model_version"]
    repeated = preds[preds.duplicated(key, keep=False)]
    assert len(repeated) > 0
    for _, group in repeated.groupby(key):
        assert group["line"].iloc[0] < group["line"].iloc[1]
        assert group["ms"].iloc[0] <= group["ms"].iloc[1]
        assert group["model_version"].nunique() == 1


def test_drift_region_is_clearly_worst_by_rmse(run, pairs):
    stats = run["stats"]
    assert stats.drift_segment == "region=apac"
    rmse = pairs.groupby("region")["se"].mean() ** 0.5
    assert rmse.idxmax() == "apac"
    assert rmse["apac"] > 1.5 * rmse.drop("apac").max()
    by_version = pairs.groupby(["region", "model_version"])["se"].mean() ** 0.5
    worst_other = by_version.drop("apac", level="region").max()
    assert (by_version["apac"] > 1.5 * worst_other).all()
    apac = pairs[pairs["region"] == "apac"]
    after = apac["ms_p"] >= stats.drift_start_ms
    assert apac[after]["se"].mean() > 4 * apac[~after]["se"].mean()
    assert stats.start_ms < stats.drift_start_ms < stats.end_ms


def _mse_ratio_v2_v1(pairs):
    """Per region: (MSE of v2 / MSE of v1, the fewer of the two versions' scored counts)."""
    mse = pairs.groupby(["region", "model_version"])["se"].agg(["mean", "size"]).unstack()
    return (mse["mean", "v2"] / mse["mean", "v1"]).to_dict(), mse["size"].min(axis=1).to_dict()


# By hand, with relative errors: y_pred = E (1 + 0.04 + 0.14 z), y_true ~ E e^(0.1 z'),
# so MSE / E^2 ~ 0.04^2 + 0.14^2 + 0.1^2 = 0.031 for both versions; v2 in eu has noise
# sd 1.6 x 0.14 = 0.224: 0.04^2 + 0.224^2 + 0.1^2 = 0.062, twice v1's.
def test_v2_is_clearly_worse_in_the_canary_region(pairs):
    ratio, n = _mse_ratio_v2_v1(pairs)
    assert sample.CANARY_WORSE_REGION == "eu" != sample.DRIFT_REGION
    assert n["eu"] >= 300 and ratio["eu"] > 1.5


@pytest.mark.parametrize("region", ["na", "apac", "latam"])
def test_v2_is_as_good_as_v1_elsewhere(pairs, region):
    ratio, n = _mse_ratio_v2_v1(pairs)
    assert n[region] >= 300 and 0.8 < ratio[region] < 1.25


def test_zero_labels_fall_mostly_on_slow_movers(run, pairs):
    zero = pairs[pairs["y_true"] == 0]
    assert len(zero) > 0
    assert zero["y_pred"].median() < 0.5 * pairs["y_pred"].median()


def test_label_lag_has_a_long_tail(run):
    preds, labels = _first(run["preds"]), _first(run["labels"])  # one prediction per id
    joined = labels.merge(preds, on="prediction_id", suffixes=("_l", "_p"))
    lag_s = (joined["ms_l"] - joined["ms_p"]) / 1000
    p50, p99 = np.percentile(lag_s, [50, 99])
    assert 3600 <= p50 <= 12 * 3600  # median: hours
    assert p99 > 10 * p50 and p99 > 86_400  # tail: days


def test_parquet_holds_the_valid_jsonl_records(run):
    preds = pq.read_table(run["out"] / "predictions.parquet").to_pylist()
    labels = pq.read_table(run["out"] / "labels.parquet").to_pylist()
    assert len(preds) == len(run["preds"]) and len(labels) == len(run["labels"])
    for row, rec in zip(preds, run["preds"].to_dict("records"), strict=True):
        assert row["prediction_id"] == rec["prediction_id"]
        assert (row["event_time"] - EPOCH) // dt.timedelta(milliseconds=1) == rec["ms"]
        both_nan = math.isnan(row["y_pred"]) and math.isnan(rec["y_pred"])
        assert row["y_pred"] == rec["y_pred"] or both_nan
        assert (row["model_version"], row["segments"], row["weight"]) == (
            rec["model_version"], rec["segments"], rec["weight"])  # fmt: skip
    for row, rec in zip(labels, run["labels"].to_dict("records"), strict=True):
        assert row["prediction_id"] == rec["prediction_id"] and row["y_true"] == rec["y_true"]
        assert (row["label_time"] - EPOCH) // dt.timedelta(milliseconds=1) == rec["ms"]


def test_malformed_false_writes_the_same_valid_lines(run, tmp_path):
    stats = sample.generate(str(tmp_path), predictions=N, seed=11, malformed=False)
    assert stats.malformed_predictions == stats.malformed_labels == 0
    assert dataclasses.replace(stats, malformed_prediction_kinds=(), malformed_label_kinds=()) == (
        dataclasses.replace(run["stats"], malformed_prediction_kinds=(), malformed_label_kinds=())
    )
    with open(tmp_path / "predictions.jsonl", encoding="utf-8") as f:
        assert f.readlines() == run["p_raw"]
    with open(tmp_path / "labels.jsonl", encoding="utf-8") as f:
        assert f.readlines() == run["l_raw"]


@pytest.mark.parametrize("formats", [(), ("jsonl",)])
def test_jsonl_only_unless_parquet_requested(tmp_path, formats):
    sample.generate(str(tmp_path), predictions=500, formats=formats)
    assert sorted(os.listdir(tmp_path)) == ["labels.jsonl", "predictions.jsonl"]


def test_parquet_adds_to_jsonl(tmp_path):
    stats = sample.generate(str(tmp_path), predictions=2000, formats=("parquet",))
    names = ["labels.jsonl", "labels.parquet", "predictions.jsonl", "predictions.parquet"]
    assert sorted(os.listdir(tmp_path)) == names
    table = pq.read_table(tmp_path / "predictions.parquet")
    assert table.num_rows == stats.predictions + stats.shadow_predictions + (
        stats.duplicate_predictions
    )


def test_small_sample_has_no_malformed_lines(tmp_path):
    stats = sample.generate(str(tmp_path), predictions=50, days=0.5)
    _, raw, bad = _read(tmp_path / "predictions.jsonl", "event_time", "y_pred")
    assert bad == stats.malformed_predictions == 0 and len(raw) >= 50


def test_stats_to_dict_is_json(run):
    out = json.loads(json.dumps(run["stats"].to_dict()))
    assert out["joined"] == run["stats"].joined > out["labels_joined"] > 0
    assert out["expired"] == run["stats"].expired
    assert out["drift_segment"] == "region=apac"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"predictions": 0},
        {"predictions": 1.5},
        {"seed": -1},
        {"days": 0},
        {"formats": ("csv",)},
        {"formats": "jsonl"},
        {"start": "2026-11-01T00:00:00"},  # no offset
        {"start": "yesterday"},
    ],
)
def test_bad_arguments_raise_value_error(tmp_path, kwargs):
    with pytest.raises(ValueError):
        sample.generate(str(tmp_path), **kwargs)
