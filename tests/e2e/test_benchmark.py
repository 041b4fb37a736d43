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
