"""The benchmark harness (``benchmarks/run.py``): it runs every peer, they agree, and
a mismatch is caught. Nothing here asserts on speed: timings on a shared machine are
noise at this size; the harness's job under test is to measure and to check.
"""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

ROOT = pathlib.Path(__file__).parent.parent.parent
BENCHMARKS = ROOT / "benchmarks"
PEERS = {
    "msewatch_jsonl",
    "msewatch_slo",
    "msewatch_parquet",
    "msewatch_replay",
    "textbook",
    "pandas",
    "duckdb",
}

sys.path.insert(0, str(BENCHMARKS))
import _agree  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)
import _measure  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Exit status and results.json of one ``run.py --quick`` (3,000 predictions)."""
    out = tmp_path_factory.mktemp("bench-out")
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else None
    return proc, results


@pytest.mark.slow
def test_quick_run_succeeds(quick):
    proc, results = quick
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert results is not None


@pytest.mark.slow
def test_every_peer_is_measured_with_positive_rates(quick):
    _, results = quick
    assert set(results["peers"]) == PEERS
    for name, peer in results["peers"].items():
        assert peer["completed"] == peer["repeats"] == len(peer["runs"]) == 1, name
        assert peer["events"] > 0, name
        assert peer["events_per_s"] > 0, name
        assert peer["peak_rss_mib"] > 0, name


@pytest.mark.slow
def test_events_are_prediction_plus_label_records(quick):
    _, results = quick
    workload = results["workload"]
    assert workload["events"] == workload["prediction_records"] + workload["label_records"]
    # 3,000 served predictions, shadow ones for 25 % of v1's 60 % (about 450) and 0.5 %
    # duplicates: about 3000 * 1.15 * 1.005 = 3467 lines.
    assert 3400 <= workload["prediction_records"] < 3550
    assert results["peers"]["msewatch_jsonl"]["events"] == workload["events"]
    assert results["peers"]["textbook"]["events"] == results["textbook_workload"]["events"]


@pytest.mark.slow
def test_agreement_check_passed_for_every_peer(quick):
    _, results = quick
    agreement = results["agreement"]
    assert agreement["passed"] is True
    checked = {c["peer"] for c in agreement["checks"]}
    assert checked == PEERS - {"pandas"}  # pandas is the reference
    for check in agreement["checks"]:
        assert check["ok"] and check["rows"] > 0 and check["missing_rows"] == 0, check


@pytest.mark.slow
def test_ratios_are_reported(quick):
    _, results = quick
    for name, value in results["ratios"].items():
        assert value is not None and value > 0 and math.isfinite(value), name


def _rows(mse):
    return pd.DataFrame(
        {
            "window_start_ms": [0, 0, 3_600_000],
            "slice": ["overall", "region=eu", "overall"],
            "predictions": [10, 4, 7],
            "scored": [9, 4, 0],
            "mse": [2.5, mse, np.nan],
        }
    )


@pytest.mark.parametrize(
    ("mse", "ok"),
    [(1.25, True), (1.25 * (1 + 1e-12), True), (1.25 * (1 + 1e-6), False), (np.nan, False)],
)
def test_compare_flags_values_beyond_the_tolerance(mse, ok):
    assert _agree.compare(_rows(1.25), _rows(mse))["ok"] is ok


def test_compare_flags_a_different_count():
    peer = _rows(1.25).assign(predictions=[10, 5, 7])
    assert not _agree.compare(_rows(1.25), peer)["ok"]


def test_compare_flags_a_missing_row():
    result = _agree.compare(_rows(1.25), _rows(1.25).iloc[:2])
    assert not result["ok"] and result["missing_rows"] == 1


def test_textbook_comparison_ignores_rows_without_scored_pairs():
    peer = _rows(1.25).iloc[:2][["window_start_ms", "slice", "scored", "mse"]]
    assert _agree.compare(_rows(1.25), peer, only_scored=True)["ok"]


def test_peak_rss_is_the_childs_own(tmp_path):
    # This test process has pandas loaded (well over 100 MiB); a child that allocates
    # 200 MiB must report at least that, and a bare interpreter far less than us.
    big = _measure.run([sys.executable, "-c", "x = bytearray(200 << 20)"], str(tmp_path / "a"))
    bare = _measure.run([sys.executable, "-c", "pass"], str(tmp_path / "b"))
    assert big.peak_rss_bytes >= 200 << 20
    assert bare.peak_rss_bytes < 64 << 20


def test_a_run_past_the_time_limit_is_killed_and_flagged(tmp_path):
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    result = _measure.run(sleeper, str(tmp_path / "log"), timeout_s=1)
    assert result.timed_out and result.wall_s < 30


def test_a_failing_run_raises_with_its_log(tmp_path):
    failing = [sys.executable, "-c", "import sys; sys.exit('no such file: x.jsonl')"]
    with pytest.raises(RuntimeError, match="no such file: x.jsonl"):
        _measure.run(failing, str(tmp_path / "log"))


EU = {"region": "eu"}


def _write_lines(path: pathlib.Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.mark.parametrize("script", ["duckdb_ref.py", "pandas_ref.py"])
def test_reference_peers_follow_the_join_rules(tmp_path, script):
    # a: first of two predictions (by event time) wins; its label lags 0.5 s: e = 3 - 1 = 2.
    # b: RFC 3339 times with offsets; the earlier of its two labels wins: e = 5 - 2 = 3.
    # c: its label lags 10.001 s > the 10 s TTL: expired (predicted, not labeled).
    preds = _write_lines(
        tmp_path / "p.jsonl",
        [
            {"prediction_id": "a", "event_time": 1000, "y_pred": 3.0, "segments": EU},
            {"prediction_id": "a", "event_time": 1200, "y_pred": 99.0, "segments": EU},
            {
                "prediction_id": "b",
                "event_time": "1970-01-01T00:00:02+00:00",
                "y_pred": 5.0,
                "segments": {"region": "na"},
            },
            {"prediction_id": "c", "event_time": 3000, "y_pred": 1.0, "segments": EU},
        ],
    )
    labels = _write_lines(
        tmp_path / "l.jsonl",
        [
            {"prediction_id": "a", "y_true": 1.0, "label_time": 1500},
            {"prediction_id": "b", "y_true": 100.0, "label_time": 9000},
            {"prediction_id": "b", "y_true": 2.0, "label_time": "1970-01-01T01:00:03+01:00"},
            {"prediction_id": "c", "y_true": 1.0, "label_time": 13001},
        ],
    )
    out = tmp_path / "m.parquet"
    subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--predictions", preds, "--labels", labels,
         "--output", str(out), "--label-ttl-ms", "10000", "--slice", "region"],
        check=True, timeout=120,
    )  # fmt: skip
    rows = pd.read_parquet(out).set_index("slice")
    # overall: se 4 and 9 -> mse 6.5, mae (2 + 3) / 2; eu: a only; na: b only.
    expected = {
        "overall": (3, 2, 2, 6.5, 2.5),
        "region=eu": (2, 1, 1, 4.0, 2.0),
        "region=na": (1, 1, 1, 9.0, 3.0),
    }
    assert set(rows.index) == set(expected) and (rows["window_start_ms"] == 0).all()
    for name, (n, labeled, scored, mse, mae) in expected.items():
        row = rows.loc[name]
        assert (row["predictions"], row["labeled"], row["scored"]) == (n, labeled, scored)
        assert row["mse"] == pytest.approx(mse) and row["mae"] == pytest.approx(mae)
        assert row["rmse"] == pytest.approx(math.sqrt(mse))


def test_pandas_reference_reads_the_default_sample(tmp_path):
    from msewatch.commands.generate import generate

    stats = generate(str(tmp_path / "s"), predictions=1500, seed=3)  # malformed lines included
    lines = (tmp_path / "s" / "predictions.jsonl").read_text().splitlines()
    out = tmp_path / "m.parquet"
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "pandas_ref.py"),
         "--predictions", str(tmp_path / "s" / "predictions.jsonl"),
         "--labels", str(tmp_path / "s" / "labels.jsonl"), "--output", str(out)],
        check=True, timeout=120,
    )  # fmt: skip
    total = pd.read_parquet(out).query("slice == 'overall'")["predictions"].sum()
    # every valid distinct prediction is counted; lines that are not JSON objects are not
    assert stats.predictions + stats.shadow_predictions <= total < len(lines)
