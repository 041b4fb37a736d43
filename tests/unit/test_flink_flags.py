"""FlinkRunner's defaults (runners/flink.py), with the cluster's REST answer and Java faked."""

from __future__ import annotations

import subprocess
import urllib.error

import pytest

from msewatch.runners import flink

JAR = "beam-runners-flink-1.20-job-server-2.77.0.jar"
OPENS = [
    "--job_server_jvm_properties=--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--job_server_jvm_properties=--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--job_server_jvm_properties=--add-opens=java.base/java.util=ALL-UNNAMED",
]


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    """A 1.20.3 cluster answers; Java 17; the job server jar sits in $MSEWATCH_CACHE/jars."""
    asked = []

    def overview(url, path="/overview", timeout_s=3.0):
        asked.append(url + path)
        return {"flink-version": "1.20.3", "taskmanagers": 1}

    monkeypatch.setattr(flink, "overview", overview)
    monkeypatch.setattr(flink, "java_major", lambda: 17)
    monkeypatch.setenv("MSEWATCH_CACHE", str(tmp_path))
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / JAR).write_bytes(b"PK")
    return asked


def test_a_local_cluster_gets_its_version_loopback_the_jar_and_java17_flags(cluster, tmp_path):
    flags = flink.flink_flags(["--flink-master=localhost:8081"])
    assert flags == [
        "--flink_version=1.20",
        "--environment_type=LOOPBACK",
        f"--flink_job_server_jar={tmp_path / 'jars' / JAR}",
        *OPENS,
    ]
    assert cluster == ["http://localhost:8081/overview"]


def test_a_remote_cluster_keeps_beams_environment(cluster):
    flags = flink.flink_flags(["--flink_master=http://jobmanager.example:8081"])
    assert not any(f.startswith("--environment_type") for f in flags)
    assert "--flink_version=1.20" in flags


def test_what_the_user_gave_is_kept(cluster):
    flags = flink.flink_flags(
        [
            "--flink_master=127.0.0.1:8081",
            "--environment_type=EXTERNAL",
            "--flink_job_server_jar=/opt/js.jar",
            "--job_server_jvm_properties=-Xmx2g",
            "--flink_version=1.20",
        ]
    )
    assert flags == []


def test_a_different_flink_version_is_refused(cluster):
    with pytest.raises(ValueError, match="differs from the cluster's Flink 1.20"):
        flink.flink_flags(["--flink_master=localhost:8081", "--flink_version=2.2"])


def test_a_flink_version_beam_has_no_job_server_for_is_refused(cluster, monkeypatch):
    monkeypatch.setattr(flink, "overview", lambda url, *a, **k: {"flink-version": "1.17.2"})
    with pytest.raises(ValueError, match="runs Flink 1.17; Beam's FlinkRunner supports 1.19"):
        flink.flink_flags(["--flink_master=localhost:8081"])


def test_an_unreachable_cluster_is_one_line_saying_what_to_do(monkeypatch):
    def refused(url, *a, **k):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(flink, "overview", refused)
    with pytest.raises(ValueError) as err:
        flink.flink_flags(["--flink_master=localhost:1"])
    message = str(err.value)
    assert "no Flink cluster answers at http://localhost:1" in message
    assert "msewatch local flink start" in message and "\n" not in message


def test_a_jar_that_cannot_be_downloaded_says_how_to_pass_one(cluster, tmp_path, monkeypatch):
    (tmp_path / "jars" / JAR).unlink()
    monkeypatch.setattr(flink.JavaJarServer, "JAR_CACHE", str(tmp_path / "beam-cache"))

    def not_found(url, dest):
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)

    monkeypatch.setattr(flink, "_download", not_found)
    with pytest.raises(ValueError, match=rf"{JAR} could not be downloaded \(HTTP Error 404"):
        flink.flink_flags(["--flink_master=localhost:8081"])


def test_no_jvm_flags_before_java_17(cluster, monkeypatch):
    monkeypatch.setattr(flink, "java_major", lambda: 11)
    flags = flink.flink_flags(["--flink_master=localhost:8081"])
    assert not any(f.startswith("--job_server_jvm_properties") for f in flags)


def test_without_a_master_the_preset_reports_it():
    assert flink.flink_flags(["--parallelism=2"]) == []


@pytest.mark.parametrize(
    ("master", "local"),
    [
        ("localhost:8081", True),
        ("127.0.0.1:8081", True),
        ("http://127.0.0.2:8081", True),
        ("[::1]:8081", True),
        ("jobmanager:8081", False),
        ("https://flink.example.com", False),
        ("10.0.0.5:8081", False),
    ],
)
def test_is_local(master, local):
    assert flink.is_local(master) is local


@pytest.mark.parametrize(
    ("stderr", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "21" 2023-09-19', 21),
    ],
)
def test_java_major(monkeypatch, stderr, major):
    def fake_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr=stderr)

    monkeypatch.setattr(flink.subprocess, "run", fake_run)
    assert flink.java_major() == major
