"""What ``msewatch run`` does with its output folder and its inputs, before and after.

Each command either exits 0 with balanced outcomes or exits 2 with one line and no
traceback; reruns replace, never add; nothing msewatch did not write is touched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

import msewatch
from msewatch import cli
from msewatch.commands import generate as sample
from msewatch.commands import summary
from msewatch.runners import outcomes as run_outcomes
from msewatch.schemas import records
from tests.cli_cases import error_lines


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("inputs")
    sample.generate(str(base), predictions=400, seed=3, days=1.0)
    return base


def _run(inputs, output, *extra) -> list[str]:
    return [
        "run",
        "--predictions",
        str(inputs / "predictions.jsonl"),
        "--labels",
        str(inputs / "labels.jsonl"),
        "--output",
        str(output),
        "--quiet",
        *extra,
    ]


def _one_error(capsys, code, expected: str):
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("msewatch: error:"), err
    assert expected in lines[0]


def _rows(output) -> pd.DataFrame:
    import glob

    files = sorted(glob.glob(os.path.join(glob.escape(str(output)), "metrics", "*", "*.parquet")))
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return frame.drop(columns=["emitted_at"]).sort_values(["window_start", "slice", "pane_index"])


def test_two_identical_runs_leave_the_rows_of_one(inputs, tmp_path, capsys):
    out = tmp_path / "out[1]"  # brackets are a name, not a glob
    assert cli.main(_run(inputs, out)) == 0
    first = _rows(out)
    files = sorted(p.name for p in (out / "metrics").rglob("*.parquet"))
    assert cli.main(_run(inputs, out)) == 0
    again = _rows(out)
    assert len(again) == len(first) > 0
    pd.testing.assert_frame_equal(again.reset_index(drop=True), first.reset_index(drop=True))
    assert len(sorted(p.name for p in (out / "metrics").rglob("*.parquet"))) == len(files)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".msewatch"]
    # one snapshot left (the second run's), beside the lock and the link to it
    assert sorted(p.name for p in (out / ".msewatch").iterdir()) == [
        "current",
        "lock",
        "snapshot-2",
    ]
    capsys.readouterr()


def test_a_rerun_with_other_input_replaces_the_summary(inputs, tmp_path):
    out = tmp_path / "out"
    assert cli.main(_run(inputs, out)) == 0
    other = tmp_path / "other"
    stats = sample.generate(str(other), predictions=100, seed=5, days=1.0)
    assert cli.main(_run(other, out)) == 0
    import json

    counts = json.loads((out / "summary.json").read_text())["outcomes"]["prediction"]
    # the second run's lines alone (no malformed line under 1000 lines), not the first's too
    lines = stats.predictions + stats.shadow_predictions + stats.duplicate_predictions
    assert counts["input"] == lines < 200
    assert counts["input"] == sum(v for k, v in counts.items() if k != "input")


def test_a_folder_with_other_content_is_refused_and_left_alone(inputs, tmp_path, capsys):
    out = tmp_path / "work"
    (out / "notes" / ".temp_cache").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    _one_error(capsys, cli.main(_run(inputs, out)), "--force")
    assert sorted(p.name for p in out.iterdir()) == ["notes", "notes.txt"]
    assert cli.main(_run(inputs, out, "--force")) == 0
    assert (out / "notes" / ".temp_cache").is_dir() and (out / "notes.txt").read_text() == "mine"
    assert (out / "metrics").is_dir()


def test_an_output_that_is_a_file_is_refused_before_running(inputs, tmp_path, capsys):
    target = tmp_path / "afile.txt"
    target.write_text("x")
    _one_error(capsys, cli.main(_run(inputs, target)), "is a file")
    assert target.read_text() == "x"


def test_a_csv_with_a_repeated_column_is_named(inputs, tmp_path, capsys):
    bad = tmp_path / "dup.csv"
    bad.write_text("prediction_id,event_time,y_pred,y_pred\na,0,1,2\n")
    argv = _run(inputs, tmp_path / "out")
    argv[2] = str(bad)
    _one_error(capsys, cli.main(argv), f"{bad}: the CSV header repeats column 'y_pred'")


def test_a_corrupt_parquet_file_is_named(inputs, tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    argv = _run(inputs, tmp_path / "out")
    argv[2] = str(bad)
    _one_error(capsys, cli.main(argv), f"{bad}: not a readable Parquet file")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["generate", "--out", "{file}/x"], "not a directory"),
        (["report", "{out}", "--out", "{dir}"], "is a directory"),
        (["report", "{out}", "--out", "{file}/r.html"], "afile.txt"),
    ],
)
def test_file_mistakes_of_other_commands_are_one_line(inputs, tmp_path, capsys, argv, expected):
    out = tmp_path / "out"
    assert cli.main(_run(inputs, out)) == 0
    (tmp_path / "afile.txt").write_text("x")
    names = {"file": tmp_path / "afile.txt", "out": out, "dir": tmp_path}
    capsys.readouterr()
    _one_error(capsys, cli.main([a.format(**names) for a in argv]), expected)


# --- the commit: one whole result at any instant, one run at a time --------------------


@pytest.fixture(scope="module")
def other_inputs(tmp_path_factory):
    """A second input, unlike ``inputs``: fewer predictions and one malformed line."""
    base = tmp_path_factory.mktemp("other")
    sample.generate(str(base), predictions=100, seed=5, days=1.0)
    with open(base / "predictions.jsonl", "a", encoding="utf-8") as f:
        f.write("not json\n")
    return base


def _seen(output) -> tuple:
    """What a reader sees: the metrics and dead_letter tables and summary.json of one run."""
    from msewatch.commands import query
    from msewatch.schemas import layout

    metrics = query.query(output, sql="SELECT count(*) AS n, sum(predictions) AS p FROM metrics")
    dead = query.query(output, sql="SELECT count(*) AS n FROM dead_letter")
    outcomes = json.loads((layout.resolve(output) / "summary.json").read_text())["outcomes"]
    return int(metrics.n[0]), int(metrics.p[0]), int(dead.n[0]), outcomes


def _seen_in_place(output) -> tuple:
    """The same, read as the README shows: OUTPUT/metrics/*/*.parquet, OUTPUT/summary.json."""
    metrics = pd.concat(pd.read_parquet(f) for f in (output / "metrics").glob("*/*.parquet"))
    dead = pd.concat(pd.read_parquet(f) for f in (output / "dead_letter").glob("*.parquet"))
    outcomes = json.loads((output / "summary.json").read_text())["outcomes"]
    return len(metrics), int(metrics.predictions.sum()), len(dead), outcomes


@pytest.fixture(scope="module")
def clean(inputs, other_inputs, tmp_path_factory):
    """What a reader sees after a whole run of each input, each in a folder of its own."""
    base = tmp_path_factory.mktemp("clean")
    assert cli.main(_run(inputs, base / "old")) == 0
    assert cli.main(_run(other_inputs, base / "new")) == 0
    old, new = _seen(base / "old"), _seen(base / "new")
    assert old != new and old[2] == 0 and new[2] == 1  # the malformed line
    return {"old": old, "new": new, "old_folder": base / "old"}


def _paused(inputs, output, step: str, *extra) -> subprocess.Popen:
    """``msewatch run`` in a subprocess, stopped at ``step`` of its commit (it holds the
    folder's lock there) until the test kills it."""
    env = {**os.environ, "MSEWATCH_TEST_COMMIT_PAUSE": step}
    argv = [sys.executable, "-m", "msewatch", *_run(inputs, output, *extra)]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if f"paused at commit step {step}" in line:
            return proc
        assert time.monotonic() < deadline, "the run did not reach the commit"
    proc.wait()
    raise AssertionError(f"the run ended (exit {proc.returncode}) without pausing at {step}")


def _legacy_copy(source, output):
    """``output`` as an msewatch before snapshots left it: real folders and files."""
    output.mkdir()
    for name in ("metrics", "dead_letter", "outcomes"):
        shutil.copytree(source / name, output / name)
    shutil.copy(source / "summary.json", output / "summary.json")


@pytest.mark.parametrize(
    ("layout_before", "step", "expected"),
    [
        *[
            (layout_before, step, expected)
            for layout_before in ("snapshot", "legacy")
            for step, expected in (
                ("snapshot-written", "old"),
                ("pointer-moved", "new"),
                ("linked", "new"),
            )
        ],
        ("legacy", "adopted", "old"),  # the older layout's tables made a snapshot first
    ],
)
def test_a_kill_during_the_commit_leaves_one_whole_result(
    inputs, other_inputs, clean, tmp_path, layout_before, step, expected
):
    # before: a kill while the tables were replaced left metrics/ empty and no summary
    out = tmp_path / "out"
    if layout_before == "legacy":
        _legacy_copy(clean["old_folder"], out)
        (out / "report.html").write_text("the report of the old results")
    else:
        assert cli.main(_run(inputs, out)) == 0
    assert _seen(out) == clean["old"]
    proc = _paused(other_inputs, out, step)
    assert _seen(out) == _seen_in_place(out) == clean[expected]  # a reader meanwhile
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _seen(out) == _seen_in_place(out) == clean[expected]  # and after the kill
    if layout_before == "legacy":  # a report of the old results goes with them
        assert (out / "report.html").exists() == (expected == "old")
    assert cli.main(_run(other_inputs, out)) == 0  # the next run cleans up and commits
    assert _seen(out) == clean["new"]
    pd.testing.assert_frame_equal(
        _rows(out).reset_index(drop=True),
        _rows(clean["old_folder"].parent / "new").reset_index(drop=True),
    )
    assert len([p for p in (out / ".msewatch").iterdir() if "snapshot" in p.name]) == 1


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_holder(inputs, tmp_path, capsys):
    # before: both ran, the second deleted the first's staging folder
    out = tmp_path / "out"
    proc = _paused(inputs, out, "snapshot-written")
    try:
        _one_error(
            capsys,
            cli.main(_run(inputs, out)),
            f"--output {out}: another msewatch run (pid {proc.pid}) is writing into this folder",
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert cli.main(_run(inputs, out)) == 0  # a killed holder leaves no lock behind


def test_a_run_whose_outcomes_do_not_balance_is_not_committed(
    inputs, other_inputs, clean, tmp_path, capsys, monkeypatch
):
    # before: the tables were committed first, then the check failed (exit 1)
    out = tmp_path / "out"
    assert cli.main(_run(inputs, out)) == 0
    counted = run_outcomes.outcome_counts

    def counted_twice(folder):
        table = counted(folder)
        table["label"]["joined"] += 452  # as when two runs wrote into one folder
        return table

    monkeypatch.setattr(run_outcomes, "outcome_counts", counted_twice)
    capsys.readouterr()
    assert cli.main(_run(other_inputs, out)) == 1
    err = error_lines(capsys.readouterr().err)
    assert "452 counted twice" in err[0]
    assert err[-1] == f"msewatch: error: not committed; {out} keeps the previous results"
    assert _seen(out) == clean["old"]
    assert sorted(p.name for p in (out / ".msewatch").iterdir()) == [
        "current",
        "lock",
        "snapshot-1",
    ]


def test_a_full_disk_is_one_line_and_the_previous_results_stay(
    inputs, other_inputs, clean, tmp_path, capfd, monkeypatch
):
    # before: a 113-line traceback (exit 1)
    out = tmp_path / "out"
    assert cli.main(_run(inputs, out)) == 0

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)
    capfd.readouterr()
    assert cli.main(_run(other_inputs, out)) == 2
    mine = error_lines(capfd.readouterr().err)  # Beam's log too (file descriptor 2)
    assert len(mine) == 1 and mine[0].startswith("msewatch: error: "), mine
    assert mine[0].endswith(
        f"no space left on device; the previous results in {out} are kept: free space and run again"
    )
    assert f"{out}/.msewatch/snapshot-2" in mine[0]  # where it was writing
    monkeypatch.undo()
    assert _seen(out) == clean["old"]
    assert not (out / ".msewatch" / "snapshot-2").exists()


def test_a_run_without_a_valid_prediction_has_empty_tables_and_no_windows(inputs, tmp_path, capsys):
    # before: no metrics table; query and report said "not a finished msewatch run"
    utf16 = tmp_path / "predictions.jsonl"
    utf16.write_text((inputs / "predictions.jsonl").read_text(), encoding="utf-16")
    lines = len((inputs / "predictions.jsonl").read_text().splitlines())
    out = tmp_path / "out"
    argv = _run(inputs, out)
    argv[2] = str(utf16)
    assert cli.main(argv) == 0
    files = sorted((out / "metrics").glob("*/*.parquet"))  # the documented layout
    assert [pq.read_metadata(f).num_rows for f in files] == [0]
    assert pq.read_schema(files[0]).names == [f.name for f in records.METRICS_FIELDS]
    capsys.readouterr()
    assert cli.main(["query", str(out), "latest"]) == 0
    assert "no windows yet" in capsys.readouterr().out
    assert cli.main(["report", str(out), "--out", str(tmp_path / "r.html")]) == 0
    assert "no windows yet" in (tmp_path / "r.html").read_text()
    dead = json.loads((out / "summary.json").read_text())["outcomes"]["prediction"]
    assert dead["invalid"] == dead["input"] >= lines  # every line, and the BOM's


def test_the_manifest_names_the_version_that_wrote_the_tables(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(_run(inputs, out)) == 0
    manifest = out / ".msewatch" / "current" / "manifest.json"
    assert json.loads(manifest.read_text())["msewatch_version"] == msewatch.__version__
    # as an msewatch 0.0.9 would have left it: its own version, no rmsle column yet
    manifest.write_text(json.dumps({"msewatch_version": "0.0.9"}))
    path = sorted((out / "metrics").glob("*/*.parquet"))[0]
    pq.write_table(pq.read_table(path).drop_columns(["rmsle", "rmsle_excluded"]), path)
    capsys.readouterr()
    assert cli.main(["query", str(out), "latest"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("msewatch query: error: "), lines
    assert f"{path.name} lacks the metrics columns rmsle, rmsle_excluded" in lines[0]
    assert f"written by msewatch 0.0.9, this is msewatch {msewatch.__version__}; rerun" in lines[0]


def test_serve_watches_the_committed_snapshot(inputs, tmp_path):
    from msewatch.commands.serve import table_signature

    out = tmp_path / "out"
    assert cli.main(_run(inputs, out)) == 0
    first = table_signature(out)
    assert cli.main(_run(inputs, out)) == 0  # the same rows, committed again
    again = table_signature(out)
    assert len(again) == len(first) > 0
    assert all(path.startswith(f"{out}/.msewatch/snapshot-2/") for path, _, _ in again)


SLO_EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "examples", "slo.yaml")


@pytest.mark.parametrize(
    ("step", "with_slo_tables"), [("snapshot-written", False), ("pointer-moved", True)]
)
def test_tables_only_the_new_run_has_appear_with_its_commit(
    inputs, tmp_path, step, with_slo_tables
):
    # the previous run had no SLO file; the new one adds alerts/, slo_status/, comparisons/
    out = tmp_path / "out"
    assert cli.main(_run(inputs, out)) == 0
    proc = _paused(inputs, out, step, "--slo", SLO_EXAMPLE)
    try:
        tables = ("alerts", "slo_status", "comparisons")
        assert [(out / t).is_dir() for t in tables] == [with_slo_tables] * 3
        assert ("Firing alerts" in summary.render(str(out), {})) == with_slo_tables
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
