"""FlinkRunner's defaults (runners/flink.py), with the cluster's REST answer and Java faked."""

from __future__ import annotations

import subprocess
import urllib.error
import zipfile

import pytest

from msewatch.runners import flink, java_services
from msewatch.runners.cache import DownloadError

JAR = "/cache/beam-java/2.77.0/flink-1.20/flink-job-server.jar"
OPENS = [
    "--job_server_jvm_properties=--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--job_server_jvm_properties=--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--job_server_jvm_properties=--add-opens=java.base/java.util=ALL-UNNAMED",
]


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    """A 1.20.3 cluster answers; Java 17; the job server jars resolve (faked)."""
    asked = []

    def overview(url, path="/overview", timeout_s=3.0):
        asked.append(url + path)
        return {"flink-version": "1.20.3", "taskmanagers": 1}

    monkeypatch.setattr(flink, "overview", overview)
    monkeypatch.setattr(flink, "java_major", lambda: 17)
    monkeypatch.setattr(java_services, "job_server_jar", lambda version: JAR)
    return asked


def test_a_local_cluster_gets_its_version_loopback_the_jar_and_java17_flags(cluster, tmp_path):
    flags = flink.flink_flags(["--flink-master=localhost:8081"])
    assert flags == [
        "--flink_version=1.20",
        "--environment_type=LOOPBACK",
        f"--flink_job_server_jar={JAR}",
        *OPENS,
    ]
    assert cluster == ["http://localhost:8081/overview"]


def test_a_remote_cluster_keeps_beams_environment(cluster):
    flags = flink.flink_flags(["--flink_master=http://jobmanager.example:8081"])
    assert not any(f.startswith("--environment_type") for f in flags)
    assert "--flink_version=1.20" in flags


def test_what_the_user_gave_is_kept(cluster, monkeypatch):
    monkeypatch.setattr(java_services, "jar_beam_version", lambda path: java_services.SDK_VERSION)
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


def test_jars_maven_cannot_resolve_name_the_matched_stack(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("MSEWATCH_CACHE", str(tmp_path))
    monkeypatch.setattr(java_services, "job_server_jar", _REAL_JOB_SERVER_JAR)
    monkeypatch.setattr(java_services, "require_tool", lambda name, what: "/usr/bin/mvn")

    def fails(cmd, what, **kwargs):
        assert "-Dflink.minor=1.20" in cmd and f"-Dbeam.version={java_services.SDK_VERSION}" in cmd
        raise DownloadError(f"{what} failed (Could not resolve beam-runners-java-job-service)")

    monkeypatch.setattr(java_services, "run_step", fails)
    with pytest.raises(ValueError) as err:
        flink.flink_flags(["--flink_master=localhost:8081"])
    message = str(err.value)
    assert "Could not resolve beam-runners-java-job-service" in message
    assert "runners/flink-constraints.txt" in message and "\n" not in message
    # nothing that looks installed is left behind
    assert list((tmp_path / "beam-java" / java_services.SDK_VERSION).iterdir()) == []


_REAL_JOB_SERVER_JAR = java_services.job_server_jar


def _jar(path, entries: dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as jar:
        for name, text in entries.items():
            jar.writestr(name, text)
    return str(path)


def test_a_job_server_jar_of_another_beam_release_is_refused(cluster, tmp_path):
    jar = _jar(tmp_path / "js.jar", {"org/apache/beam/sdk/sdk.properties": "version=2.61.0\n"})
    with pytest.raises(ValueError) as err:
        flink.flink_flags(["--flink_master=localhost:8081", f"--flink_job_server_jar={jar}"])
    message = str(err.value)
    assert (
        f"is Beam 2.61.0 but the Python SDK is apache-beam {java_services.SDK_VERSION}" in message
    )
    assert "one release" in message and "\n" not in message


def test_a_manifest_jar_is_read_through_its_class_path(tmp_path):
    """The version of a manifest-only jar (as java_services writes) is that of the
    beam-sdks-java-core jar its Class-Path lists."""
    (tmp_path / "lib").mkdir()
    _jar(
        tmp_path / "lib" / "beam-sdks-java-core-2.62.0.jar",
        {"org/apache/beam/sdk/sdk.properties": "name=Apache Beam SDK for Java\nversion=2.62.0\n"},
    )
    _jar(tmp_path / "lib" / "other-1.0.jar", {"a.txt": "x"})
    jar = java_services.manifest_jar(tmp_path / "lib", java_services.JOB_SERVER_MAIN, "js")
    manifest = zipfile.ZipFile(jar).read("META-INF/MANIFEST.MF").decode()
    assert f"Main-Class: {java_services.JOB_SERVER_MAIN}" in manifest
    assert "lib/beam-sdks-java-core-2.62.0.jar" in manifest.replace("\n  ", "")
    assert java_services.jar_beam_version(str(jar)) == "2.62.0"
    assert java_services.jar_beam_version(str(tmp_path / "lib" / "other-1.0.jar")) is None


@pytest.mark.parametrize(
    ("published", "minor", "release"),
    [
        (["1.17", "1.18", "1.19"], "1.19", "1.19.3"),
        (["1.19", "1.20", "2.0", "2.2"], "1.20", "1.20.3"),
    ],
)
def test_the_local_cluster_runs_the_newest_flink_beam_publishes_a_runner_for(
    published, minor, release
):
    # apache-beam 2.62 publishes Flink 1.17-1.19 runners; 2.77 1.19-2.2, of which
    # PyPI's apache-flink has 1.19 and 1.20 releases msewatch knows
    assert java_services.flink_minor(published) == minor
    assert java_services.flink_release(minor) == release


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


def test_a_slow_rest_answer_is_asked_again_until_the_deadline(monkeypatch):
    import time

    from msewatch.runners import flink

    monkeypatch.setattr(flink.time, "sleep", lambda s: None)
    answers = [TimeoutError("timed out"), TimeoutError("timed out"), {"state": "CANCELED"}]

    def call():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert flink._patient(call, time.monotonic() + 60) == {"state": "CANCELED"}
    with pytest.raises(TimeoutError):  # past the deadline, the last error is raised
        flink._patient(lambda: (_ for _ in ()).throw(TimeoutError("timed out")), 0.0)
