"""The comparisons of an SLO file: parsing and one-line errors."""

from __future__ import annotations

import pytest

from msewatch.transforms.slo.config import SloFileError, parse_slo_file

HEAD = "version: 1\nslos: []\ncomparisons:\n  - name: v2-rollout\n"
FULL = (
    HEAD + "    baseline: {model_version: v1}\n    candidate: {model_version: v2}\n"
    "    metric: mae\n    mode: paired\n    slices: [overall, region=*]\n"
    "    lookback: 7d\n    margin: 0.1\n    alpha: 0.01\n    min_scored: 50\n"
    "    severity: ticket\n    runbook: https://r\n"
)


def test_every_key_is_read():
    [c] = parse_slo_file(FULL).comparisons
    assert (c.metric, c.mode, c.slices, c.lookback_s) == (
        "mae",
        "paired",
        ("overall", "region=*"),
        7 * 86400,
    )
    assert (c.margin, c.alpha, c.min_scored, c.severity, c.runbook) == (
        0.1,
        0.01,
        50,
        "ticket",
        "https://r",
    )


def test_the_slice_specs_cross_model_version_with_the_patterns_keys():
    slo_file = parse_slo_file(FULL)
    assert slo_file.slice_specs() == (("model_version",), ("model_version", "region"))
    assert slo_file.metrics_needs()["version_pairs"] == (("v1", "v2"),)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("    baseline: v1\n", "v2-rollout: candidate: is required"),
        ("    baseline: v1\n    candidate: v1\n", "candidate: must differ from the baseline"),
        (
            "    baseline: v1\n    candidate: v2\n    metric: rmse\n",
            "metric: must be one of mse, mae",
        ),
        ("    baseline: v1\n    candidate: v2\n    lookback: 1y\n", "lookback:"),
        ("    baseline: v1\n    candidate: v2\n    alpha: 0.7\n", "alpha: must be in (0, 0.5)"),
        (
            "    baseline: v1\n    candidate: v2\n    colour: red\n",
            "colour: unknown key; allowed: name",
        ),
        (
            "    baseline: v1\n    candidate: v2\n    slices: [model_version=*]\n",
            "slices[0]: leave out model_version",
        ),
        ("    baseline: {version: v1}\n    candidate: v2\n", "baseline: must be {model_version:"),
    ],
)
def test_mistakes_get_one_line_naming_the_comparison_and_key(body, message):
    with pytest.raises(SloFileError) as e:
        parse_slo_file(HEAD + body, "f.yaml")
    text = str(e.value)
    assert "\n" not in text and text.startswith("f.yaml: v2-rollout: ") and message in text


def test_a_comparison_may_not_take_an_slo_name():
    text = (
        "version: 1\nslos: [{name: x, sli: rmse, threshold: 1, objective: 0.9}]\n"
        "comparisons: [{name: x, baseline: v1, candidate: v2}]\n"
    )
    with pytest.raises(SloFileError, match="x: name: is used by an earlier SLO or comparison"):
        parse_slo_file(text)
