"""Command lines with a user mistake, and the text their one-line error must contain.

Shared by ``tests/unit/test_cli.py`` (``cli.main`` called in-process) and
``tests/e2e/test_cli_entry_point.py`` (``python -m msewatch`` in a subprocess).
"""

from __future__ import annotations

import pathlib

_RUN = ["run", "--predictions", "p", "--labels", "l", "--output", "o"]
HOSTILE_SLO = pathlib.Path(__file__).parent / "hostile_slo"  # SLO files a user got wrong
_SUBSCRIPTION = "pubsub://projects/my-project/subscriptions/"
_PUBSUB_RUN = ["run", "--output", "o", "--predictions", _SUBSCRIPTION + "preds"]
_PUBSUB_RUN += ["--labels", _SUBSCRIPTION + "labels"]
_SLO = str(pathlib.Path(__file__).parent.parent / "docs" / "examples" / "slo.yaml")

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
    (["report", "o", "--view", "weekly"], "unknown view 'weekly': use executive, oncall or debug"),
    ([*_RUN, "--windw", "2h"], "unknown option '--windw'"),
    ([*_RUN, "stray"], "unknown argument 'stray'"),
    ([*_RUN, "--shards", "0"], "must be 1 or more"),
    ([*_RUN, "--max-slice-values", "0"], "must be 1 or more"),
    ([*_RUN, "--expiry-grid", "0"], "at least 1ms"),
    ([*_RUN, "--window", "99999999999999999999"], "longer than 3650d"),
    ([*_RUN[:-1], "gs://"], "use gs://BUCKET or gs://BUCKET/PATH"),
    ([*_RUN[:-1], "gs://bucket/out\n"], "use gs://BUCKET or gs://BUCKET/PATH"),  # not '$'
    ([*_RUN[:-1], "/"], "file-system root"),
    ([*_RUN[:-1], "ftp://host/x"], "use a local folder"),
    # accepted before, then every alert was dead-lettered (issue 20)
    ([*_RUN, "--slo", _SLO, "--alertmanager", "http://"], "URL with a host, e.g. http://127.0."),
    ([*_RUN, "--pushgateway", "pgw:9091"], "--pushgateway must be an http:// or https:// URL"),
    ([*_RUN, "--pushgateway-group", "job=x"], "KEY a label name other than job"),
    ([*_RUN, "--pushgateway-group", "model"], "must be KEY=VALUE"),
    ([*_RUN, "--pushgateway-group", "my-model=x"], "must be KEY=VALUE"),
    (
        [
            *_RUN,
            "--pushgateway",
            "http://h:9091",
            "--pushgateway-group",
            "m=a",
            "--pushgateway-group",
            "m=b",
        ],
        "--pushgateway-group m is given twice",
    ),  # fmt: skip
    ([*_RUN, "--pushgateway", "http://h:9091", "--pushgateway-job", "a b"], "--pushgateway-job"),
    ([*_PUBSUB_RUN, "--pushgateway", "http://h:9091"], "let Prometheus scrape `msewatch serve"),
    ([*_RUN[:-1], "bq://p.d", "--pushgateway", "http://h:9091"], "local --output folder"),
    ([*_RUN, "--otlp", "127.0.0.1:4318"], "--otlp must be the http:// or https:// URL of an OTLP"),
    ([*_RUN, "--otlp", "http://h:4318?x"], "got 'http://h:4318?x'"),
    (["serve", "o", "--otlp", "grpc://h:4317"], "--otlp must be the http:// or https:// URL"),
    (["serve", "o", "--otlp-interval", "10ms"], "--otlp-interval '10ms' must be at least 100ms"),
    ([*_PUBSUB_RUN, "--otlp", "http://h:4318"], "run `msewatch serve OUTPUT --otlp ENDPOINT`"),
    ([*_RUN[:-1], "bq://p.d", "--otlp", "http://h:4318"], "--otlp reads the tables of a local"),
    ([*_RUN, "--slo", _SLO, "--alertmanager", "http://:9093"], "got 'http://:9093'"),
    ([*_RUN, "--slo", _SLO, "--alertmanager", "http://am:99999"], "got 'http://am:99999'"),
    ([*_RUN, "--slo", _SLO, "--alertmanager", "am:9093"], "got 'am:9093'"),
    ([*_RUN, "--slo", _SLO, "--alert-deadline", "0s"], "--alert-deadline must be more than 0s"),
    ([*_RUN, "--bq-api-endpoint", "http://"], "--bq-api-endpoint must be an http:// or https://"),
    ([*_RUN[:-1], "bq://p.d", "--fail-on-undelivered"], "--fail-on-undelivered reads the"),
    ([*_PUBSUB_RUN, "--fail-on-undelivered"], "needs files as input (or --streaming-replay)"),
    (["slo", "rules", "/nonexistent/slo.yaml"], "/nonexistent/slo.yaml: No such file"),
    (["slo", "rules", _SLO, "--out", "/nonexistent/r.yml"], "cannot write /nonexistent/r.yml"),
    (["serve", "o", "--recent-windows", "soon"], "--recent-windows: bad duration 'soon'"),
    (["serve", "o", "--recent-windows", "0s"], "must be whole seconds >= 1s"),
]
"""``(argv, message)``: each must exit 2 with one ``msewatch: error: ...`` line."""

# An SLO file with a number no float holds, or a name a line break ends, read by each
# command that reads one (before: an OverflowError traceback, exit 1; "cannot convert
# float NaN to integer" naming neither file nor key; "abc\n" accepted as a name).
_NUMBERS = {
    "period-inf.yaml": "fc: period: must be a duration such as 90s, 5m, 1h, 30d; got inf",
    "period-nan.yaml": "fc: period: must be a duration such as 90s, 5m, 1h, 30d; got nan",
    "threshold-400-digits.yaml": "fc: threshold: must be a finite number; got an integer of 401",
    "objective-400-digits.yaml": "fc: objective: must be a finite number; got an integer of 401",
    "min-coverage-400-digits.yaml": "fc: min_coverage: must be a finite number; got an integer",
    "burn-rate-400-digits.yaml": "fc: alerting.page[0].burn_rate: must be a finite number",
    "suppress-to-1e40.yaml": "fc: suppress[0].to: must be a time in 1000-01-01T00:00:00Z <= t",
    "margin-400-digits.yaml": "r: margin: must be a finite number; got an integer of 401 digits",
}
_OTHERS = {
    "name-final-newline.yaml": "abc\\n: name: must be 1-100 letters, digits",
    "name-inner-newline.yaml": "ab\\ncd: name: must be 1-100 letters, digits",
    "utf-16.yaml": "byte 0: not UTF-8 text (this file is UTF-16): save it as UTF-8 YAML",
    "binary.yaml": "byte 0: not UTF-8 text: save it as UTF-8 YAML",
}
for _name, _what in {**_NUMBERS, **_OTHERS}.items():
    _path = str(HOSTILE_SLO / _name)
    USER_ERRORS.append((["slo", "check", _path], f"{_path}: {_what}"))
    USER_ERRORS.append((["slo", "rules", _path], f"{_path}: {_what}"))
    USER_ERRORS.append(([*_RUN, "--slo", _path], f"{_path}: {_what}"))
    if _name in _NUMBERS:
        USER_ERRORS.append((["gameday", "--slo", _path], f"{_path}: {_what}"))

IDS = [message for _, message in USER_ERRORS]


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not blank and not a library's WARNING."""
    return [ln for ln in stderr.splitlines() if ln.strip() and "WARNING" not in ln]
