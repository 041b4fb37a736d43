"""``msewatch run``, ``report`` and ``query`` on records at the ends of the accepted time
range (1000-01-01 <= t < 9000-01-01), outside it, and on orphan labels that outwait
every window in a replay.

Expected outcomes are derived by hand in comments from the rules in the README
("Input records", "Time, lateness and panes").
"""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from msewatch import cli
from msewatch.schemas.time_range import RANGE_TEXT

pytestmark = pytest.mark.slow


def _jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _run(tmp_path, preds, labels, *extra) -> tuple[int, dict]:
    out = tmp_path / "out"
    code = cli.main(
        ["run", "--predictions", preds, "--labels", labels, "--output", str(out), "--quiet"]
        + list(extra)
    )
    summary = json.loads((out / "summary.json").read_text()) if code == 0 else {}
    return code, summary.get("outcomes", {})


@pytest.fixture(scope="module")
def far_run(tmp_path_factory):
    """A bounded run with records in the first and the last hour of the range, and
    records outside it (among them the one that crashed the metrics stage)."""
    root = tmp_path_factory.mktemp("far")
    preds = _jsonl(
        root / "p.jsonl",
        [
            {"prediction_id": "a", "event_time": "1000-01-01T00:30:00Z", "y_pred": 2.0},
            {"prediction_id": "b", "event_time": "8999-12-31T23:30:00Z", "y_pred": 1.0},
            {"prediction_id": "c", "event_time": "9999-12-31T23:30:00Z", "y_pred": 1.0},
            {"prediction_id": "d", "event_time": "0001-01-01T00:00:00Z", "y_pred": 1.0},
        ],
    )
    labels = _jsonl(
        root / "l.jsonl",
        [
            {"prediction_id": "a", "label_time": "1000-01-01T00:40:00Z", "y_true": 3.5},
            {"prediction_id": "b", "label_time": "8999-12-31T23:59:59.999Z", "y_true": 1.5},
            {"prediction_id": "c", "label_time": "9999-12-31T23:40:00Z", "y_true": 1.0},
        ],
    )
    code, outcomes = _run(root, preds, labels, "--window", "2h", "--every", "1h")
    return root / "out", code, outcomes


def test_a_run_with_times_outside_the_range_goes_on_and_dead_letters_them(far_run):
    out, code, outcomes = far_run
    assert code == 0
    # a and b join; c (year 9999) and d (year 1) are invalid, and so is c's label.
    assert outcomes["prediction"] == {
        "input": 4,
        "joined": 2,
        "expired": 0,
        "duplicate": 0,
        "invalid": 2,
    }
    assert outcomes["label"]["joined"] == 2 and outcomes["label"]["invalid"] == 1
    dead = pq.read_table(out / "dead_letter").to_pylist()
    assert sorted(d["reason"] for d in dead) == ["bad_timestamp"] * 3
    assert all(RANGE_TEXT in d["detail"] for d in dead)


def test_partition_folders_have_four_digit_years(far_run):
    out, _, _ = far_run
    folders = sorted(p.name for p in (out / "metrics").iterdir())
    # 2 h windows every hour: a (1000-01-01 00:30) is also in [0999-12-31 23:00, 01:00).
    assert folders == [
        "window_date=0999-12-31",
        "window_date=1000-01-01",
        "window_date=8999-12-31",
    ]
    assert all(re.fullmatch(r"window_date=\d{4}-\d{2}-\d{2}", f) for f in folders)


def test_report_draws_windows_of_any_accepted_year(far_run, tmp_path):
    out, _, _ = far_run
    page = tmp_path / "r.html"
    assert cli.main(["report", str(out), "--out", str(page)]) == 0
    html = page.read_text()
    assert "0999-12-31 23:00" in html and "8999-12-31 23:00" in html


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_query_prints_windows_of_any_accepted_year(far_run, capsys, fmt):
    out, _, _ = far_run
    assert cli.main(["query", str(out), "latest", "--format", fmt]) == 0
    text = capsys.readouterr().out
    stamp = "0999-12-31T23:00:00Z" if fmt == "json" else "0999-12-31 23:00:00"
    assert stamp in text
    assert ("9000-01-01T01:00:00Z" if fmt == "json" else "9000-01-01 01:00:00") in text


def test_parquet_timestamps_beyond_datetime_are_dead_letters(tmp_path):
    # timestamp[s] values in the years 20983 and -2 (neither fits Python's datetime),
    # and one in 2024: two bad_timestamp dead letters, one joined prediction.
    preds = tmp_path / "p.parquet"
    seconds = [600_000_000_000, -62_200_000_000, 1_704_067_200]
    pq.write_table(
        pa.table(
            {
                "prediction_id": ["far", "before", "ok"],
                "event_time": pa.array(seconds, pa.timestamp("s")),
                "y_pred": [1.0, 1.0, 1.0],
            }
        ),
        preds,
    )
    labels = _jsonl(
        tmp_path / "l.jsonl",
        [{"prediction_id": "ok", "label_time": "2024-01-01T00:05:00Z", "y_true": 2.0}],
    )
    code, outcomes = _run(tmp_path, str(preds), labels)
    assert code == 0
    assert outcomes["prediction"]["invalid"] == 2 and outcomes["prediction"]["joined"] == 1
    dead = pq.read_table(tmp_path / "out" / "dead_letter").to_pylist()
    assert sorted(json.loads(d["raw_payload"])["prediction_id"] for d in dead) == [
        "before",
        "far",
    ]


def test_replay_counts_orphan_labels_that_outwait_every_window(tmp_path):
    # --label-ttl 6h --orphan-ttl 24h, labels before their predictions:
    # * a's label at 09:00 waits; a is made at 10:00 (within the orphan TTL): joined;
    # * x's label at 00:00 and y's at 11:00 have no prediction: orphans when the
    #   watermark passes 24:00 and 35:00, after the last window closed (19:00);
    # * b is made at 12:00 and labeled at 12:30: joined.
    preds = _jsonl(
        tmp_path / "p.jsonl",
        [
            {"prediction_id": "a", "event_time": "2024-01-01T10:00:00Z", "y_pred": 1.0},
            {"prediction_id": "b", "event_time": "2024-01-01T12:00:00Z", "y_pred": 2.0},
        ],
    )
    labels = _jsonl(
        tmp_path / "l.jsonl",
        [
            {"prediction_id": "x", "label_time": "2024-01-01T00:00:00Z", "y_true": 0.0},
            {"prediction_id": "a", "label_time": "2024-01-01T09:00:00Z", "y_true": 4.0},
            {"prediction_id": "y", "label_time": "2024-01-01T11:00:00Z", "y_true": 0.0},
            {"prediction_id": "b", "label_time": "2024-01-01T12:30:00Z", "y_true": 2.5},
        ],
    )
    ttls = ["--label-ttl", "6h", "--orphan-ttl", "24h"]
    counts = {}
    for mode, extra in (("bounded", []), ("replay", ["--streaming-replay"])):
        (tmp_path / mode).mkdir()
        code, counts[mode] = _run(tmp_path / mode, preds, labels, *ttls, *extra)
        assert code == 0
    assert counts["replay"]["label"] == {
        "input": 4,
        "joined": 2,
        "late_label": 0,
        "orphan_label": 2,
        "duplicate": 0,
        "invalid": 0,
    }
    assert counts["replay"] == counts["bounded"]
