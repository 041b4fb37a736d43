"""What ``msewatch run`` does with its output folder and its inputs, before and after.

Each command either exits 0 with balanced outcomes or exits 2 with one line and no
traceback; reruns replace, never add; nothing msewatch did not write is touched.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest

from msewatch import cli
from msewatch import generate as sample
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
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left
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
