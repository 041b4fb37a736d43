"""`msewatch slo rules`: the text of the rules, without Prometheus.

What Prometheus makes of them is ``tests/integration/test_prometheus_rules.py`` (promtool,
and the demo's page firing in a real Prometheus).
"""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

from msewatch import cli
from msewatch.commands import slo_rules
from msewatch.transforms.slo.config import load_slo_file, matches, parse_slo_file

EXAMPLES = pathlib.Path(__file__).parents[2] / "docs" / "examples"
NAMES = [
    "overall", "region=eu", "region=apac", "region=e.u", "region=eu%2Cus",
    "model_version=v2,region=eu", "region=eu,model_version=v2", "model_version=v1,region=us",
    "sku=a+b", "sku=a(b)", "sku=",
]  # fmt: skip


@pytest.mark.parametrize(
    "patterns",
    [
        ("overall",),
        ("region=*",),
        ("region=eu",),
        ("region=e.u",),  # the dot is no wildcard
        ("model_version=*,region=eu",),
        ("region=eu,model_version=*",),  # the keys in any order
        ("overall", "region=*"),
        ("sku=a+b", "sku=a(b)"),
    ],
)
def test_the_slice_regex_covers_what_the_slo_covers(patterns):
    """Prometheus anchors a label regex: ``re.fullmatch`` reads these RE2 ones alike."""
    regex = slo_rules.slice_regex(patterns)
    got = [n for n in NAMES if re.fullmatch(regex, n)]
    assert got == [n for n in NAMES if matches(patterns, n)]


def test_only_rmse_error_rate_and_nan_rate_get_rules_the_others_say_why():
    text = slo_rules.rules_text("slo.yaml", load_slo_file(str(EXAMPLES / "slo.yaml")))
    groups = yaml.safe_load(text)["groups"]
    assert [g["name"] for g in groups] == [
        "msewatch-slo-forecast-rmse",
        "msewatch-slo-forecast-error-rate",
        "msewatch-slo-nan-predictions",
    ]
    comments = [line for line in text.splitlines() if line.startswith("# ")]
    for name, sli in (
        ("label-freshness", "label_freshness"),
        ("forecast-rmse-trend", "rmse_trend"),
        ("v2-rollout", "comparison"),
    ):
        assert sum(line.startswith(f"# {name} ({sli}): not generated: ") for line in comments) == 1


def _group(text: str) -> dict:
    return yaml.safe_load(slo_rules.rules_text("f.yaml", parse_slo_file(text)))["groups"][0]


SLO = """
version: 1
slos:
  - name: fc
    sli: rmse
    threshold: 40
    objective: 0.999
    slices: ["region=*"]
    min_coverage: 0.9
    min_scored: 50
    keep_firing_for: 0s
    alerting:
      page: [{long: 2h, short: 10m, burn_rate: 10}]
      ticket: []
"""


def test_the_gate_threshold_and_objective_are_the_slos():
    rules = {r.get("record") or r["alert"]: r for r in _group(SLO)["rules"]}
    settled = rules[slo_rules.SETTLED]["expr"]
    assert ">= 0.9\n" in settled and ">= 50\n" in settled
    assert "> bool 40.0)" in rules[slo_rules.BAD]["expr"]
    assert rules[slo_rules.BURN_RATE]["expr"].endswith("/ (1 - 0.999)")
    alert = rules[slo_rules.ALERT]
    assert alert["labels"]["severity"] == "page"
    assert "keep_firing_for" not in alert  # 0s: resolves at the first evaluation without it
    assert 'lookback="2h"} >= 10.0 * (1 - 1e-09)' in alert["expr"]
    assert 'lookback="10m"} >= 10.0 * (1 - 1e-09)' in alert["expr"]


def test_an_error_rate_slo_reads_the_weight_beyond_its_threshold():
    text = SLO.replace("sli: rmse", "sli: error_rate").replace("threshold: 40", "threshold: 2.5")
    rules = {r.get("record") or r["alert"]: r for r in _group(text)["rules"]}
    assert 'threshold="2.5"}' in rules[slo_rules.BAD]["expr"]
    assert "msewatch_recent_window_scored_weight" in rules[slo_rules.ELIGIBLE]["expr"]


def test_a_nan_rate_slo_settles_closed_windows_without_the_label_gate():
    text = SLO.replace("sli: rmse", "sli: nan_rate").replace("threshold: 40", "threshold: 0.01")
    text = text.replace("    min_coverage: 0.9\n    min_scored: 50\n", "")
    rules = {r.get("record") or r["alert"]: r for r in _group(text)["rules"]}
    settled = rules[slo_rules.SETTLED]["expr"]
    assert "closed{" in settled and "coverage" not in settled and "scored" not in settled
    assert (
        "predictions{" in rules[slo_rules.BAD]["expr"]
        and "> bool 0.01" in rules[slo_rules.BAD]["expr"]
    )


def test_a_suppression_leaves_its_windows_out():
    text = SLO + '    suppress: [{from: "2026-11-02T00:00:00Z", to: "2026-11-02T06:00:00Z"}]\n'
    eligible = next(r for r in _group(text)["rules"] if r.get("record") == slo_rules.ELIGIBLE)
    # 2026-11-02T06:00Z = 1793599200 s; 00:00Z is 6 h earlier, 1793577600 s
    assert "start_timestamp_seconds{" in eligible["expr"] and "< 1793599200.000" in eligible["expr"]
    assert "> 1793577600.000)" in eligible["expr"]


def test_rules_go_to_standard_output_without_out(capsys):
    assert cli.main(["slo", "rules", str(EXAMPLES / "demo-slo.yaml")]) == 0
    groups = yaml.safe_load(capsys.readouterr().out)["groups"]
    assert [g["name"] for g in groups] == ["msewatch-slo-forecast-rmse"]
