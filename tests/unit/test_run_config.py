"""``runners/config.py``: the one factory of a run's ``MonitorConfig``, the ``Job`` of a
launch, and ``msewatch run``'s arguments mapped onto both."""

from __future__ import annotations

import pathlib

import pytest

from msewatch import cli
from msewatch.runners import config, launch
from msewatch.transforms.slo.config import load_slo_file

SLO = pathlib.Path(__file__).parent.parent.parent / "docs" / "examples" / "slo.yaml"
DAY_S = 86400


def _parsed(*argv: str):
    args, rest = cli.build_parser().parse_known_args(
        ["run", "--predictions", "p.jsonl", "--labels", "l.jsonl", "--output", "out", *argv]
    )
    assert rest == []
    return args


def test_the_cli_path_builds_what_the_factory_builds_from_the_same_plain_values():
    args = _parsed(
        *("--window", "2h", "--every", "1h", "--label-ttl", "3d", "--slice", "region"),
        *("--feature", "price", "--slo", str(SLO), "--streaming-replay", "--shards", "3"),
    )
    job = config.job_from_args(args)
    assert job == config.Job("p.jsonl", "l.jsonl", streaming_replay=True)
    built = config.monitor_config(
        "out",
        bounded=False,
        window_seconds=7200,
        every_seconds=3600,
        label_ttl_ms=3 * DAY_S * 1000,
        slices=["region"],
        features=["price"],
        shards=3,
        slo=load_slo_file(str(SLO)),
    )
    assert config.config_from_args(args, job) == built


def test_the_defaults_are_msewatch_runs():
    built = config.monitor_config("out")
    assert built == config.config_from_args(_parsed(), config.job_from_args(_parsed()))
    # by hand: the 7 d TTL rounded up to the second + 1 s on the DirectRunner
    assert built.metrics.window.allowed_lateness_seconds == 7 * DAY_S + 1
    assert (built.join.shards, built.join.timer_grid_ms) == (16, 3600 * 1000)
    assert (built.bounded, built.slo, built.delivery.alertmanager_url) == (True, None, None)


@pytest.mark.parametrize(
    "runner, bounded, lateness_s, shards",
    [
        ("DirectRunner", True, DAY_S + 1, 16),  # batch: 16 shards
        ("DirectRunner", False, DAY_S + 1, 2),  # the streaming DirectRunner: 2
        ("flink", False, DAY_S + 60, 1024),  # a cluster: the 60 s slack, 1024 buckets
    ],
)
def test_runner_and_mode_set_lateness_and_shards(runner, bounded, lateness_s, shards):
    built = config.monitor_config("out", runner=runner, bounded=bounded, label_ttl_ms=DAY_S * 1000)
    assert built.metrics.window.allowed_lateness_seconds == lateness_s
    assert built.join.shards == shards


def test_the_slo_file_adds_the_slices_and_counts_it_reads():
    slo = load_slo_file(str(SLO))
    built = config.monitor_config("out", slo=slo, error_thresholds=(99.0,))
    # docs/examples/slo.yaml compares v2 with v1, counts errors above 100 (error_rate)
    # and labels within 24h (label_freshness): the file's counts replace the 99 given
    assert built.metrics.version_pairs == (("v1", "v2"),)
    assert built.metrics.freshness_within_s == (DAY_S,)
    assert built.metrics.error_thresholds == (100.0,)
    assert ("model_version",) in built.metrics.slices.all_specs


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alertmanager_url": "http://127.0.0.1:9093"}, "pass --slo FILE too"),
        ({"bigquery_api_endpoint": "ftp://x"}, "--bq-api-endpoint must be an http://"),
        ({"window_seconds": 3600, "every_seconds": 7}, "must be positive and divide --window"),
    ],
)
def test_factory_mistakes_are_one_line(kwargs, message):
    with pytest.raises(ValueError, match="^[^\n]*$") as raised:
        config.monitor_config("out", **kwargs)
    assert message in str(raised.value)


def test_a_replay_of_pubsub_is_refused():
    sub = "pubsub://projects/my-project/subscriptions/"
    with pytest.raises(ValueError, match="--streaming-replay replays files"):
        config.Job(sub + "preds", sub + "labels", streaming_replay=True)


def test_a_config_whose_mode_is_not_the_jobs_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "p.jsonl").write_text("")
    (tmp_path / "l.jsonl").write_text("")
    job = config.Job(str(tmp_path / "p.jsonl"), str(tmp_path / "l.jsonl"), streaming_replay=True)
    with pytest.raises(ValueError, match=r"bounded=True .*monitor_config\(\.\.\., bounded=job"):
        launch.run(config.monitor_config(str(out)), job)
    assert not out.exists()
