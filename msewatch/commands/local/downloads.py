"""What the local clusters run, fetched once into a cache through the usual clients.

The cache is ``$MSEWATCH_CACHE``, or ``~/.cache/msewatch``:

* ``flink/<version>/pyflink``: a Flink distribution (``bin/jobmanager.sh``,
  ``bin/taskmanager.sh``, ``lib/flink-dist-*.jar`` with RocksDB, ``conf/config.yaml``)
  of the release the installed Beam's Flink runner was built for
  (:func:`msewatch.runners.java_services.flink_release`), from PyPI's
  ``apache-flink`` and ``apache-flink-libraries``. Both pin an old apache-beam, so
  they are installed with ``pip install --no-deps --target``, never
  into msewatch's environment.
* ``kafka/4.1.1/libs``: ``org.apache.kafka:kafka_2.13`` and its runtime
  dependencies from Maven Central (``mvn dependency:copy-dependencies``).

Each is installed by :func:`msewatch.runners.cache.install_into` (complete or absent).
"""

from __future__ import annotations

import sys
from pathlib import Path

from msewatch.runners.cache import (  # noqa: F401 (DownloadError, cache_dir: this module's API)
    DownloadError,
    cache_dir,
    install_into,
    require_tool,
    run_step,
)

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


def flink_home(version: str) -> Path:
    """The cached Flink ``version`` distribution (its ``bin``, ``lib``, ``conf``),
    installed if missing.

    Raises:
        DownloadError: pip failed.
    """

    def fill(tmp: Path) -> None:
        run_step(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(tmp),
                f"apache-flink=={version}",
                f"apache-flink-libraries=={version}",
            ],
            f"downloading Flink {version} from PyPI into {tmp.parent}",
        )

    home = install_into(cache_dir() / "flink" / version, fill) / "pyflink"
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
        run_step(
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

    return install_into(cache_dir() / "kafka" / KAFKA_VERSION, fill) / "libs"
