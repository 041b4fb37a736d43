"""The accepted range of record times (msewatch.schemas.time_range) in every input format,
and the caps on windows and TTLs that keep every derived time inside Python's datetime.

Expected epoch values come from Python's datetime (``utc_ms``), never from the parser.
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest
from apache_beam.utils.timestamp import Timestamp

from msewatch.schemas.time_range import EARLIEST_MS, END_MS, MAX_DURATION_MS, RANGE_TEXT
from msewatch.transforms.io.parquet_sink import _window_date
from msewatch.transforms.join.kernel import JoinConfig, window_timer_grid_ms
from msewatch.transforms.metrics.windowing import WindowConfig
from msewatch.transforms.parse.pubsub_messages import parse_json_messages
from msewatch.transforms.parse.records import parse_labels
from tests.parse_examples import block, preds, utc_ms

FIRST = "1000-01-01T00:00:00Z"
LAST = "8999-12-31T23:59:59.999Z"
BEFORE = "0999-12-31T23:59:59.999Z"
AFTER = "9000-01-01T00:00:00Z"
LATE_9999 = "9999-12-31T23:30:00Z"  # the record that crashed the metrics stage
DAY = 86_400


def test_range_constants_are_the_documented_dates():
    assert (EARLIEST_MS, END_MS) == (utc_ms(FIRST), utc_ms(AFTER))
    assert MAX_DURATION_MS == 3650 * DAY * 1000


def _jsonl(times) -> tuple[pa.Table, pa.Table]:
    rows = [{"prediction_id": str(i), "event_time": t, "y_pred": 0} for i, t in enumerate(times)]
    return preds(block(*rows))


@pytest.mark.parametrize(
    "times",
    [
        [FIRST, LAST, BEFORE, AFTER, LATE_9999, "0000-01-01T00:00:00Z"],
        [utc_ms(FIRST), utc_ms(LAST), utc_ms(BEFORE), utc_ms(AFTER), 1e20, -(10**18)],
        [str(utc_ms(FIRST)), str(utc_ms(LAST)), "-30610224000001", "221845392000000"],
    ],
    ids=["rfc3339", "epoch-numbers", "epoch-strings"],
)
def test_jsonl_times_outside_the_range_are_bad_timestamps_naming_it(times):
    rec, dead = _jsonl(times)
    assert rec["event_time_ms"].to_pylist() == [utc_ms(FIRST), utc_ms(LAST)]
    assert dead.num_rows == len(times) - 2
    assert set(dead["reason"].to_pylist()) == {"bad_timestamp"}
    for row in dead.to_pylist():
        assert RANGE_TEXT in row["detail"]
        shown = json.loads(row["raw_payload"])["event_time"]
        assert row["detail"].endswith(str(shown)) or isinstance(shown, float)


def test_csv_times_outside_the_range_are_bad_timestamps():
    header = b"prediction_id,event_time,y_pred\n"
    data = f"a,{FIRST},1\nb,{LATE_9999},1\nc,{utc_ms(AFTER)},1\nd,{LAST},1\n".encode()
    rec, dead = preds(data, fmt="csv", csv_header=header)
    assert rec["prediction_id"].to_pylist() == ["a", "d"]
    assert dead["reason"].to_pylist() == ["bad_timestamp"] * 2
    assert dead["detail"].to_pylist() == [
        f"event_time must lie in the accepted range {RANGE_TEXT}, got {LATE_9999}",
        f"event_time must lie in the accepted range {RANGE_TEXT}, got {utc_ms(AFTER)}",
    ]


def test_label_times_are_held_to_the_same_range():
    rows = [
        {"prediction_id": "a", "label_time": BEFORE, "y_true": 1},
        {"prediction_id": "b", "label_time": FIRST, "y_true": 1},
    ]
    rec, dead = parse_labels(block(*rows), "jsonl", "src", 0, 0)
    assert rec["label_time_ms"].to_pylist() == [utc_ms(FIRST)]
    assert dead["reason"].to_pylist() == ["bad_timestamp"]
    assert dead["detail"][0].as_py().startswith("label_time must lie in the accepted range")


# Parquet timestamp[s] values: year 20983 and year -2 overflow Python's datetime (and
# int64 milliseconds for the first); 1000-01-01 and 8999-12-31 are inside the range.
SECONDS = [600_000_000_000, -62_200_000_000, utc_ms(FIRST) // 1000, utc_ms(LAST) // 1000]


@pytest.mark.parametrize(
    "column, kept",
    [
        (pa.array(SECONDS, pa.timestamp("s")), [utc_ms(FIRST), utc_ms(LAST) // 1000 * 1000]),
        (pa.array(SECONDS, pa.timestamp("s", tz="UTC")), [utc_ms(FIRST), utc_ms(LAST) - 999]),
        (pa.array([2**63 - 1, -(2**63), 0, 1], pa.timestamp("ms")), [0, 1]),
        (pa.array([2**31 - 1, -(2**31), 0, 1], pa.date32()), [0, DAY * 1000]),
        (pa.array([2**62, -(2**62), 0, 1], pa.date64()), [0, 1]),
        (pa.array([2**63 - 1, -(2**63), 0, 1], pa.int64()), [0, 1]),
        (pa.array([1e300, -1e300, 0.5, 1.5]), [0, 1]),
    ],
    ids=["timestamp-s", "timestamp-s-utc", "timestamp-ms", "date32", "date64", "int", "float"],
)
def test_parquet_time_columns_that_overflow_are_dead_lettered_not_fatal(column, kept):
    table = pa.table({"prediction_id": list("abcd"), "event_time": column, "y_pred": [0.0] * 4})
    rec, dead = preds(table, fmt="parquet")
    assert rec["prediction_id"].to_pylist() == ["c", "d"]
    assert rec["event_time_ms"].to_pylist() == kept
    assert dead["reason"].to_pylist() == ["bad_timestamp"] * 2
    for row in dead.to_pylist():
        assert RANGE_TEXT in row["detail"]
        stored = json.loads(row["raw_payload"])["event_time"]
        assert row["detail"].endswith(str(stored))  # the value as stored, as text


def test_parquet_timestamp_detail_shows_the_stored_date():
    table = pa.table(
        {
            "prediction_id": ["a"],
            "event_time": pa.array([600_000_000_000], pa.timestamp("s")),
            "y_pred": [0.0],
        }
    )
    _, dead = preds(table, fmt="parquet")
    assert dead["detail"][0].as_py().endswith("got 20983-03-30 10:40:00")


def test_parquet_payload_with_nested_far_timestamps_is_text():
    far = pa.array([600_000_000_000], pa.timestamp("s"))
    table = pa.table(
        {
            "prediction_id": ["a"],
            "event_time": far,
            "y_pred": [0.0],
            "extra": pa.StructArray.from_arrays([pa.ListArray.from_arrays([0, 1], far)], ["ts"]),
        }
    )
    _, dead = preds(table, fmt="parquet")
    assert json.loads(dead["raw_payload"][0].as_py())["extra"] == {"ts": ["20983-03-30 10:40:00"]}


def test_pubsub_record_times_and_publish_times_are_held_to_the_range():
    payloads = [
        json.dumps({"prediction_id": "a", "y_true": 1.0, "label_time": AFTER}).encode(),
        json.dumps({"prediction_id": "b", "y_true": 1.0}).encode(),  # publish time: far
        json.dumps({"prediction_id": "c", "y_true": 1.0}).encode(),
    ]
    rec, dead = parse_json_messages(
        payloads,
        "label",
        "subs/x",
        base_sequence=0,
        message_ids=["m0", "m1", "m2"],
        publish_time_ms=[0, utc_ms(AFTER), 7],
    )
    assert rec["label_time_ms"].to_pylist() == [7]
    assert dead["message_id"].to_pylist() == ["m0", "m1"]
    assert dead["reason"].to_pylist() == ["bad_timestamp"] * 2
    assert dead["detail"].to_pylist() == [
        f"label_time must lie in the accepted range {RANGE_TEXT}, got {AFTER}",
        f"label_time must lie in the accepted range {RANGE_TEXT}, got 9000-01-01T00:00:00.000Z",
    ]


@pytest.mark.parametrize("every_days", [None, 1])
@pytest.mark.parametrize("t_ms", [EARLIEST_MS, END_MS - 1])
def test_every_time_derived_from_an_accepted_record_fits_datetime(t_ms, every_days):
    # The longest window and TTLs; the latest derived time is a tombstone (t + 2 TTL)
    # or the garbage collection of the last window holding t (its end + TTL + 1 s).
    window_s = MAX_DURATION_MS // 1000
    ttl_ms = MAX_DURATION_MS
    every_s = None if every_days is None else every_days * DAY
    config = WindowConfig(window_s, every_s, allowed_lateness_seconds=ttl_ms // 1000 + 1)
    windows = config.window_fn().assign(_Ctx(Timestamp(micros=t_ms * 1000)))
    period_ms = config.period_seconds * 1000
    grid = window_timer_grid_ms(period_ms, ttl_ms)
    join = JoinConfig(label_ttl_ms=ttl_ms, orphan_ttl_ms=MAX_DURATION_MS, timer_grid_ms=grid)
    derived = [t_ms + 2 * join.label_ttl_ms, t_ms + join.orphan_ttl_ms + grid + 1]
    derived.append((t_ms // grid + 1) * grid + join.label_ttl_ms)
    for w in windows:
        gc = w.end + config.allowed_lateness_seconds
        for stamp in (w.start, w.end, gc):
            stamp.to_utc_datetime(has_tz=True)  # raises OverflowError outside the years 1-9999
        date = _window_date({"window_start": w.start.to_utc_datetime(has_tz=True)})
        assert len(date) == 10 and date[4] == "-"
    for ms in derived:
        Timestamp(micros=ms * 1000).to_utc_datetime(has_tz=True)


class _Ctx:
    def __init__(self, timestamp):
        self.timestamp = timestamp


@pytest.mark.parametrize(
    "year, expected", [(1, "0001-01-01"), (999, "0999-07-04"), (2024, "2024-07-04")]
)
def test_partition_dates_are_four_digit_years(year, expected):
    start = dt.datetime(year, 1 if year == 1 else 7, 1 if year == 1 else 4, tzinfo=dt.UTC)
    assert _window_date({"window_start": start}) == expected


@pytest.mark.parametrize(
    "kwargs, limit",
    [
        ({"window_seconds": MAX_DURATION_MS // 1000 + 1}, "3650 days"),
        ({"window_seconds": 10**20}, "3650 days"),
        ({"allowed_lateness_seconds": MAX_DURATION_MS // 1000 + 61}, "3650 days"),
    ],
)
def test_window_config_refuses_windows_past_the_cap(kwargs, limit):
    with pytest.raises(ValueError, match=limit):
        WindowConfig(**kwargs)


def test_window_config_accepts_the_cap_itself():
    cap_s = MAX_DURATION_MS // 1000
    assert WindowConfig(cap_s, DAY, allowed_lateness_seconds=cap_s + 1).window_seconds == cap_s


@pytest.mark.parametrize(
    "kwargs",
    [
        {"label_ttl_ms": MAX_DURATION_MS + 1},
        {"orphan_ttl_ms": MAX_DURATION_MS + 1},
        {"label_ttl_ms": 10**30},
    ],
)
def test_join_config_refuses_ttls_past_the_cap(kwargs):
    with pytest.raises(ValueError, match="3650 days"):
        JoinConfig(**kwargs)


def test_join_config_accepts_the_cap_itself():
    config = JoinConfig(label_ttl_ms=MAX_DURATION_MS, orphan_ttl_ms=MAX_DURATION_MS)
    assert config.label_ttl_ms == config.orphan_ttl_ms == MAX_DURATION_MS
