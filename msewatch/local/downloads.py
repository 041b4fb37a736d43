"""What the local clusters run, fetched once into a cache through the usual clients.

The cache is ``$MSEWATCH_CACHE``, or ``~/.cache/msewatch``:

* ``flink/1.20.3/pyflink``: a Flink distribution (``bin/jobmanager.sh``,
  ``bin/taskmanager.sh``, ``lib/flink-dist-*.jar`` with RocksDB, ``conf/config.yaml``)
  from PyPI's ``apache-flink`` and ``apache-flink-libraries``. Both pin an old
  apache-beam, so they are installed with ``pip install --no-deps --target``, never
  into msewatch's environment.
* ``kafka/4.1.1/libs``: ``org.apache.kafka:kafka_2.13`` and its runtime
  dependencies from Maven Central (``mvn dependency:copy-dependencies``).
* ``prism/<beam version>/prism``: Beam's Prism runner, built by ``go install``.

Each is installed into a temporary folder beside its place and renamed into it when
complete, so an interrupted download leaves nothing that looks installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLINK_VERSION = "1.20.3"
KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"

_KAFKA_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.msewatch</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


class DownloadError(RuntimeError):
    """A download or build failed; the message says what to install or check."""


def cache_dir() -> Path:
    """``$MSEWATCH_CACHE``, or ``~/.cache/msewatch``."""
    return Path(os.environ.get("MSEWATCH_CACHE") or Path.home() / ".cache" / "msewatch")


def require_tool(name: str, what: str) -> str:
    """The path of ``name`` on PATH.

    Raises:
        DownloadError: missing; ``what`` says what needs it and how to get it.
    """
    path = shutil.which(name)
    if path is None:
        raise DownloadError(f"`{name}` is not on PATH: {what}")
    return path


def _run(cmd: list[str], what: str, cwd: Path | None = None, env: dict | None = None) -> None:
    print(f"msewatch: {what} ...", file=sys.stderr)
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise DownloadError(f"{what} failed ({' | '.join(last)})")


def _install_into(final: Path, fill) -> Path:
    """Calls ``fill(tmp)`` and renames ``tmp`` to ``final``."""
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        fill(tmp)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def flink_home() -> Path:
    """The cached Flink distribution (its ``bin``, ``lib``, ``conf``), installed if missing.

    Raises:
        DownloadError: pip failed.
    """

    def fill(tmp: Path) -> None:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(tmp),
                f"apache-flink=={FLINK_VERSION}",
                f"apache-flink-libraries=={FLINK_VERSION}",
            ],
            f"downloading Flink {FLINK_VERSION} from PyPI into {tmp.parent}",
        )

    home = _install_into(cache_dir() / "flink" / FLINK_VERSION, fill) / "pyflink"
    if not (home / "bin" / "jobmanager.sh").is_file():
        raise DownloadError(f"{home} lacks bin/jobmanager.sh: delete {home.parent} and retry")
    return home


def kafka_libs() -> Path:
    """The cached folder of Kafka's broker jars, fetched with Maven if missing.

    Raises:
        DownloadError: Maven is missing or failed.
    """

    def fill(tmp: Path) -> None:
        mvn = require_tool("mvn", "Kafka's jars come from Maven Central through Maven")
        (tmp / "pom.xml").write_text(_KAFKA_POM.format(scala=SCALA_VERSION, version=KAFKA_VERSION))
        _run(
            [
                mvn,
                "-B",
                "-q",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={tmp / 'libs'}",
            ],
            f"downloading Kafka {KAFKA_VERSION} (kafka_{SCALA_VERSION}) from Maven Central",
            cwd=tmp,
        )

    return _install_into(cache_dir() / "kafka" / KAFKA_VERSION, fill) / "libs"


def prism_binary(beam_version: str | None = None) -> Path:
    """Beam's Prism runner for ``beam_version`` (default: the installed SDK's), built
    with ``go install github.com/apache/beam/sdks/v2/go/cmd/prism@v<version>``.

    Raises:
        DownloadError: Go is missing or the build failed.
    """
    if beam_version is None:
        from apache_beam.version import __version__ as beam_version

    def fill(tmp: Path) -> None:
        go = require_tool("go", "Prism is built from Beam's Go module with `go install`")
        env = {**os.environ, "GOBIN": str(tmp)}
        _run(
            [go, "install", f"github.com/apache/beam/sdks/v2/go/cmd/prism@v{beam_version}"],
            f"building Beam's Prism runner {beam_version} with go install",
            env=env,
        )

    return _install_into(cache_dir() / "prism" / beam_version, fill) / "prism"
