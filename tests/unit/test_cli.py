"""The command line: durations, one-line errors, and the README documents every option."""

from __future__ import annotations

import argparse
import pathlib
import re
import subprocess
import sys

import pytest

from msewatch import cli

README = (pathlib.Path(__file__).parent.parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("1h", 3600),
        ("7d", 604800),
        ("90s", 90),
        ("500ms", 0.5),
        ("2w", 1209600),
        ("45", 45),
        ("1.5h", 5400),
    ],
)
def test_durations(text, seconds):
    assert cli.parse_duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1y", "-1h", "one hour"])
def test_bad_durations_are_rejected(text):
    with pytest.raises(argparse.ArgumentTypeError, match="e.g. 30m, 1h, 7d"):
        cli.parse_duration_seconds(text)


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "msewatch", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--labels", "x", "--output", "o"], "--predictions"),
        (
            ["run", "--predictions", "p", "--labels", "l", "--output", "o", "--window", "soon"],
            "bad duration",
        ),
        (
            [
                "run",
                "--predictions",
                "p",
                "--labels",
                "l",
                "--output",
                "o",
                "--window",
                "24h",
                "--every",
                "7h",
            ],
            "must be positive and divide --window",
        ),
        (
            ["run", "--predictions", "p", "--labels", "l", "--output", "o", "--expiry-grid", "7m"],
            "must divide the window period",
        ),
        (
            ["run", "--predictions", "p", "--labels", "l", "--output", "o"]
            + ["--label-ttl", "30m", "--expiry-grid", "30m"],
            "must be shorter than --label-ttl",
        ),
        (
            ["run", "--predictions", "/nonexistent/*.jsonl", "--labels", "l", "--output", "o"],
            "/nonexistent/*.jsonl",
        ),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(args, message, tmp_path):
    proc = _run_cli(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("msewatch: error:") and message in lines[0]


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        for opt in action.option_strings:
            if opt.startswith("--") and opt != "--help":
                yield opt


def test_readme_documents_every_command_and_option():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, subparser in sub.choices.items():
        assert re.search(rf"msewatch {name}\b", README), f"command {name} not in README"
        for opt in _options(subparser):
            assert opt in README, f"option {opt} of {name} not in README"


def test_readme_first_screen_has_the_two_commands():
    first_screen = "\n".join(README.splitlines()[:25])
    assert "make demo" in first_screen and "make test" in first_screen
    ci = (pathlib.Path(__file__).parent.parent.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
