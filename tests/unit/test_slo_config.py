"""The SLO file: parsing, defaults, one-line errors that name the key, slice patterns,
and ``msewatch slo check``."""

from __future__ import annotations

import argparse
import pathlib
import pickle

import pytest

from msewatch.commands import slo as slo_command
from msewatch.transforms.metrics.slices import escape_value, slice_name
from msewatch.transforms.slo.config import (
    Alerting,
    BurnWindow,
    Slo,
    SloFileError,
    Suppression,
    load_slo_file,
    matches,
    parse_slo_file,
    unreachable_conditions,
)

ROOT = pathlib.Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "slo.yaml"

MINIMAL = """\
version: 1
slos:
  - name: fc
    sli: rmse
    threshold: 40
    objective: 0.99
"""


def one_slo(extra: str = "", **replace: str) -> str:
    """MINIMAL with keys replaced (``key="value"``) and extra lines added to the SLO."""
    text = MINIMAL
    for key, value in replace.items():
        text = "\n".join(
            f"    {key}: {value}" if line.startswith(f"    {key}:") else line
            for line in text.splitlines()
        )
    return text.rstrip("\n") + "\n" + "".join(f"    {line}\n" for line in extra.splitlines())


def test_the_example_file_reads_as_written():
    slo_file = load_slo_file(str(EXAMPLE))
    rmse = slo_file.slos[0]
    assert [s.name for s in slo_file.slos] == [
        "forecast-rmse",
        "forecast-error-rate",
        "label-freshness",
        "nan-predictions",
        "forecast-rmse-trend",
    ]
    assert (rmse.sli, rmse.threshold, rmse.objective) == ("rmse", 40.0, 0.99)
    assert rmse.period_s == 30 * 86400 and rmse.keep_firing_for_s == 3600
    assert rmse.slices == ("overall", "region=*")
    assert (rmse.min_coverage, rmse.min_scored) == (0.8, 30)
    assert rmse.alerting.page == (BurnWindow(3600, 300, 14.4), BurnWindow(21600, 1800, 6.0))
    assert rmse.alerting.ticket == (BurnWindow(3 * 86400, 6 * 3600, 1.0),)
    assert rmse.runbook == "https://wiki.example/runbooks/forecast-rmse"
    # 2026-11-02T00:00:00Z = 20759 days after the epoch = 1,793,577,600 s
    assert rmse.suppress == (Suppression(1_793_577_600_000, 1_793_599_200_000, "backfill"),)
    assert slo_file.slos[2].within_s == 24 * 3600
    assert slo_file.slos[1].alerting.ticket == ()  # ticket: [] turns tickets off
    assert slo_file.slos[1].alerting.page == Alerting().page  # page keeps its default
    [c] = slo_file.comparisons
    assert (c.name, c.baseline, c.candidate, c.lookback_s, c.margin) == (
        "v2-rollout",
        "v1",
        "v2",
        24 * 3600,
        0.05,
    )
    trend = slo_file.slos[4]
    assert (trend.sli, trend.threshold, trend.trend_windows) == ("rmse_trend", 0.5, 24)
    assert (trend.min_coverage, trend.min_scored) == (0.8, 30)  # the label gate's defaults


def test_trend_windows_defaults_to_24_for_rmse_trend_only():
    text = one_slo(sli="rmse_trend", threshold="0.5")
    assert parse_slo_file(text).slos[0].trend_windows == 24
    assert parse_slo_file(MINIMAL).slos[0].trend_windows is None
    assert parse_slo_file(one_slo("trend_windows: 3", sli="rmse_trend")).slos[0].trend_windows == 3


def test_defaults_are_the_sre_workbook_table():
    slo = parse_slo_file(MINIMAL).slos[0]
    assert slo.alerting == Alerting(
        page=(BurnWindow(3600, 300, 14.4), BurnWindow(6 * 3600, 30 * 60, 6)),
        ticket=(BurnWindow(3 * 86400, 6 * 3600, 1),),
    )
    assert (slo.period_s, slo.slices, slo.keep_firing_for_s) == (30 * 86400, ("overall",), 3600)
    assert (slo.min_coverage, slo.min_scored, slo.suppress, slo.runbook) == (0.8, 30, (), "")


def test_a_file_of_comparisons_only_is_accepted():
    slo_file = parse_slo_file(
        "version: 1\nslos: []\ncomparisons:\n"
        "  - {name: r, baseline: {model_version: v1}, candidate: {model_version: v2}}\n"
    )
    assert slo_file.slos == ()
    [c] = slo_file.comparisons
    assert (c.name, c.baseline, c.candidate, c.metric, c.mode) == ("r", "v1", "v2", "mse", "auto")
    assert (c.lookback_s, c.margin, c.alpha, c.min_scored) == (86400, 0.05, 0.05, 200)


def test_an_unquoted_yaml_timestamp_and_epoch_millis_are_times():
    text = one_slo('suppress: [{from: 2026-11-02T00:00:00Z, to: 1793599200000, reason: "b"}]')
    assert parse_slo_file(text).slos[0].suppress == (
        Suppression(1_793_577_600_000, 1_793_599_200_000, "b"),
    )


def test_durations_may_be_seconds():
    text = one_slo("keep_firing_for: 0\nperiod: 604800")
    slo = parse_slo_file(text).slos[0]
    assert (slo.keep_firing_for_s, slo.period_s) == (0, 7 * 86400)


BIG = "1" + "0" * 400  # 10^400, beyond the largest float (about 1.8 x 10^308)
COMPARISON = (
    "version: 1\nslos: []\ncomparisons:\n  - {{name: r, baseline: v1, candidate: v2, {}}}\n"
)

ERRORS = [
    # (what the file says, the message after "slo.yaml: ")
    ("version: 1\ncolour: red\n", "colour: unknown key; allowed: version, slos, comparisons"),
    ("slos: []\n", "version: is required"),
    ("version: 2\nslos: []\n", "version: must be 1; got 2"),
    ("version: 1\nslos: {}\n", "slos: must be a list"),
    ("", "the file is empty"),
    ("version: 1\nslos: [\n", "line 3: not valid YAML"),
    ("version: 1\nversion: 1\n", "line 2: not valid YAML: key 'version' is written twice"),
    (one_slo("treshold: 4"), "fc: treshold: unknown key; allowed: name, sli, threshold"),
    (one_slo(objective='"99%"'), "fc: objective: must be a finite number; got '99%'"),
    (one_slo(objective="1"), "fc: objective: must be between 0 and 1 (exclusive)"),
    (one_slo(objective="0"), "fc: objective: must be between 0 and 1 (exclusive)"),
    (
        one_slo(sli="mse"),
        "fc: sli: must be one of rmse, error_rate, label_freshness, nan_rate, rmse_trend",
    ),
    (one_slo(threshold="-1"), "fc: threshold: for rmse is an RMSE >= 0"),
    (one_slo(threshold="true"), "fc: threshold: must be a finite number; got True"),
    (one_slo("within: 1h"), "fc: within: applies only to sli: label_freshness"),
    (
        one_slo(sli="label_freshness", threshold="0.9"),
        "fc: within: is required for sli: label_freshness",
    ),
    (
        one_slo("within: 1h", sli="label_freshness", threshold="1.5"),
        "fc: threshold: for label_freshness is a share in (0, 1]",
    ),
    (
        one_slo("min_scored: 5", sli="nan_rate", threshold="0.1"),
        "fc: min_scored: applies only to sli: rmse, error_rate, rmse_trend, label_anomaly or"
        " label_drift (min_scored: also the drift SLIs)",
    ),
    (one_slo("trend_windows: 24"), "fc: trend_windows: applies only to sli: rmse_trend"),
    (
        one_slo("trend_windows: 2", sli="rmse_trend", threshold="0.5"),
        "fc: trend_windows: must be between 3 and 200 (default 24); got 2",
    ),
    (
        one_slo("trend_windows: 201", sli="rmse_trend", threshold="0.5"),
        "fc: trend_windows: must be between 3 and 200 (default 24); got 201",
    ),
    (
        one_slo("trend_windows: 2.5", sli="rmse_trend", threshold="0.5"),
        "fc: trend_windows: must be a whole number of windows; got 2.5",
    ),
    (
        one_slo("trend_windows: yes", sli="rmse_trend", threshold="0.5"),
        "fc: trend_windows: must be a whole number of windows; got True",
    ),
    (
        one_slo(sli="rmse_trend", threshold="-0.1"),
        "fc: threshold: for rmse_trend is an RMSE slope per day >= 0",
    ),
    (one_slo("min_scored: 0"), "fc: min_scored: must be >= 1"),
    (one_slo("period: 1 month"), "fc: period: bad duration '1 month'"),
    (one_slo("period: 1.5s"), "fc: period: must be a whole number of seconds"),
    (one_slo("slices: [overall, region]"), "fc: slices[1]: bad slice pattern 'region'"),
    (one_slo("slices: [region=eu*]"), "fc: slices[0]: bad slice pattern 'region=eu*'"),
    (one_slo("slices: [a=*, a=*]"), "fc: slices[1]: 'a=*' is listed twice"),
    (one_slo('slices: ["a=1,a=2"]'), "fc: slices[0]: bad slice pattern 'a=1,a=2': a key appears"),
    (one_slo("slices: []"), "fc: slices: must list at least one slice pattern"),
    (
        one_slo("alerting: {page: [{long: 1h, short: 1h, burn_rate: 2}]}"),
        "fc: alerting.page[0].short: must be shorter than long (1h); got 1h",
    ),
    (
        one_slo("alerting: {page: [{long: 1h, burn_rate: 2}]}"),
        "fc: alerting.page[0].short: is required",
    ),
    (
        one_slo("alerting: {page: [{long: 1h, short: 5m, burn_rate: 0}]}"),
        "fc: alerting.page[0].burn_rate: must be > 0",
    ),
    (
        one_slo("alerting: {page: [{long: 1h, short: 5m, burn_rate: 2, for: 1h}]}"),
        "fc: alerting.page[0].for: unknown key; allowed: long, short, burn_rate",
    ),
    (one_slo("alerting: {warn: []}"), "fc: alerting.warn: unknown key; allowed: page, ticket"),
    (
        one_slo("period: 1d\nalerting: {ticket: [{long: 3d, short: 6h, burn_rate: 1}]}"),
        "fc: alerting.ticket[0].long: must not be longer than period (1d); got 3d",
    ),
    (
        one_slo('suppress: [{from: "2026-11-02T06:00:00Z", to: "2026-11-02T00:00:00Z"}]'),
        "fc: suppress[0].to: must be later than from",
    ),
    (
        one_slo('suppress: [{from: "2026-11-02T00:00:00Z", to: "2026-11-31T00:00:00Z"}]'),
        "fc: suppress[0].to: must be an RFC 3339 time with an offset",
    ),
    (
        one_slo("suppress: [{from: 2026-11-02 00:00:00, to: 2026-11-03 00:00:00}]"),
        "fc: suppress[0].from: must be an RFC 3339 time with an offset, "
        'e.g. "2026-11-02T00:00:00Z" (this one has no Z or offset)',
    ),
    (one_slo("keep_firing_for: -1"), "fc: keep_firing_for: must be a whole number of seconds"),
    (one_slo("keep_firing_for: [1h]"), "fc: keep_firing_for: must be a duration such as 90s"),
    (
        MINIMAL.replace("name: fc", "name: fc rmse"),
        "fc rmse: name: must be 1-100 letters, digits",
    ),
    (
        "version: 1\nslos:\n  - {sli: rmse, threshold: 4, objective: 0.9}\n",
        "slos[0]: name: is required",
    ),
    (
        MINIMAL + "  - {name: fc, sli: nan_rate, threshold: 0.1, objective: 0.9}\n",
        "fc: name: is used by an earlier SLO",
    ),
    # numbers no float or duration holds: one line naming the key (before: OverflowError,
    # or "cannot convert float NaN to integer" without file or key)
    (one_slo("period: .inf"), "fc: period: must be a duration such as 90s, 5m, 1h, 30d; got inf"),
    (one_slo("period: -.inf"), "fc: period: must be a duration such as 90s, 5m, 1h, 30d; got -inf"),
    (one_slo("period: .nan"), "fc: period: must be a duration such as 90s, 5m, 1h, 30d; got nan"),
    (one_slo("keep_firing_for: .inf"), "fc: keep_firing_for: must be a duration such as 90s"),
    (
        one_slo("within: .inf", sli="label_freshness", threshold="0.9"),
        "fc: within: must be a duration such as 90s",
    ),
    (
        one_slo("alerting: {page: [{long: .inf, short: 5m, burn_rate: 2}]}"),
        "fc: alerting.page[0].long: must be a duration such as 90s",
    ),
    (one_slo(f"period: {BIG}.0"), "fc: period: must be a duration such as 90s"),  # inf as float
    (one_slo(f"period: {BIG}"), "fc: period: must be at most 3650d; got an integer of 401 digits"),
    (
        one_slo(threshold=BIG),
        "fc: threshold: must be a finite number; got an integer of 401 digits",
    ),
    (
        one_slo(objective=BIG),
        "fc: objective: must be a finite number; got an integer of 401 digits",
    ),
    (one_slo(f"min_coverage: {BIG}"), "fc: min_coverage: must be a finite number; got an integer"),
    (
        one_slo(f"alerting: {{page: [{{long: 1h, short: 5m, burn_rate: {BIG}}}]}}"),
        "fc: alerting.page[0].burn_rate: must be a finite number; got an integer of 401 digits",
    ),
    (one_slo(f"min_scored: {BIG}"), "fc: min_scored: must be at most 2^53 (9007199254740992)"),
    (
        one_slo('suppress: [{from: "2026-11-02T00:00:00Z", to: 1e40}]'),
        "fc: suppress[0].to: must be a time in 1000-01-01T00:00:00Z <= t < 9000-01-01T00:00:00Z; "
        "got '1e40'",
    ),
    (
        one_slo('suppress: [{from: "0999-12-31T23:59:59Z", to: "2026-11-02T00:00:00Z"}]'),
        "fc: suppress[0].from: must be a time in 1000-01-01T00:00:00Z <= t",
    ),
    (
        one_slo("threshold: " + "1" * 5000).replace("    threshold: 40\n", ""),
        "line 6: not valid YAML: a number too long to read",  # version, slos, name, sli, objective
    ),
    ("version: " + "[" * 5000 + "]" * 5000 + "\n", "not valid YAML: nested too deeply"),
    (
        COMPARISON.format(f"margin: {BIG}"),
        "r: margin: must be a finite number; got an integer of 401 digits",
    ),
    (COMPARISON.format("lookback: .inf"), "r: lookback: must be a duration such as 90s"),
    (COMPARISON.format(f"min_scored: {BIG}"), "r: min_scored: must be at most 2^53"),
    # a name ends at its last character: "abc\n" is not "abc" (before: accepted, and the
    # alert "abc\n/page/overall" reached Alertmanager); a line break is shown escaped
    (MINIMAL.replace("name: fc", 'name: "abc\\n"'), "abc\\n: name: must be 1-100 letters"),
    (MINIMAL.replace("name: fc", 'name: "ab\\ncd"'), "ab\\ncd: name: must be 1-100 letters"),
    (
        MINIMAL.replace("name: fc", 'name: "a\\x1b[2Jb"'),
        "a\\x1b[2Jb: name: must be 1-100 letters, digits, '-', '_' or '.' starting with a "
        "letter or digit (it names alerts); got 'a\\x1b[2Jb'",
    ),
    (
        'version: 1\nslos: []\ncomparisons:\n  - {name: "r\\n", baseline: v1, candidate: v2}\n',
        "r\\n: name: must be 1-100 letters",
    ),
]


@pytest.mark.parametrize("text, message", ERRORS, ids=[m[:40] for _, m in ERRORS])
def test_a_mistake_is_one_line_naming_the_file_the_slo_and_the_key(text, message):
    with pytest.raises(SloFileError) as caught:
        parse_slo_file(text, "slo.yaml")
    text_of_error = str(caught.value)
    assert "\n" not in text_of_error
    assert text_of_error.startswith(f"slo.yaml: {message}")
    assert isinstance(caught.value, ValueError)


def test_the_error_carries_its_parts():
    with pytest.raises(SloFileError) as caught:
        parse_slo_file(one_slo(objective="2"), "slo.yaml")
    e = caught.value
    assert (e.path, e.slo, e.key) == ("slo.yaml", "fc", "objective")


def test_a_config_built_in_code_is_validated_too():
    with pytest.raises(ValueError, match="within: is required"):
        Slo(name="f", sli="label_freshness", threshold=0.9, objective=0.9)
    with pytest.raises(ValueError, match="short: must be shorter than long"):
        BurnWindow(300, 3600, 14.4)


def test_the_config_pickles():
    slo_file = load_slo_file(str(EXAMPLE))
    assert pickle.loads(pickle.dumps(slo_file)) == slo_file


@pytest.mark.parametrize(
    "patterns, name, expected",
    [
        (["overall"], "overall", True),
        (["overall"], "region=eu", False),
        (["region=*"], "region=eu", True),
        (["region=*"], "region=us", True),
        (["region=*"], "overall", False),
        (["region=*"], "model_version=v2,region=eu", False),  # a cross has other keys
        (["model_version=*,region=*"], "model_version=v2,region=eu", True),
        (["region=*,model_version=v2"], "model_version=v2,region=eu", True),  # any key order
        (["model_version=v2,region=*"], "model_version=v1,region=eu", False),
        (["region=eu"], "region=eu", True),
        (["region=eu"], "region=eu2", False),
        (["regio=*"], "region=eu", False),
        (["region=__other__"], "region=__other__", True),  # the fold-over value
        (["region=__other__"], "region=" + escape_value("__other__"), False),  # a real value
        ("region=*", "region=eu", True),  # one pattern string
        (["overall"], "not a slice name", False),
    ],
)
def test_slice_patterns(patterns, name, expected):
    assert matches(patterns, name) is expected


def test_patterns_follow_the_escaping_of_slice_names():
    # a value holding ',' and '=' is escaped in its slice name; key=* still covers it,
    # and an exact pattern names it the way the metrics table writes it
    name = slice_name([("region", "eu,model_version=v1")])
    assert name == "region=eu%2Cmodel_version%3Dv1"
    assert matches(["region=*"], name)
    assert matches([name], name)
    assert not matches(["region=eu"], name)
    assert not matches(["model_version=*,region=*"], name)


def test_an_slo_covers_its_slices():
    slo = parse_slo_file(one_slo('slices: [overall, "region=*"]')).slos[0]
    assert matches(slo, "region=eu") and slo.covers("overall") and not slo.covers("sku=1")


def test_a_burn_rate_above_one_over_the_error_budget_can_never_be_reached():
    # objective 0.9: every window bad is a burn rate of 1 / 0.1 = 10 < 14.4
    slo = Slo(name="f", sli="rmse", threshold=1, objective=0.9)
    assert unreachable_conditions(slo) == [("page", BurnWindow(3600, 300, 14.4))]


def _check(path: str) -> int:
    parser = argparse.ArgumentParser(prog="msewatch slo")
    slo_command.add_arguments(parser)
    return slo_command.run(parser.parse_args(["check", path]))


def test_slo_check_summarises_each_slo(capsys):
    assert _check(str(EXAMPLE)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{EXAMPLE}: OK, 5 SLOs")
    assert "forecast-rmse (rmse): a window is bad when its RMSE > 40" in out
    # 14.4 x 1 h / 720 h = 2 % of the budget; 6 x 6 h / 720 h = 5 %; 1 x 72 h / 720 h = 10 %
    assert "burn rate >= 14.4x over both 1h and 5m (bad share >= 0.144; 2.0% of" in out
    assert "5.0% of the budget in 6h" in out and "10.0% of the budget in 3d" in out
    assert "suppressed 2026-11-02 00:00 to 2026-11-02 06:00 UTC (backfill)" in out
    assert (
        "forecast-rmse-trend (rmse_trend): a window is bad when the RMSE rises faster than "
        "0.5 per day with 95% confidence (Theil-Sen slope over the 24 newest settled windows)"
    ) in out
    assert "scored >= 30, once 24 such windows end within 30d" in out
    # 4 x 1 d / 30 d = 13.3 % of the budget in a day
    assert "burn rate >= 4x over both 1d and 6h (bad share >= 0.2; 13.3% of the budget" in out
    assert len(out.splitlines()) < 60  # one screen


def test_slo_check_warns_of_an_unreachable_condition(tmp_path, capsys):
    path = tmp_path / "slo.yaml"
    path.write_text(one_slo(objective="0.9"))
    assert _check(str(path)) == 0
    assert "warning    page burn_rate 14.4 can never be reached" in capsys.readouterr().out


def test_slo_check_of_a_bad_file_prints_one_line_and_exits_2(tmp_path, capsys):
    path = tmp_path / "slo.yaml"
    path.write_text(one_slo(objective="1.5"))
    assert _check(str(path)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"msewatch: error: {path}: fc: objective: must be between 0 and 1 (exclusive), "
        "e.g. 0.99; got 1.5\n"
    )


def test_slo_check_of_a_missing_file_exits_2(tmp_path, capsys):
    assert _check(str(tmp_path / "nope.yaml")) == 2
    assert capsys.readouterr().err.startswith("msewatch: error: ")


def _alias_bomb(levels: int) -> str:
    """A YAML list of ``levels`` nested lists of 9 aliases each: 9^levels strings when
    written out, a few hundred bytes as YAML (SafeLoader shares the aliased lists)."""
    nested = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    nested += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return f"[{', '.join(nested)}]"


BOMB_KEYS = [  # (where the bomb goes, the start of the message after "slo.yaml: ")
    ("name", "slos[0]: name: must be 1-100 letters"),
    ("sli", "fc: sli: must be one of"),
    ("threshold", "fc: threshold: must be a finite number; got [["),
    ("objective", "fc: objective: must be a finite number; got [["),
    ("period", "fc: period: must be a duration such as 90s, 5m, 1h, 30d; got [["),
    ("runbook", "fc: runbook: must be a string (a URL); got [["),
    ("min_scored", "fc: min_scored: must be a whole number; got [["),
    ("slices", "fc: slices[0]: a slice pattern is a non-empty string"),
    ("suppress", "fc: suppress[0]: must be a mapping"),
    ("version", "version: must be 1; got [["),
    ("reason", "fc: suppress[0].reason: must be a string; got [["),
    ("baseline", "c: baseline: must be {model_version: <version>}; got [["),
    ("margin", "c: margin: must be a finite number; got [["),
]


def _bomb_file(key: str, bomb: str) -> str:
    if key == "version":
        return f"version: {bomb}\nslos: []\n"
    if key in ("baseline", "margin"):
        entry = {"name": "c", "baseline": "v1", "candidate": "v2", key: bomb}
        return (
            "version: 1\nslos: []\ncomparisons:\n  - {"
            + ", ".join(f"{k}: {v}" for k, v in entry.items())
            + "}\n"
        )
    if key == "reason":
        return one_slo(f"suppress: [{{from: 1, to: 2, reason: {bomb}}}]")
    if key == "slices":
        return one_slo(f"slices: [{bomb}]")
    if key == "suppress":
        return one_slo(f"suppress: [{bomb}]")
    if key == "name":
        return MINIMAL.replace("name: fc", f"name: {bomb}")
    if key in ("sli", "threshold", "objective"):
        return one_slo(**{key: bomb})
    return one_slo(f"{key}: {bomb}")


@pytest.mark.parametrize("key, message", BOMB_KEYS, ids=[k for k, _ in BOMB_KEYS])
def test_an_alias_bomb_is_shown_bounded(key, message):
    # 9^6 = 531,441 strings if written out (about 5 MB; before: the whole of it was in
    # the message, and 9^10 in `msewatch slo check` never finished)
    with pytest.raises(SloFileError) as caught:
        parse_slo_file(_bomb_file(key, _alias_bomb(6)), "slo.yaml")
    text = str(caught.value)
    assert text.startswith(f"slo.yaml: {message}") and "\n" not in text
    assert len(text) < 400, len(text)


def _many(n: int) -> str:
    return "version: 1\nslos:\n" + "".join(
        f"  - {{name: s{i}, sli: rmse, threshold: 1, objective: 0.99}}\n" for i in range(n)
    )


@pytest.mark.parametrize("n, warned", [(1000, False), (1001, True)])
def test_slo_check_warns_beyond_the_supported_number_of_slos(n, warned, tmp_path, capsys):
    # README, "SLOs and alerts": an SLO file of up to 1,000 SLOs is supported
    path = tmp_path / "slo.yaml"
    path.write_text(_many(n))
    assert _check(str(path)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: OK, {n} SLOs")
    warning = f"warning: {n} SLOs and comparisons are more than the 1,000 an SLO file is supported"
    assert (warning in out) is warned


def test_slo_check_shows_control_characters_in_a_runbook_as_text(tmp_path, capsys):
    # before: the runbook and a suppression's reason were printed raw (ESC[2J clears
    # the screen)
    path = tmp_path / "slo.yaml"
    text = 'runbook: "https://wiki\\x1b[2J"\n'
    text += 'suppress: [{from: 1, to: 2, reason: "b\\x1b]8;;x\\x07"}]'
    path.write_text(one_slo(text))
    assert _check(str(path)) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "runbook    https://wiki\\x1b[2J" in out
    assert "(b\\x1b]8;;x\\x07)" in out


def test_slo_status_shows_control_characters_in_a_slice_as_text():
    import pandas as pd

    from msewatch.commands.trend import render_trends

    frame = pd.DataFrame(
        {
            "slo": ["fc"], "slice": ["region=eu\x1b[31m"], "page_state": ["ok"],
            "ticket_state": ["ok"], "value": [1.0], "objective": [0.99],
            "budget_remaining": [0.5], "lookbacks_s": [[3600]], "burn_rates": [[1.0]],
            "frontier": [pd.Timestamp("2026-11-02", tz="UTC")], "label_lag_p90_s": [60.0],
        }
    )  # fmt: skip
    text = slo_command.render_status(frame)
    assert "\x1b" not in text and "region=eu\\x1b[31m" in text
    trends = pd.DataFrame(
        {
            "slice": ["region=eu\x1b[31m"], "slope_per_day": [0.1], "low": [0.0], "high": [0.2],
            "windows": [24], "last_window_end": [pd.Timestamp("2026-11-02", tz="UTC")],
        }
    )  # fmt: skip
    text = render_trends(trends)
    assert "\x1b" not in text and "region=eu\\x1b[31m" in text
