"""Command lines with a user mistake, and the text their one-line error must contain.

Shared by ``tests/unit/test_cli.py`` (``cli.main`` called in-process) and
``tests/e2e/test_cli_entry_point.py`` (``python -m msewatch`` in a subprocess).
"""

from __future__ import annotations

_RUN = ["run", "--predictions", "p", "--labels", "l", "--output", "o"]

USER_ERRORS = [
    (["run", "--labels", "x", "--output", "o"], "--predictions"),
    ([*_RUN, "--window", "soon"], "bad duration"),
    ([*_RUN, "--window", "24h", "--every", "7h"], "must be positive and divide --window"),
    ([*_RUN, "--expiry-grid", "7m"], "must divide the window period"),
    ([*_RUN, "--label-ttl", "30m", "--expiry-grid", "30m"], "must be shorter than --label-ttl"),
    (
        ["run", "--predictions", "/nonexistent/*.jsonl", "--labels", "l", "--output", "o"],
        "/nonexistent/*.jsonl",
    ),
    (["frobnicate"], "invalid choice"),
    ([*_RUN, "--windw", "2h"], "unknown option '--windw'"),
    ([*_RUN, "stray"], "unknown argument 'stray'"),
    ([*_RUN, "--shards", "0"], "must be 1 or more"),
    ([*_RUN, "--max-slice-values", "0"], "must be 1 or more"),
    ([*_RUN, "--expiry-grid", "0"], "at least 1ms"),
    ([*_RUN, "--window", "99999999999999999999"], "longer than 3650d"),
    ([*_RUN[:-1], "gs://"], "use gs://BUCKET or gs://BUCKET/PATH"),
    ([*_RUN[:-1], "/"], "file-system root"),
    ([*_RUN[:-1], "ftp://host/x"], "use a local folder"),
]
"""``(argv, message)``: each must exit 2 with one ``msewatch: error: ...`` line."""

IDS = [message for _, message in USER_ERRORS]


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not blank and not a library's WARNING."""
    return [ln for ln in stderr.splitlines() if ln.strip() and "WARNING" not in ln]
