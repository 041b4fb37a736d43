"""Beam's Java services for Flink and Kafka, from published Maven jars, one Beam release.

The Python SDK, Beam's Flink job server and the expansion service that expands
``ReadFromKafka`` must be one Beam release: a 2.77 SDK cannot expand Kafka through a
2.62 service, and a job server of another release may misread the pipeline. Maven
Central serves no ``beam-runners-flink-*-job-server`` uber jar here, but it serves
what that jar shades. So :func:`beam_java_libs` resolves ``runners/java/pom.xml``
(``beam-runners-flink-<flink minor>``, ``beam-runners-java-job-service``,
``beam-sdks-java-expansion-service``, ``beam-sdks-java-io-kafka``, ``kafka-clients``)
for the *installed* apache-beam with ``mvn dependency:copy-dependencies`` into
``$MSEWATCH_CACHE/beam-java/<beam>/flink-<minor>/lib`` (once; offline afterwards), and
:func:`manifest_jar` writes a jar holding only a manifest (``Main-Class`` and a
``Class-Path`` of those jars). Beam starts it like its own uber jar
(``--flink_job_server_jar``; ``JavaJarExpansionService``).

Which Flink: :func:`flink_minor` is the newest Flink the installed Beam publishes a
runner for (``FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS``) among the releases of
:data:`FLINK_RELEASES`, the PyPI ``apache-flink`` release that ``msewatch local
flink start`` runs: apache-beam 2.62 -> Flink 1.19 (1.19.3).

A jar a user passes (``--flink_job_server_jar``) is checked by
:func:`check_same_release`: its Beam version (``org/apache/beam/sdk/sdk.properties``
in the jar, or in the ``beam-sdks-java-core`` jar of its ``Class-Path``) must be the
SDK's.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import re
import zipfile
from pathlib import Path

from msewatch.runners.cache import DownloadError, cache_dir, install_into, require_tool, run_step

POM = Path(__file__).with_name("java") / "pom.xml"
JOB_SERVER_MAIN = "org.apache.beam.runners.flink.FlinkJobServerDriver"
EXPANSION_SERVICE_MAIN = "org.apache.beam.sdk.expansion.service.ExpansionService"
# Flink minor -> the apache-flink release on PyPI that the local cluster runs.
FLINK_RELEASES = {"1.17": "1.17.2", "1.18": "1.18.1", "1.19": "1.19.3", "1.20": "1.20.3"}
# The Beam release whose whole Flink stack Maven Central serves (see the README, Runners).
MATCHED_STACK = "pip install -e . -c runners/flink-constraints.txt (apache-beam 2.62.0)"
_SDK_PROPERTIES = "org/apache/beam/sdk/sdk.properties"
# the installed Python SDK (read from its metadata: importing apache_beam takes seconds,
# and `msewatch local` and `msewatch --help` need only the number)
SDK_VERSION = importlib.metadata.version("apache-beam")


def flink_minor(published: list[str] | None = None) -> str:
    """The newest Flink ``MAJOR.MINOR`` the installed Beam runs on and msewatch can start."""
    if not published:
        from apache_beam.options.pipeline_options import FlinkRunnerOptions

        published = list(FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS)
    known = [v for v in published if v in FLINK_RELEASES]
    if not known:
        raise ValueError(
            f"apache-beam {SDK_VERSION} publishes Flink runners for {', '.join(published)}, "
            f"none of which msewatch knows a Flink release of; {MATCHED_STACK}"
        )
    return max(known, key=lambda v: tuple(int(p) for p in v.split(".")))


def flink_release(minor: str | None = None) -> str:
    """The full Flink release (``1.19.3``) for ``minor`` (default :func:`flink_minor`)."""
    minor = minor or flink_minor()
    if minor not in FLINK_RELEASES:
        raise ValueError(f"msewatch knows Flink {', '.join(FLINK_RELEASES)}; not {minor}")
    return FLINK_RELEASES[minor]


def beam_java_libs(flink: str, beam_version: str = SDK_VERSION) -> Path:
    """The folder of Beam's Java jars for ``beam_version`` on Flink ``flink`` (a minor).

    Raises:
        DownloadError: Maven is missing, or Maven Central does not serve that release
            (the message says which Beam release to install instead).
    """

    def fill(tmp: Path) -> None:
        mvn = require_tool("mvn", "Beam's Flink job server jars come from Maven Central")
        try:
            run_step(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(POM),
                    f"-Dbeam.version={beam_version}",
                    f"-Dflink.minor={flink}",
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={tmp / 'lib'}",
                ],
                f"resolving Beam {beam_version}'s Flink {flink} job server and expansion "
                "service from Maven Central",
            )
        except DownloadError as err:
            raise DownloadError(
                f"{err}; the jars of apache-beam {beam_version} are not all served: "
                f"install the matched stack, {MATCHED_STACK}"
            ) from None

    root = cache_dir() / "beam-java" / beam_version / f"flink-{flink}"
    return install_into(root, fill) / "lib"


def manifest_jar(libs: Path, main_class: str, name: str) -> Path:
    """``libs/../NAME.jar``: a manifest only, ``Main-Class`` and ``Class-Path: lib/*.jar``.

    ``java -jar`` ignores ``-cp``, and Beam starts its services with ``java -jar``;
    Class-Path entries are relative to the jar, so it sits beside ``lib``.
    """
    path = libs.parent / f"{name}.jar"
    if path.is_file():
        return path
    jars = sorted(p.name for p in libs.glob("*.jar"))
    manifest = "Manifest-Version: 1.0\n" + f"Main-Class: {main_class}\n"
    manifest += "Class-Path: " + "\n  ".join(f"{libs.name}/{j}" for j in jars) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with zipfile.ZipFile(tmp, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", manifest)
    os.replace(tmp, path)
    return path


def job_server_jar(flink: str) -> str:
    """Beam's Flink job server for the installed SDK and Flink ``flink``, as a jar path.

    Raises:
        DownloadError: as :func:`beam_java_libs`.
    """
    return str(manifest_jar(beam_java_libs(flink), JOB_SERVER_MAIN, "flink-job-server"))


def expansion_service_jar(flink: str | None = None) -> str:
    """Beam's expansion service with KafkaIO, for the installed SDK, as a jar path.

    Raises:
        DownloadError: as :func:`beam_java_libs`.
    """
    libs = beam_java_libs(flink or flink_minor())
    return str(manifest_jar(libs, EXPANSION_SERVICE_MAIN, "expansion-service"))


def _version_in(jar: zipfile.ZipFile) -> str | None:
    try:
        text = jar.read(_SDK_PROPERTIES).decode(errors="replace")
    except KeyError:
        return None
    match = re.search(r"^version\s*=\s*(\S+)", text, re.MULTILINE)
    return match.group(1) if match else None


def jar_beam_version(path: str) -> str | None:
    """The Beam release a job server or expansion service jar was built from, or None."""
    try:
        with zipfile.ZipFile(path) as jar:
            found = _version_in(jar)
            if found:
                return found
            manifest = jar.read("META-INF/MANIFEST.MF").decode(errors="replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    class_path = re.search(r"^Class-Path: (.*(?:\n .*)*)", manifest, re.MULTILINE)
    entries = class_path.group(1).replace("\n ", "").split() if class_path else []
    for entry in entries:
        if "beam-sdks-java-core" in os.path.basename(entry):
            core = Path(path).parent / entry
            try:
                with zipfile.ZipFile(io.BytesIO(core.read_bytes())) as jar:
                    return _version_in(jar)
            except (OSError, zipfile.BadZipFile):
                return None
    return None


def check_same_release(path: str, what: str) -> None:
    """Refuses a Java service jar of another Beam release than the SDK's.

    Raises:
        ValueError: one line, naming both versions and what to install.
    """
    found = jar_beam_version(path)
    if found is None:
        raise ValueError(
            f"{what} {path} does not say which Beam release it is (no {_SDK_PROPERTIES}); "
            f"pass a jar of apache-beam {SDK_VERSION} or leave the option out"
        )
    if found != SDK_VERSION:
        raise ValueError(
            f"{what} {path} is Beam {found} but the Python SDK is apache-beam {SDK_VERSION}: "
            f"they must be one release; pip install 'apache-beam[gcp]=={found}' or pass the "
            f"jar of {SDK_VERSION} (leave the option out to resolve it from Maven Central)"
        )
