"""The signal scenarios' data (label-drift, prediction-drift, silent-slice, label-bug).

The files are read back with pandas and each fault is measured from the records, never
from the generator's arrays. The SLIs these scenarios page on (drift, traffic,
label_anomaly) are evaluated by the pipeline; here only the data and the SLO file's
keys are checked (the runs are ``msewatch gameday``'s).

Numbers: the signal scenarios' day is flat, so region r's ``y_true`` is ``LEVEL[r] +
N(0, 8)`` and ``y_pred`` is ``LEVEL[r] + N(0, 5)``, about 60 of each an hour; a mean of
an hour has a standard error of 8 / sqrt(60) ~ 1.0, a mean over a day 0.2.
"""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from msewatch.commands import scenarios
from msewatch.commands import scenarios_signals as signals
from msewatch.transforms.slo import spec

HOUR = pd.Timedelta(hours=1)
T = pd.Timestamp("2026-11-02T06:00:00Z")  # START + FAULT_START_HOURS
END = pd.Timestamp("2026-11-04T00:00:00Z")  # START + 3 days
NEW_SLIS = {"prediction_drift", "label_drift", "feature_drift", "traffic", "label_anomaly"}


def _read(folder) -> pd.DataFrame:
    p = pd.read_json(folder / "predictions.jsonl", lines=True)
    lab = pd.read_json(folder / "labels.jsonl", lines=True)
    df = p.merge(lab, on="prediction_id", how="left")
    df["event_time"] = pd.to_datetime(df["event_time"], utc=True)
    df["label_time"] = pd.to_datetime(df["label_time"], utc=True)
    df["region"] = df["segments"].map(lambda s: s["region"])
    for name in signals.FEATURES:
        df[name] = df["features"].map(lambda f, name=name: f[name])
    return df


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Signal scenario name -> (folder, joined records)."""
    root = tmp_path_factory.mktemp("signals")
    out = {}
    for name in signals.SIGNAL_SCENARIOS:
        scenarios.generate_scenario(name, str(root / name), seed=7)
        out[name] = (root / name, _read(root / name))
    return out


def _span(df, region, start, hours):
    t = df["event_time"]
    return (df["region"] == region) & (t >= start) & (t < start + hours * HOUR)


def test_the_signal_scenarios_are_in_the_one_registry():
    assert set(signals.SIGNAL_SCENARIOS) <= set(scenarios.SCENARIOS)
    assert len(set(scenarios.SCENARIOS)) == len(scenarios.SCENARIOS) == 12


def test_the_day_is_flat(written):
    # with the daily cycle of 0.3 the hourly means of na would swing over 120 +- 36
    # (sd ~ 25); flat, they scatter by the standard error ~ 1.0
    _, df = written["silent-slice"]
    na = df[(df["region"] == "na") & (df["event_time"] < T)]
    hourly = na.groupby(na["event_time"].dt.floor("1h"))["y_true"].mean()
    assert hourly.std() < 2 and hourly.mean() == pytest.approx(120, abs=1)


def test_label_drift_shifts_eu_labels_and_predictions_alike_from_t(written):
    _, df = written["label-drift"]
    after = _span(df, "eu", T, 42)
    eu = df["region"] == "eu"
    assert after.sum() > 42 * 50
    shift = df.loc[after, "y_true"].mean() - df.loc[eu & ~after, "y_true"].mean()
    assert shift == pytest.approx(signals.SHIFT, abs=1.5)  # 40 +- a few standard errors
    followed = df.loc[after, "y_pred"].mean() - df.loc[eu & ~after, "y_pred"].mean()
    assert followed == pytest.approx(signals.SHIFT, abs=1.5)
    # the errors do not move: RMSE before and after both ~ hypot(8, 5) = 9.43
    se = (df["y_pred"] - df["y_true"]) ** 2
    assert np.sqrt(se[after].mean()) == pytest.approx(np.hypot(8, 5), rel=0.05)
    assert np.sqrt(se[eu & ~after].mean()) == pytest.approx(np.hypot(8, 5), rel=0.05)
    for other in ("na", "apac"):  # the other regions keep their level
        assert df.loc[df["region"] == other, "y_true"].mean() == pytest.approx(
            scenarios.LEVEL[other], abs=0.5
        )


def test_prediction_drift_shifts_apac_predictions_only_and_their_labels_come_late(written):
    _, df = written["prediction-drift"]
    hit = _span(df, "apac", T, 12)
    apac = df["region"] == "apac"
    error = df["y_pred"] - df["y_true"]
    assert error[hit].mean() == pytest.approx(signals.SHIFT, abs=1.5)
    assert abs(error[~hit].mean()) < 0.5  # a shift of 40 in one region of 3 would be ~ 1.5
    assert df.loc[apac, "y_true"].mean() == pytest.approx(80, abs=0.5)  # labels unchanged
    lag = df["label_time"] - df["event_time"]
    assert lag[hit].min() >= 4.5 * HOUR and lag[hit].max() <= 5.5 * HOUR
    assert lag[~hit].max() <= 4 * HOUR and lag.max() < 6 * HOUR  # all within freshness 6 h
    # the first label of the first drifted hour comes 3.5 h after that hour has closed
    first = df.loc[_span(df, "apac", T, 1), "label_time"].min()
    assert first >= T + 4.5 * HOUR


def test_prediction_drift_shifts_apac_price_feature_only(written):
    # price: region level + N(0, 3), so an hour's mean has a standard error of ~0.4
    _, df = written["prediction-drift"]
    hit, apac = _span(df, "apac", T, 12), df["region"] == "apac"
    shift = df.loc[hit, "price"].mean() - df.loc[apac & ~hit, "price"].mean()
    assert shift == pytest.approx(signals.PRICE_SHIFT, abs=0.5)
    assert df.loc[apac & ~hit, "price"].mean() == pytest.approx(20.0, abs=0.3)
    tenure = df.loc[hit, "tenure_days"].mean() - df.loc[~hit, "tenure_days"].mean()
    assert abs(tenure) < 10  # N(400, 60): ~ 2.5 standard errors of the 700 drifted rows
    for name, other in (("label-drift", "eu"), ("label-bug", "apac")):
        quiet = written[name][1]
        region = quiet[quiet["region"] == other]
        assert region["price"].std() == pytest.approx(signals.PRICE_SD, rel=0.1), name


def test_silent_slice_stops_na_for_6_hours_and_nothing_else(written):
    _, df = written["silent-slice"]
    per_hour = df.groupby(["region", df["event_time"].dt.floor("1h")]).size()
    per_hour = per_hour.unstack(0, fill_value=0).reindex(
        pd.date_range("2026-11-01", periods=72, freq="1h", tz="UTC"), fill_value=0
    )
    silent = (per_hour.index >= T) & (per_hour.index < T + 6 * HOUR)
    assert (per_hour.loc[silent, "na"] == 0).all() and silent.sum() == 6
    assert per_hour.loc[~silent, "na"].min() > 30  # Poisson(60): under 30 is p ~ 1e-5
    assert per_hour[["eu", "apac"]].min().min() > 30
    assert df["y_true"].notna().all()  # every prediction sent still gets its label


def test_label_bug_makes_apac_labels_a_constant_outside_the_valid_range(written):
    _, df = written["label-bug"]
    hit = _span(df, "apac", T, 12)
    low, high = signals.VALID_RANGE
    assert (df.loc[hit, "y_true"] == signals.BUG_LABEL).all() and hit.sum() > 12 * 50
    assert not low <= signals.BUG_LABEL <= high
    assert df.loc[~hit, "y_true"].between(low, high).all()  # healthy labels are valid
    assert df.loc[~hit, "y_true"].std() > 10


def test_the_faults_start_at_t_the_records_before_are_the_same(written):
    # same seed, same baseline draws: before T, every signal scenario has the same records
    before = [df[df["event_time"] < T] for _, df in written.values()]
    cols = ["event_time", "y_pred", "y_true", "label_time", "region", *signals.FEATURES]
    for other in before[1:]:
        pd.testing.assert_frame_equal(
            before[0][cols].reset_index(drop=True), other[cols].reset_index(drop=True)
        )


def test_same_seed_same_bytes(tmp_path):
    for folder, seed in (("a", 3), ("b", 3), ("c", 4)):
        scenarios.generate_scenario("label-bug", str(tmp_path / folder), seed=seed)
    read = lambda f: (tmp_path / f / "labels.jsonl").read_bytes()  # noqa: E731
    assert read("a") == read("b") != read("c")


# sha256 of the files the scenarios wrote with seed 7 before the signal scenarios were
# added (commit 7653fae): the old scenarios' bytes must not change
OLD_SHA256 = {  # scenario -> file -> sha256
    "drift": {
        "predictions.jsonl": "d73d7cf0dba7896c29e9812b14d4c33c1b42c0ec2efba800da5aed7a39d9f88d",
        "labels.jsonl": "69d974083f30cb80e1efa9665e24feea11e5e938b40b19c5bae9ca4da7faa1eb",
        "slo.yaml": "4bc0054640027cce1191963351ecfcdceedf5bdcfc712aad28b515d8249f9ce5",
    },
    "label-outage": {
        "predictions.jsonl": "4c0dcabe63c82b66737372989e5824d9c3c2ee9440cd968746fb5234ede6444b",
        "labels.jsonl": "b58558114cbbf98419d1ef38210ef6a5681816561958fafd9228e2314e67d9a6",
        "slo.yaml": "4bc0054640027cce1191963351ecfcdceedf5bdcfc712aad28b515d8249f9ce5",
    },
    "label-backfill": {
        "predictions.jsonl": "c9464ec744bba30ea93043440373ca064c74024816f12cb8c59e7f32b05423f0",
        "labels.jsonl": "aab723384070cc15d7085ff17e0fbeef95bba1bf89f3a4f160300346bac0c0e9",
        "slo.yaml": "4bc0054640027cce1191963351ecfcdceedf5bdcfc712aad28b515d8249f9ce5",
    },
    "nan-burst": {
        "predictions.jsonl": "687b64d5ba5c802d0ef152dbb1ba6d47c0d5f44b8b6fd79c25052c1ae80561ad",
        "labels.jsonl": "38d1ea9b4cdbbd84adb6f6426c2b96ee512e598a350a629af6331cebe559bed2",
        "slo.yaml": "4bc0054640027cce1191963351ecfcdceedf5bdcfc712aad28b515d8249f9ce5",
    },
    "small-noisy-segment": {
        "predictions.jsonl": "f41a6de25c188b32b43b8f2e519ae2747260fbbd2a980536d449552b4b981c11",
        "labels.jsonl": "e015fa3c5bc574f9d1103d7cce6c86d21138cb2b0b281f422d1af9d17d7c0d17",
        "slo.yaml": "4bc0054640027cce1191963351ecfcdceedf5bdcfc712aad28b515d8249f9ce5",
    },
    "stationary": {
        "predictions.jsonl": "c8b4440f2085034283b650a6ac321fd45709ace3ee575b3ecdb5923c2590c14e",
        "labels.jsonl": "efb714da17d7a6d013cb276fce1dae03324916250c750360925b44f7514e6753",
        "slo.yaml": "2676e55914758f1762d9e05c4ce990e699b71c67c0962fb1d0a91f3040846464",
    },
}


@pytest.mark.parametrize("name", sorted(OLD_SHA256))
def test_the_old_scenarios_write_the_same_bytes_as_before(tmp_path, name):
    scenarios.generate_scenario(name, str(tmp_path), seed=7)
    for file, digest in OLD_SHA256[name].items():
        assert hashlib.sha256((tmp_path / file).read_bytes()).hexdigest() == digest, file


@pytest.mark.parametrize("name", signals.SIGNAL_SCENARIOS)
def test_the_slo_file_names_the_new_slis_with_the_contract_keys(written, name):
    folder, _ = written[name]
    slos = {s["sli"]: s for s in yaml.safe_load((folder / "slo.yaml").read_text())["slos"]}
    assert set(slos) == {"rmse", "error_rate", "label_freshness", "nan_rate"} | NEW_SLIS
    for sli in ("prediction_drift", "label_drift", "feature_drift"):
        assert slos[sli]["reference"] == {"trailing": "1d"} and slos[sli]["statistic"] == "psi"
    every = yaml.safe_load((folder / "slo.yaml").read_text())["slos"]
    assert [s["feature"] for s in every if s["sli"] == "feature_drift"] == list(signals.FEATURES)
    assert slos["traffic"]["trailing"] == "1d" and 0 < slos["traffic"]["threshold"] <= 1
    assert slos["label_anomaly"]["valid_range"] == list(signals.VALID_RANGE)
    for s in slos.values():
        assert "min_scored" not in s or s["sli"] in spec.LABEL_GATED
    expected = json.loads((folder / "expected_alerts.json").read_text())
    segment = expected["fault"]["segment"]
    assert {e["slice"] for e in expected["must_fire"]} == {f"region={segment}"}
    assert {e["sli"] for e in expected["must_fire"]} <= NEW_SLIS
    assert expected["must_not_fire"] == [{"sli": "*", "severity": "*", "slice": "*"}]


@pytest.mark.parametrize("name", signals.SIGNAL_SCENARIOS)
def test_the_slo_file_loads(written, name):
    from msewatch.transforms.slo.config import load_slo_file

    folder, _ = written[name]
    assert {s.sli for s in load_slo_file(str(folder / "slo.yaml")).slos} >= NEW_SLIS


def _psi(reference: np.ndarray, current: np.ndarray, bins: int) -> float:
    """PSI over the reference's quantile bins, empty bins floored at 1e-4 (by hand:
    sum (a - e) ln(a / e) of the current and reference shares)."""
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.maximum(np.histogram(reference, edges)[0] / len(reference), 1e-4)
    a = np.maximum(np.histogram(current, edges)[0] / len(current), 1e-4)
    return float(((a - e) * np.log(a / e)).sum())


@pytest.mark.parametrize(
    ("name", "column"),
    [("label-drift", "y_true"), ("prediction-drift", "y_pred"), ("prediction-drift", "price")],
)
def test_the_drift_threshold_separates_healthy_hours_from_drifted_ones(written, name, column):
    # each hour of the drifted region against the trailing day before it, as the SLO
    # file's reference {trailing: 1d} reads; the healthy hours are the 6 before T
    folder, df = written[name]
    sli = {"y_true": "label_drift", "y_pred": "prediction_drift"}.get(column, "feature_drift")
    slos = yaml.safe_load((folder / "slo.yaml").read_text())["slos"]
    threshold = next(s["threshold"] for s in slos if s["sli"] == sli)
    r = df[df["region"] == signals.SEGMENT[name]]
    for bins in (10, 20):
        psi = {}
        for h in pd.date_range(T - 6 * HOUR, T + 2 * HOUR, freq="1h"):
            ref = r.loc[(r["event_time"] >= h - 24 * HOUR) & (r["event_time"] < h), column]
            cur = r.loc[(r["event_time"] >= h) & (r["event_time"] < h + HOUR), column]
            psi[h] = _psi(ref.to_numpy(), cur.to_numpy(), bins)
        healthy = [v for h, v in psi.items() if h < T]
        drifted = [v for h, v in psi.items() if h >= T]
        assert max(healthy) < threshold / 2 and min(drifted) > 2 * threshold, (bins, psi)
