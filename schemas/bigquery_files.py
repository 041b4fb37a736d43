"""BigQuery table definitions of msewatch, as files: ``schemas/bigquery/``.

* ``metrics.json``, ``dead_letter.json``, ``outcomes.json``: the BigQuery JSON schema
  of each output table (the format ``bq mk --schema`` and ``bq load --schema`` take),
  generated from the field lists in :mod:`msewatch.schemas.records`, the same lists
  the Parquet schemas come from. Never edit them by hand: change the field list and
  run ``python -m msewatch.schemas.bigquery_files`` (``--check`` only compares).
* The view ``metrics_latest`` is ``schemas/queries/bigquery/metrics_latest.sql``,
  shared with the named BigQuery queries (see :func:`view_sql`).

The table layout that the files cannot carry (``metrics`` is day-partitioned on
``window_start`` and clustered on ``slice``) is :data:`TABLE_LAYOUT`; the sink module
:mod:`msewatch.transforms.io.bigquery` creates the tables and the view from all of this.
All timestamps are UTC.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import pathlib
import re
import sys

from msewatch.schemas.records import (
    DEAD_LETTER_FIELDS,
    METRICS_FIELDS,
    OUTCOMES_FIELDS,
    bigquery_schema,
)
from msewatch.schemas.slo import ALERTS_FIELDS, COMPARISONS_FIELDS, SLO_STATUS_FIELDS

TABLES: dict[str, tuple] = {
    "metrics": METRICS_FIELDS,
    "dead_letter": DEAD_LETTER_FIELDS,
    "outcomes": OUTCOMES_FIELDS,
    "alerts": ALERTS_FIELDS,
    "slo_status": SLO_STATUS_FIELDS,
    "comparisons": COMPARISONS_FIELDS,
}
"""Output table name -> its field list (``alerts``, ``slo_status``, ``comparisons``: runs
with --slo)."""

TABLE_LAYOUT: dict[str, dict] = {
    "metrics": {"partition_day_field": "window_start", "clustering_fields": ["slice"]},
    "alerts": {"partition_day_field": "frontier", "clustering_fields": ["slo", "slice"]},
    "slo_status": {"partition_day_field": "frontier", "clustering_fields": ["slo", "slice"]},
    "comparisons": {
        "partition_day_field": "frontier",
        "clustering_fields": ["comparison", "slice"],
    },
}
"""Per-table partitioning (DAY, on a TIMESTAMP column) and clustering; absent: neither."""

OUTPUT_SCHEME = "bq://"
"""``--output bq://PROJECT.DATASET`` selects BigQuery (see :func:`parse_output_url`)."""
VIEW_NAME = "metrics_latest"
VIEW_FILE = VIEW_NAME + ".sql"
SCHEMA_DIR = pathlib.Path(__file__).resolve().parent / "bigquery"
"""Where the committed files live (inside the package)."""

# matched whole (fullmatch: with "$", "ds\n" would pass as "ds")
_PROJECT_RE = re.compile(r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
_DATASET_RE = re.compile(r"[A-Za-z0-9_]{1,1024}")


def schema_file_name(table: str) -> str:
    """File name of ``table``'s JSON schema."""
    return f"{table}.json"


def schema_text(table: str) -> str:
    """The JSON schema of ``table`` exactly as it is written to its file."""
    return json.dumps(bigquery_schema(TABLES[table]), indent=2) + "\n"


def write_schema_files(directory) -> list[pathlib.Path]:
    """Writes one ``<table>.json`` per output table into ``directory``.

    Args:
        directory: target folder (created if missing).

    Returns:
        The paths written, in :data:`TABLES` order.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in TABLES:
        path = directory / schema_file_name(table)
        path.write_text(schema_text(table), encoding="utf-8")
        paths.append(path)
    return paths


def stale_schema_files(directory) -> list[str]:
    """Names of the schema files in ``directory`` that are missing or out of date."""
    directory = pathlib.Path(directory)
    stale = []
    for table in TABLES:
        path = directory / schema_file_name(table)
        if not path.is_file() or path.read_text(encoding="utf-8") != schema_text(table):
            stale.append(path.name)
    return stale


def check_names(project: str, dataset: str) -> None:
    """Validates a BigQuery project id and dataset id.

    Raises:
        ValueError: either is malformed; the message gives the allowed form.
    """
    if not _PROJECT_RE.fullmatch(project or ""):
        raise ValueError(
            f"bad BigQuery project id {project!r}: 6-30 lowercase letters, digits and "
            "hyphens, starting with a letter (optionally 'domain:' first)"
        )
    if not _DATASET_RE.fullmatch(dataset or ""):
        raise ValueError(
            f"bad BigQuery dataset id {dataset!r}: letters, digits and underscores only"
        )


def parse_output_url(output: str) -> tuple[str, str] | None:
    """``bq://PROJECT.DATASET`` -> ``(project, dataset)``; ``None`` for other outputs.

    A domain-scoped project (``bq://example.com:proj.dataset``) is accepted.

    Raises:
        ValueError: ``output`` starts with ``bq://`` but is not a valid
            ``bq://PROJECT.DATASET``.
    """
    if not output.startswith(OUTPUT_SCHEME):
        return None
    project, dot, dataset = output[len(OUTPUT_SCHEME) :].rstrip("/").rpartition(".")
    if not dot:
        raise ValueError(f"bad BigQuery output {output!r}: expected bq://PROJECT.DATASET")
    check_names(project, dataset)
    return project, dataset


def view_sql(project: str, dataset: str) -> str:
    """The SELECT of view ``metrics_latest`` for ``project.dataset``.

    Raises:
        ValueError: the project or dataset id is malformed (they go into SQL text).
    """
    check_names(project, dataset)
    text = importlib.resources.files(__package__).joinpath("queries", "bigquery", VIEW_FILE)
    sql = text.read_text(encoding="utf-8").strip().rstrip(";")
    return sql.replace("{dataset}", f"{project}.{dataset}")


def main(argv=None) -> int:
    """``python -m msewatch.schemas.bigquery_files [--check] [DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m msewatch.schemas.bigquery_files",
        description="Write the BigQuery JSON schema files generated from the field lists.",
    )
    parser.add_argument("directory", nargs="?", default=str(SCHEMA_DIR))
    parser.add_argument(
        "--check", action="store_true", help="only compare; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_schema_files(args.directory)
        if stale:
            print(
                f"stale BigQuery schema files in {args.directory}: {', '.join(stale)}; "
                "run python -m msewatch.schemas.bigquery_files",
                file=sys.stderr,
            )
            return 1
        return 0
    for path in write_schema_files(args.directory):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
