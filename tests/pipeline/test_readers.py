"""Reading record files: chunking, formats, file order and the ReadRecords transform.

Expected offsets are the byte lengths of what each test writes; expected ids are the
records written, minus the ones each test breaks on purpose.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from msewatch.schemas.records import POSITION_FILE_SHIFT, make_position
from msewatch.transforms.io.files import (
    ReadRecords,
    match_files,
    read_all,
    read_chunk,
    split_file,
)


def write_lines(path, lines: list[str], newline: str = "\n", final: bool = True) -> list[int]:
    """Writes ``lines``; returns the byte offset of each."""
    text = newline.join(lines) + (newline if final else "")
    path.write_bytes(text.encode())
    sizes = [len(line.encode()) + len(newline) for line in lines]
    return [sum(sizes[:i]) for i in range(len(lines))]


def pred(i: int, pad: int = 0) -> str:
    return json.dumps({"prediction_id": f"p{i}", "event_time": i, "y_pred": i, "note": "x" * pad})


@pytest.fixture
def mixed_dir(tmp_path):
    """A JSON Lines file (uneven lines, blank lines, a broken line, no final newline)
    and a CSV file (CRLF, a short row). Sorted: a.csv is file 0, b.jsonl is file 1."""
    lines = [pred(i, pad=(i * 7) % 23) for i in range(40)]
    lines[5], lines[17] = "", "   "  # blank lines: not records
    lines[23] = "{broken"
    jsonl = write_lines(tmp_path / "b.jsonl", lines, final=False)
    rows = ["prediction_id,event_time,y_pred,region"] + [
        f"c{i},{i},{i / 4},r{i % 3}" for i in range(25)
    ]
    rows[9] = "c8-short,1"
    csv = write_lines(tmp_path / "a.csv", rows, newline="\r\n")
    valid = {f"p{i}": make_position(1, jsonl[i]) for i in range(40) if i not in (5, 17, 23)}
    valid.update({f"c{i - 1}": make_position(0, csv[i]) for i in range(1, 26) if i != 9})
    dead = {(1, jsonl[23]), (0, csv[9])}
    return tmp_path, valid, dead


@pytest.mark.parametrize("chunk_bytes", [1, 5, 64, 333, 1 << 20])
def test_every_line_read_once_whatever_the_chunk_size(mixed_dir, chunk_bytes):
    directory, valid, dead = mixed_dir
    records, dead_letters = read_all(str(directory / "*"), "prediction", ("region",), chunk_bytes)
    got = dict(
        zip(records["prediction_id"].to_pylist(), records["position"].to_pylist(), strict=True)
    )
    assert got == valid and records.num_rows == len(valid)
    paths = dead_letters["source"].to_pylist()
    files = [0 if p.endswith("a.csv") else 1 for p in paths]
    assert set(zip(files, dead_letters["ingest_position"].to_pylist(), strict=True)) == dead
    assert dead_letters["reason"].to_pylist() == ["unparseable"] * 2


def test_parallel_read_equals_the_sequential_read(mixed_dir):
    # The replay parses text chunks in forked processes; same rows, same order.
    directory, _, _ = mixed_dir
    pattern = str(directory / "*")
    fork = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=fork) as pool:
        parallel = read_all(pattern, "prediction", ("region",), 64, pool)
    sequential = read_all(pattern, "prediction", ("region",), 64)
    assert parallel[0].num_rows > 0 and parallel[1].num_rows == 2
    assert parallel[0].equals(sequential[0]) and parallel[1].equals(sequential[1])


def test_chunk_that_starts_mid_line_owns_the_next_line(tmp_path):
    offsets = write_lines(tmp_path / "x.jsonl", [pred(0), pred(1), pred(2)])
    (file,) = match_files(str(tmp_path / "*.jsonl"))
    # Chunk 1 starts one byte into line 1: chunk 0 owns lines 0 and 1, chunk 1 line 2
    # (all lines have the same length, so line 2 starts at 2 * offsets[1]).
    chunks = split_file(file, offsets[1] + 1)
    assert [c.start for c in chunks] == [0, offsets[1] + 1, 2 * offsets[1] + 2]
    ids = [read_chunk(c, "prediction")[0]["prediction_id"].to_pylist() for c in chunks]
    assert ids == [["p0", "p1"], ["p2"], []]


def test_files_are_indexed_in_sorted_path_order(tmp_path):
    for name in ("c.jsonl", "a.jsonl", "b.ndjson"):
        write_lines(
            tmp_path / name, [json.dumps({"prediction_id": name, "event_time": 1, "y_pred": 1})]
        )
    records, _ = read_all(str(tmp_path / "*"), "prediction")
    index = {r["prediction_id"]: r["position"] >> POSITION_FILE_SHIFT for r in records.to_pylist()}
    assert index == {"a.jsonl": 0, "b.ndjson": 1, "c.jsonl": 2}


def test_parquet_row_groups_are_chunks_with_row_numbers(tmp_path):
    table = pa.table(
        {
            "prediction_id": [f"q{i}" for i in range(8)],
            "event_time": pa.array(range(8), pa.int64()),
            "y_pred": [1.0] * 7 + [None],
            "region": ["eu"] * 8,
        }
    )
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=3)
    (file,) = match_files(str(tmp_path / "p.parquet"))
    assert [(c.start, c.end) for c in split_file(file, 1)] == [(0, 0), (1, 3), (2, 6)]
    records, dead = read_all(str(tmp_path / "p.parquet"), "prediction", ("region",))
    assert records["position"].to_pylist() == list(range(8))
    assert records["seg.region"].to_pylist() == ["eu"] * 8
    assert dead.num_rows == 0


def test_labels_empty_and_header_only_files(tmp_path):
    write_lines(
        tmp_path / "l.jsonl", [json.dumps({"prediction_id": "a", "y_true": 2, "label_time": 9})]
    )
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "head.csv").write_bytes(b"prediction_id,y_true,label_time\n")
    records, dead = read_all(str(tmp_path / "*"), "label", ("ignored",))
    assert records.to_pylist() == [
        {"prediction_id": "a", "y_true": 2.0, "label_time_ms": 9, "position": make_position(2, 0)}
    ]
    assert dead.num_rows == 0


def test_bad_patterns_and_config_raise(tmp_path):
    with pytest.raises(ValueError, match="no file matches"):
        read_all(str(tmp_path / "*.jsonl"), "prediction")
    (tmp_path / "x.txt").write_text("{}")
    with pytest.raises(ValueError, match=r"\.jsonl, \.json, \.ndjson, \.csv, \.parquet"):
        beam.Pipeline() | ReadRecords(str(tmp_path / "*"), "prediction")
    with pytest.raises(ValueError, match="prediction, label"):
        ReadRecords("x", "metrics")
    with pytest.raises(ValueError, match="chunk_bytes"):
        ReadRecords("x", "label", chunk_bytes=0)
    with pytest.raises(ValueError, match="segment_keys"):
        ReadRecords("x", "prediction", ("a", "a"))


def test_read_records_pipeline_outputs_and_counters(mixed_dir):
    directory, valid, dead = mixed_dir
    p = test_pipeline.TestPipeline()
    out = p | "Read" >> ReadRecords(str(directory / "*"), "prediction", ("region",), chunk_bytes=97)
    ids = out.records | "Ids" >> beam.FlatMap(lambda t: t["prediction_id"].to_pylist())
    positions = out.dead_letter | "Dead" >> beam.FlatMap(lambda t: t["ingest_position"].to_pylist())
    assert_that(ids, equal_to(list(valid)), label="CheckIds")
    assert_that(positions, equal_to([pos for _, pos in dead]), label="CheckDead")
    result = p.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("msewatch"))["counters"]
    }
    assert counters == {
        "prediction_records_read": len(valid) + len(dead),
        "prediction_invalid": len(dead),
    }
