"""A run launched from Python (``runners/launch.py``'s ``run(config, job)``, the config from
``runners/config.py``'s factory) writes what ``msewatch run`` wrote for the same settings:
the session's ``demo`` run (tests/conftest.py) is the reference."""

from __future__ import annotations

import json

import pandas as pd

from msewatch.runners import config, launch
from tests.harness import read_metrics


def test_a_python_launch_writes_the_tables_msewatch_run_wrote(demo, tmp_path, capsys):
    cli_out, stats = demo
    sample = cli_out.parent / "sample"
    job = config.Job(str(sample / "predictions.jsonl"), str(sample / "labels.jsonl"), quiet=True)
    # the demo's command line: --slice region --slice model_version,region, else defaults
    settings = config.monitor_config(
        str(tmp_path / "out"), slices=["region", "model_version,region"]
    )
    result = launch.run(settings, job)
    assert result.code == 0
    assert capsys.readouterr().out == ""  # quiet: the caller prints the summary
    reference = json.loads((cli_out / "summary.json").read_text())
    assert result.outcomes == reference["outcomes"]
    # the generator's own count of what it wrote (SampleStats), not the pipeline's
    facts = stats.to_dict()
    predictions = result.outcomes["prediction"]
    assert predictions["input"] == sum(
        facts[k]
        for k in ("predictions", "shadow_predictions", "duplicate_predictions")
        + ("malformed_predictions",)
    )
    assert (predictions["joined"], predictions["expired"]) == (facts["joined"], facts["expired"])
    ours = read_metrics(tmp_path / "out").drop(columns=["emitted_at"])
    theirs = read_metrics(cli_out).drop(columns=["emitted_at"])
    assert len(ours) > 0
    pd.testing.assert_frame_equal(ours, theirs)
