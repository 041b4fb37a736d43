"""The whole CLI path on a generated sample, checked against an independent reference.

The reference reads the raw JSON Lines with Python's json module, applies the
bounded rules of docs/semantics.md itself in pandas (first prediction of each
(prediction_id, model_version) by event_time, so a shadow prediction of another version
counts; first label by label_time, scoring every version's prediction of its id; joined
when lag <= label_ttl), and computes the metrics per window and slice with scikit-learn.
The generator's own ground truth (SampleStats) checks the outcome counts.
"""

from __future__ import annotations

import datetime
import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from msewatch import cli
from msewatch.commands.generate import generate
from msewatch.runners import outcomes as run_outcomes
from tests.harness import latest, read_metrics

pytestmark = pytest.mark.slow

TTL_MS = 7 * 86400 * 1000
WINDOW_MS = 3600 * 1000


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    stats = generate(str(root / "sample"), predictions=3000, seed=11, days=1.0)
    runs = {}
    for name, extra in (
        ("bounded", []),
        ("replay", ["--streaming-replay", "--replay-chunk-rows", "700"]),
    ):
        out = root / name
        code = cli.main(
            [
                "run",
                "--predictions",
                str(root / "sample" / "predictions.jsonl"),
                "--labels",
                str(root / "sample" / "labels.jsonl"),
                "--output",
                str(out),
                "--slice",
                "region",
                "--quiet",
                *extra,
            ]
        )
        assert code == 0
        runs[name] = out
    return root / "sample", stats, runs


def _epoch_ms(value) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    return int(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _read_records(path, required):
    rows, bad = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                assert all(k in rec for k in required)
                assert isinstance(rec["prediction_id"], str) and rec["prediction_id"]
                time_key = "event_time" if "event_time" in required else "label_time"
                rec["_t"] = _epoch_ms(rec[time_key])
                y_key = "y_pred" if "y_pred" in required else "y_true"
                assert rec[y_key] is None or isinstance(rec[y_key], (int, float))
                assert float(rec.get("weight", 1.0)) >= 0
            except Exception:  # noqa: BLE001 - the reference only counts bad lines
                bad += 1
                continue
            rec["_pos"] = len(rows)
            rows.append(rec)
    return pd.DataFrame(rows), bad


def _reference(sample_dir):
    preds, bad_p = _read_records(
        sample_dir / "predictions.jsonl", ("prediction_id", "event_time", "y_pred")
    )
    labels, bad_l = _read_records(
        sample_dir / "labels.jsonl", ("prediction_id", "y_true", "label_time")
    )
    preds = preds.sort_values(["_t", "_pos"]).drop_duplicates(["prediction_id", "model_version"])
    labels = labels.sort_values(["_t", "_pos"]).drop_duplicates("prediction_id")
    preds["region"] = preds["segments"].map(lambda s: (s or {}).get("region", "unknown"))
    preds["weight"] = preds.get("weight", 1.0).fillna(1.0).astype(float)
    preds["y_pred"] = preds["y_pred"].astype(float)
    m = preds.merge(
        labels[["prediction_id", "y_true", "_t"]],
        on="prediction_id",
        how="left",
        suffixes=("", "_label"),
    )
    m["joined"] = (m["_t_label"] - m["_t"]) <= TTL_MS
    m["window"] = (m["_t"] // WINDOW_MS) * WINDOW_MS
    return m, bad_p, bad_l


def test_outcomes_match_the_generators_ground_truth(sample):
    sample_dir, stats, runs = sample
    outcomes = run_outcomes.outcome_counts(str(runs["bounded"]))
    assert run_outcomes.balanced(outcomes)
    p, lab = outcomes["prediction"], outcomes["label"]
    assert p["duplicate"] == stats.duplicate_predictions
    assert p["invalid"] == stats.malformed_predictions
    assert p["expired"] == stats.expired
    assert p["joined"] == stats.joined  # each version's prediction of a labeled id
    assert lab["joined"] == stats.labels_joined < stats.joined  # a label joins once
    assert lab["duplicate"] == stats.duplicate_labels
    assert lab["late_label"] == stats.labels_past_ttl
    assert lab["orphan_label"] == stats.orphan_labels
    assert lab["invalid"] == stats.malformed_labels


def test_conflicting_duplicate_labels_match_the_files(sample):
    # the reference: per id, the label with the earliest (label_time, line) wins; a later
    # one whose y_true differs (NaN equals NaN) conflicts. The generator repeats half of
    # its duplicates with another value (msewatch/commands/generate.py).
    sample_dir, stats, runs = sample
    required = ("prediction_id", "y_true", "label_time")
    labels, _ = _read_records(sample_dir / "labels.jsonl", required)
    labels = labels.sort_values(["_t", "_pos"])
    labels["y_true"] = labels["y_true"].astype(float)
    winners = labels.drop_duplicates("prediction_id")[["prediction_id", "y_true"]]
    m = labels.merge(winners, on="prediction_id", suffixes=("", "_winner"))
    same = (m["y_true"] == m["y_true_winner"]) | (m["y_true"].isna() & m["y_true_winner"].isna())
    expected = int((~same).sum())
    assert 0 < expected < stats.duplicate_labels
    for run in runs.values():
        details = run_outcomes.outcome_details(str(run))
        assert details == {"label": {"duplicate": {"conflicting": expected}}}


def test_metrics_equal_scikit_learn_on_every_window_and_slice(sample):
    sample_dir, _, runs = sample
    ref, _, _ = _reference(sample_dir)
    got = latest(read_metrics(runs["bounded"]))
    assert got["complete"].all()
    checked = 0
    for (slice_name, window), rows in _groups(ref):
        row = got[
            (got["slice"] == slice_name)
            & (got["window_start"] == pd.Timestamp(window, unit="ms", tz="UTC"))
        ]
        assert len(row) == 1, (slice_name, window)
        row = row.iloc[0]
        labeled = rows[rows["joined"]]
        ok = labeled[np.isfinite(labeled["y_pred"]) & np.isfinite(labeled["y_true"])]
        assert row["predictions"] == len(rows)
        assert row["labeled"] == len(labeled)
        assert row["expired"] == len(rows) - len(labeled)
        assert row["scored"] == len(ok)
        if len(ok) == 0:
            assert math.isnan(row["mse"])
            continue
        w = ok["weight"].to_numpy()
        yt, yp = ok["y_true"].to_numpy(), ok["y_pred"].to_numpy()
        assert row["mse"] == pytest.approx(mean_squared_error(yt, yp, sample_weight=w), rel=1e-9)
        assert row["mae"] == pytest.approx(mean_absolute_error(yt, yp, sample_weight=w), rel=1e-9)
        if len(ok) > 1 and np.ptp(yt) > 0:
            r2 = r2_score(yt, yp, sample_weight=w)
            assert row["r2"] == pytest.approx(r2, rel=1e-9, abs=1e-12)
        checked += 1
    assert checked > 50


def _groups(ref):
    for window, rows in ref.groupby("window"):
        yield ("overall", window), rows
    for (mv, window), rows in ref.groupby([ref["model_version"].fillna("unknown"), "window"]):
        yield (f"model_version={mv}", window), rows
    for (region, window), rows in ref.groupby(["region", "window"]):
        yield (f"region={region}", window), rows


def test_streaming_replay_gives_the_same_complete_rows(sample):
    _, _, runs = sample
    bounded = latest(read_metrics(runs["bounded"]))
    replay = latest(read_metrics(runs["replay"]))
    assert replay["complete"].all()
    assert (replay["pane_timing"] != "EARLY").all()
    cols = [
        c
        for c in bounded.columns
        if c not in ("pane_index", "pane_timing", "emitted_at", "window_date")
    ]
    b = bounded[cols].reset_index(drop=True)
    r = replay[cols].reset_index(drop=True)
    assert list(b["slice"]) == list(r["slice"]) and list(b["window_start"]) == list(
        r["window_start"]
    )
    for c in cols:
        if pd.api.types.is_float_dtype(b[c]):
            assert b[c].to_numpy() == pytest.approx(r[c].to_numpy(), rel=1e-9, nan_ok=True), c
        else:  # a list-of-records cell reads back as a numpy array of dicts
            plain = [list(v) if isinstance(v, np.ndarray) else v for v in b[c]]
            assert plain == [list(v) if isinstance(v, np.ndarray) else v for v in r[c]], c
    assert run_outcomes.outcome_counts(str(runs["bounded"])) == run_outcomes.outcome_counts(
        str(runs["replay"])
    )
    # the replay really streamed: windows went through early, on-time and late panes
    timings = set(read_metrics(runs["replay"])["pane_timing"])
    assert timings == {"EARLY", "ON_TIME", "LATE"}
