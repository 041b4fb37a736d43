"""Reader progress (``transforms/io/read_progress.py``, ``files.chunk_shares``) and when
the launcher shows a bar (``runners/progress.py``)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from msewatch.runners import progress
from msewatch.transforms.io import read_progress
from msewatch.transforms.io.files import chunk_shares, match_files, split_file


def test_chunk_shares_sum_to_the_file_sizes(tmp_path):
    text = tmp_path / "p.jsonl"
    text.write_bytes(b'{"a": 1}\n' * 1000)  # 9,000 bytes
    table = pa.table({"x": list(range(1000))})
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=300)  # 300+300+300+100 rows
    for path in (text, tmp_path / "p.parquet"):
        size = path.stat().st_size
        shares = chunk_shares(str(path), chunk_bytes=4096)
        assert sum(shares.values()) <= size and size - sum(shares.values()) < len(shares)
        chunks = split_file(match_files(str(path))[0], 4096)
        assert set(shares) == {(c.path, c.start) for c in chunks}
    parquet = chunk_shares(str(tmp_path / "p.parquet"))
    # row groups of 300 rows get 3x the share of the last one of 100 rows (floors aside)
    values = sorted(parquet.values())
    assert len(values) == 4 and abs(values[-1] - 3 * values[0]) <= 3


def test_reports_reach_only_the_listener_of_their_token():
    got = []
    read_progress.listen("run-a", lambda key, n: got.append((key, n)))
    try:
        read_progress.report("run-a", ("f", 0), 5)
        read_progress.report("run-b", ("f", 0), 7)  # another run's token: nobody listens
        read_progress.report(None, ("f", 0), 9)  # no token (a remote worker): nothing
    finally:
        read_progress.stop("run-a")
    read_progress.report("run-a", ("f", 0), 11)  # stopped
    assert got == [(("f", 0), 5)]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(
    ("quiet", "runner", "mode", "stream", "shown"),
    [
        (False, "DirectRunner", "in_memory", _Terminal(), True),
        (True, "DirectRunner", "in_memory", _Terminal(), False),
        (False, "DirectRunner", "multi_processing", _Terminal(), False),
        (False, "FlinkRunner", None, _Terminal(), False),
        (False, "DirectRunner", "in_memory", io.StringIO(), False),
    ],
)
def test_the_bar_is_shown_only_where_the_readers_report_to_a_terminal(
    quiet, runner, mode, stream, shown
):
    assert progress.wanted(quiet, runner, mode, stream) is shown
