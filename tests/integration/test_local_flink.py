"""A real standalone Flink cluster on 127.0.0.1 (`msewatch local flink`), and FlinkRunner on it.

The cluster is Flink 1.19.3 from PyPI (the release apache-beam 2.62's Flink runner was
built for), one JobManager and one TaskManager JVM, started and stopped through the
command line as a user would, with the Python of the matched Flink stack
(:func:`tests.local_servers.flink_python`). The bounded run submits through Beam's job
server resolved from Maven Central's jars (runners/java_services.py) and is compared
with the DirectRunner of the test's own Python (apache-beam 2.77).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import urllib.error

import pandas as pd
import pytest

from msewatch.commands.generate import generate
from msewatch.commands.local import flink as local_flink
from msewatch.commands.local import processes
from tests.evidence import say
from tests.local_servers import flink_options, flink_python, local, running_flink
from tests.servers import free_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_flink(tmp_path_factory.mktemp("flink"), slots=2) as settings:
        yield settings


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    generate(str(out), predictions=1500, seed=11, days=0.5)
    return str(out)


def _config(settings) -> dict[str, str]:
    entries = local_flink.overview(settings.rest_url, "/jobmanager/config")
    return {e["key"]: e["value"] for e in entries}


def test_the_cluster_has_one_taskmanager_with_two_slots_on_loopback(cluster):
    info = local_flink.overview(cluster.rest_url)
    # runners/flink-constraints.txt pins apache-beam 2.62, whose newest Flink runner is 1.19
    assert info["flink-version"] == "1.19.3"
    assert (info["taskmanagers"], info["slots-total"]) == (1, 2)
    config = _config(cluster)
    assert config["rest.bind-address"] == config["jobmanager.bind-host"] == "127.0.0.1"
    assert config["parallelism.default"] == "2"
    assert config["state.backend.type"] == "rocksdb"
    assert config["state.checkpoints.dir"] == (cluster.state_dir / "checkpoints").as_uri()


def test_status_names_the_address_and_both_processes(cluster):
    status = local("flink", "status", *flink_options(cluster))
    assert status.returncode == 0, status.stderr
    line = status.stdout.strip()
    assert line.startswith(f"flink: running at {cluster.rest_url} (Flink 1.19.3, 1 TaskManager")
    for role in local_flink.ROLES:
        pid = processes.running_pid(cluster.pid_file(role))
        assert pid is not None and f"{role} pid {pid}" in line


def test_stop_ends_both_jvms_and_status_then_says_stopped(tmp_path):
    with running_flink(tmp_path / "flink") as settings:
        pids = [processes.running_pid(settings.pid_file(r)) for r in local_flink.ROLES]
        assert all(pids)
        stopped = local("flink", "stop", *flink_options(settings))
        assert stopped.returncode == 0, stopped.stderr
        assert not any(processes.alive(pid) for pid in pids)
        with pytest.raises(urllib.error.URLError):
            local_flink.overview(settings.rest_url)
        status = local("flink", "status", *flink_options(settings))
        assert status.returncode == 3 and status.stdout.startswith("flink: stopped")


def _msewatch_run(
    sample: str, output: str, *runner_args: str, python: str = sys.executable, progress=False
):
    return subprocess.run(
        [
            python,
            "-m",
            "msewatch",
            "run",
            "--predictions",
            os.path.join(sample, "predictions.jsonl"),
            "--labels",
            os.path.join(sample, "labels.jsonl"),
            "--output",
            output,
            "--slice",
            "region",
            *([] if progress else ["--quiet"]),
            *runner_args,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        # MSEWATCH_PROGRESS=1: the Flink progress line on a pipe (runners/flink_progress.py)
        env={**os.environ, "MSEWATCH_PROGRESS": "1"} if progress else None,
    )


def test_flink_runner_without_a_cluster_says_so_in_one_line(sample, tmp_path):
    port = free_port()  # nothing listens there
    done = _msewatch_run(
        sample,
        str(tmp_path / "out"),
        "--runner",
        "FlinkRunner",
        "--flink-master",
        f"127.0.0.1:{port}",
    )
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
    assert lines == [
        f"msewatch: error: no Flink cluster answers at http://127.0.0.1:{port} "
        "(GET /overview: [Errno 111] Connection refused); start one with "
        "`msewatch local flink start` or check --flink-master"
    ]


def _table(output: str, name: str) -> pd.DataFrame:
    files = glob.glob(os.path.join(output, name, "**", "*.parquet"), recursive=True)
    assert files, f"no {name} files under {output}"
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _metrics(output: str) -> pd.DataFrame:
    keys = ["window_start", "slice", "pane_index"]
    df = _table(output, "metrics").drop(columns=["emitted_at"])
    return df.sort_values(keys).reset_index(drop=True)


def _outcomes(output: str) -> pd.Series:
    return _table(output, "outcomes").groupby(["record_type", "outcome"])["count"].sum()


def test_a_bounded_run_with_parallelism_2_equals_the_direct_runner(cluster, sample, tmp_path):
    direct, on_flink = str(tmp_path / "direct"), str(tmp_path / "flink")
    done = _msewatch_run(sample, direct)
    assert done.returncode == 0, done.stderr[-2000:]
    done = _msewatch_run(
        sample,
        on_flink,
        "--runner",
        "FlinkRunner",
        "--flink-master",
        f"localhost:{cluster.rest_port}",
        "--parallelism",
        "2",
        python=flink_python(),
        progress=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # the line from Flink's REST API while the job ran, and its last one (FINISHED) kept
    lines = done.stderr.replace("\r", "\n").splitlines()
    shown = [ln for ln in lines if ln.startswith("msewatch: Flink job: ")]
    assert any(" RUNNING, " in ln for ln in shown), shown[-5:]
    assert re.search(r"FINISHED, (\d+)/\1 vertices finished, [1-9][\d,]* records in", shown[-1])
    jobs = local_flink.jobs(cluster)
    assert [job["state"] for job in jobs] == ["FINISHED"], jobs
    job = local_flink.overview(cluster.rest_url, f"/jobs/{jobs[0]['jid']}")
    say(f"Flink REST /jobs/{job['jid']}: {job['name']} {job['state']}, {job['duration']} ms")
    assert {v["parallelism"] for v in job["vertices"]} >= {2}
    metrics = _metrics(direct)
    assert len(metrics) > 20 and {"overall", "region=eu"} <= set(metrics["slice"])
    pd.testing.assert_frame_equal(_metrics(on_flink), metrics, check_exact=False, rtol=1e-12)
    pd.testing.assert_series_equal(_outcomes(on_flink), _outcomes(direct))


def test_a_taskmanager_killed_with_sigkill_is_replaced_by_a_new_one(cluster):
    """What the crash test needs of the cluster: a TaskManager dies without warning and
    a new one (a new JVM, a new id) registers with the JobManager. Last in the module:
    the JobManager lists the dead one until its heartbeat times out."""

    def taskmanager_ids() -> set[str]:
        return {
            tm["id"]
            for tm in local_flink.overview(cluster.rest_url, "/taskmanagers")["taskmanagers"]
        }

    before = taskmanager_ids()
    killed = processes.kill(cluster.pid_file("taskmanager"))
    assert killed is not None
    assert processes.wait_for(lambda: not processes.alive(killed), 10)
    started = local_flink.start_role(cluster, "taskmanager")
    assert started != killed and processes.alive(started)
    assert processes.wait_for(lambda: taskmanager_ids() - before, 60), "no new TaskManager"
    assert local("flink", "status", *flink_options(cluster)).returncode == 0
