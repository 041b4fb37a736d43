"""The portable path (what Flink runs): Beam's job API against a local job service.

A job service (``apache_beam.runners.portability.local_job_service_main``) runs in a
subprocess on loopback; the bounded pipeline is submitted to it with
``--runner=PortableRunner --job_endpoint=localhost:PORT --environment_type=LOOPBACK``
(the SDK worker runs in this process, as a Flink TaskManager's worker would run next
to it), so the pipeline goes through the Runner API proto, its coders and the job and
artifact services, as on Flink. Its rows must equal those of the FnApiRunner
(``msewatch run``'s default) on the same files: every metrics column but
``emitted_at``, the outcome counts and the dead letters.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import time

import apache_beam as beam
import pandas as pd
import pytest
from apache_beam.runners.portability import portable_runner

from msewatch.commands.generate import generate
from msewatch.pipelines.monitor import MonitorConfig, build
from msewatch.runners import presets
from msewatch.runners.config import monitor_config
from msewatch.transforms.io.files import FileSource
from tests.servers import cannot_start

H = 3600


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    generate(str(out), predictions=1500, seed=11, days=0.5)
    return str(out)


@pytest.fixture(scope="module")
def job_endpoint(tmp_path_factory):
    """A local Beam job service on loopback; stopped (its process group) at the end."""
    work = tmp_path_factory.mktemp("job_service")
    port_file = work / "port"
    log_path = work / "job_service.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apache_beam.runners.portability.local_job_service_main",
                "--port=0",
                f"--port_file={port_file}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                reason = f"local job service did not start: {log_path.read_text()[-2000:]}"
                cannot_start(reason)
            time.sleep(0.2)
        yield f"localhost:{port_file.read_text().strip()}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def _config(output: str) -> MonitorConfig:
    """``msewatch run``'s config on a cluster runner (its lateness slack), 4 shards."""
    return monitor_config(
        output,
        runner="PortableRunner",
        window_seconds=H,
        slices=["region", "model_version,region"],
        shards=4,
        expiry_grid_ms=1,
    )


def _run(sample: str, output: str, runner: str, beam_args: list[str]):
    config = _config(output)
    options = presets.pipeline_options(runner, beam_args, streaming=False)
    source = FileSource(
        os.path.join(sample, "predictions.jsonl"),
        os.path.join(sample, "labels.jsonl"),
        config.join.segment_keys,
    )
    p = beam.Pipeline(options=options)
    build(p, config, source)
    result = p.run()
    result.wait_until_finish()
    assert result.state == beam.runners.runner.PipelineState.DONE
    return result


def _table(output: str, name: str) -> pd.DataFrame:
    files = glob.glob(os.path.join(output, name, "*.parquet")) + glob.glob(
        os.path.join(output, name, "*", "*.parquet")
    )
    assert files, f"no {name} files under {output}"
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


@pytest.fixture(scope="module")
def outputs(sample, job_endpoint, tmp_path_factory):
    direct = str(tmp_path_factory.mktemp("direct"))
    portable = str(tmp_path_factory.mktemp("portable"))
    _run(sample, direct, "DirectRunner", [])
    result = _run(
        sample,
        portable,
        "PortableRunner",
        [f"--job_endpoint={job_endpoint}", "--environment_type=LOOPBACK"],
    )
    # submitted through the job API (not run in-process by the FnApiRunner)
    assert isinstance(result, portable_runner.PipelineResult)
    return direct, portable


def _metrics(output: str) -> pd.DataFrame:
    keys = ["window_start", "slice", "pane_index"]
    df = _table(output, "metrics").drop(columns=["emitted_at"])
    return df.sort_values(keys).reset_index(drop=True)


def test_portable_metrics_equal_direct_runner(outputs):
    direct, portable = (_metrics(o) for o in outputs)
    assert len(direct) > 20  # many windows x slices: a comparison worth making
    assert set(direct["slice"]).issuperset({"overall", "region=eu"})
    pd.testing.assert_frame_equal(portable, direct, check_exact=False, rtol=1e-12)


def test_portable_outcomes_and_dead_letters_equal_direct_runner(outputs):
    def outcomes(o):
        t = _table(o, "outcomes")
        return t.groupby(["record_type", "outcome"])["count"].sum().sort_index()

    def dead(o):
        t = _table(o, "dead_letter")
        return t.sort_values(["record_type", "ingest_position"]).reset_index(drop=True)

    direct, portable = outputs
    assert outcomes(direct).sum() > 0
    pd.testing.assert_series_equal(outcomes(portable), outcomes(direct))
    assert len(dead(direct)) > 0  # the sample has malformed lines
    pd.testing.assert_frame_equal(dead(portable), dead(direct))


def test_portable_preset_needs_a_job_endpoint():
    with pytest.raises(ValueError, match="--job_endpoint"):
        presets.pipeline_flags("PortableRunner", ["--environment_type=LOOPBACK"], streaming=False)


def test_flink_preset_needs_the_flink_master():
    with pytest.raises(ValueError, match="FlinkRunner needs --flink_master"):
        presets.pipeline_flags("FlinkRunner", [], streaming=True)


def test_flink_preset_accepts_dashes_and_adds_streaming():
    flags = presets.pipeline_flags(
        "flink", ["--flink-master=localhost:8081", "--environment-type=LOOPBACK"], streaming=True
    )
    assert flags == [
        "--runner=FlinkRunner",
        "--flink_master=localhost:8081",
        "--environment_type=LOOPBACK",
        "--streaming",
    ]


def test_flinks_java_options_are_known_and_reach_the_job_server_untouched():
    """Beam's Python FlinkRunner asks the job server which options it knows
    (DescribePipelineOptions) and sends them on: a job submitted with
    --checkpointing_interval=5000 had a 5,000 ms interval in Flink's REST API
    (/jobs/ID/checkpoints/config). msewatch accepts them and adds nothing in their place."""
    args = [
        "--flink_master=localhost:8081",
        "--checkpointing_interval=60000",
        "--state_backend=rocksdb",
        "--environment_type=LOOPBACK",
    ]
    presets.check_known_options(args)  # not "unknown option"
    flags = presets.pipeline_flags("FlinkRunner", args, streaming=True)
    assert flags[0] == "--runner=FlinkRunner" and "--streaming" in flags
    assert {"--checkpointing_interval=60000", "--state_backend=rocksdb"} <= set(flags)
    with pytest.raises(ValueError, match="unknown option '--checkpointing_intervall=1'"):
        presets.check_known_options(["--checkpointing_intervall=1"])


@pytest.mark.parametrize(
    "extra, staged",
    [
        ([], True),  # Beam's default DOCKER environment: the SDK container needs the code
        (["--environment_type=EXTERNAL", "--environment_config=localhost:50000"], False),
        (["--sdk_container_image=registry.example/msewatch:0.1.0"], False),
        (["--environment_type=DOCKER", "--environment_config=registry.example/m:1"], False),
    ],
)
def test_flink_workers_get_the_code_by_staging_or_image(monkeypatch, extra, staged):
    monkeypatch.setattr(presets.importlib.util, "find_spec", lambda name: object())
    flags = presets.preset_flags("FlinkRunner", ["--flink_master=h:8081", *extra], streaming=False)
    assert any(f.startswith("--setup_file=") for f in flags) == staged


def test_unknown_runner_names_the_supported_ones():
    with pytest.raises(
        ValueError, match="DirectRunner, PortableRunner, FlinkRunner, DataflowRunner"
    ):
        presets.runner_name("SparkRunner")


@pytest.mark.parametrize("runner", ["FlinkRunner", "PortableRunner"])
def test_pubsub_on_a_portable_runner_needs_a_java_expansion_service(runner):
    with pytest.raises(ValueError, match="--pubsub-expansion-service"):
        presets.check_pubsub_runner(runner, None)
    presets.check_pubsub_runner(runner, "localhost:8097")  # Java's PubsubIO: accepted


@pytest.mark.parametrize("runner", ["DirectRunner", "DataflowRunner"])
def test_pubsub_runs_natively_on_direct_and_dataflow(runner):
    presets.check_pubsub_runner(runner, None)
