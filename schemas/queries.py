"""The named queries over the output tables, in DuckDB and BigQuery SQL.

Each query is written once, in BigQuery Standard SQL, in
``schemas/queries/bigquery/<name>.sql`` (a ``-`` in a query name is ``_`` in its file
name), so that a BigQuery user pastes the file into the console. The DuckDB text is
derived from it by sqlglot (:func:`load_query` with ``"duckdb"``): the bare table names
in place of ``{dataset}.``, ``$name`` parameters in place of ``@name``, the file's
leading comment kept. One source, so the two dialects cannot drift apart; that they
give the same rows is checked against the BigQuery emulator
(``tests/integration/test_bigquery.py``) and on a run's output
(``tests/e2e/test_query.py``).

Tables and views the queries read:

* ``metrics``, ``dead_letter`` and ``outcomes``: the output tables, columns exactly
  ``METRICS_FIELDS``, ``DEAD_LETTER_FIELDS`` and ``OUTCOMES_FIELDS`` (see
  :mod:`msewatch.schemas.records`).
* ``alerts``, ``slo_status`` and ``comparisons``: the SLO tables of a run with
  ``--slo``, columns ``ALERTS_FIELDS``, ``SLO_STATUS_FIELDS`` and ``COMPARISONS_FIELDS``
  (:mod:`msewatch.schemas.slo`); empty without an SLO file.
* ``metrics_latest``: a view, itself a query here (:data:`VIEW_NAMES`): the latest pane
  (highest ``pane_index``, then latest ``emitted_at``) per ``(window_start, window_end,
  slice)``. This view is the one definition of "latest pane": the named queries and the
  summary ``msewatch run`` prints (``msewatch/commands/summary.py``) read it.

Dialect differences:

* BigQuery files name tables as ``{dataset}.metrics`` inside backquotes; pass
  ``dataset="project.dataset"`` to :func:`load_query` to fill it in. Query parameters
  are ``@name`` (BigQuery named query parameters, type STRING).
* The derived DuckDB text names tables bare (``metrics``); the runner registers them as
  views over the Parquet files. Query parameters are ``$name``.

All times are UTC.
"""

from __future__ import annotations

import functools
import importlib.resources
import re

DIALECTS: tuple[str, ...] = ("duckdb", "bigquery")

QUERY_NAMES: tuple[str, ...] = (
    "latest",
    "worst",
    "trend",
    "coverage",
    "dead-letter",
    "alerts",
    "slo-status",
    "comparisons",
    "label_anomalies",
)
"""Named queries a user runs (``msewatch query OUTPUT NAME``)."""

VIEW_NAMES: tuple[str, ...] = ("metrics_latest",)
"""Views the named queries read; each is stored as the view's SELECT statement."""

QUERY_PARAMS: dict[str, tuple[str, ...]] = {"trend": ("slice",), "coverage": ("slice",)}
"""Parameters each named query takes (every parameter is a string)."""

QUERY_DESCRIPTIONS: dict[str, str] = {
    "latest": "latest pane per window and slice, newest windows first",
    "worst": "slices ranked by RMSE over the last day of complete windows, with CI and coverage",
    "trend": "RMSE per window for one slice (--slice), oldest first",
    "coverage": "label coverage and label-lag percentiles per window for one slice (--slice)",
    "dead-letter": "rejected records counted by source and reason, with an example",
    "alerts": "SLO alert transitions in event-time order (runs with --slo)",
    "comparisons": "latest decision per comparison and slice (runs with --slo and comparisons)",
    "slo-status": "latest state, budget and burn rates per SLO and slice (runs with --slo)",
    "label_anomalies": "windows and slices whose labels are out of range, NaN/inf, constant or "
    "off in scale, and the run's conflicting duplicate labels",
}

DATASET_PLACEHOLDER = "{dataset}"
SOURCE_DIALECT = "bigquery"
"""The dialect the query files are written in; the others are derived from it."""
_TABLE_RE = re.compile(r"`\{dataset\}\.([A-Za-z_][A-Za-z0-9_]*)`")
_DATASET_RE = re.compile(r"([A-Za-z0-9_.:-]+\.)?[A-Za-z0-9_]+")  # fullmatch: "ds\n" is not "ds"


def query_file_name(name: str) -> str:
    """File name (without folder) of query or view ``name``."""
    return name.replace("-", "_") + ".sql"


def load_query(dialect: str, name: str, *, dataset: str | None = None) -> str:
    """Returns the SQL text of a named query or view.

    Args:
        dialect: ``"duckdb"`` or ``"bigquery"``.
        name: one of :data:`QUERY_NAMES` or :data:`VIEW_NAMES`.
        dataset: BigQuery only: ``"project.dataset"`` (or ``"dataset"``) that replaces
            the ``{dataset}`` placeholder. Left in place when ``None``.

    Returns:
        The SQL, comments included, with no trailing semicolon.

    Raises:
        ValueError: the dialect or name is unknown, or ``dataset`` is given for DuckDB
            or is not a valid BigQuery dataset reference.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")
    if name not in QUERY_NAMES and name not in VIEW_NAMES:
        raise ValueError(
            f"unknown query {name!r}; choose one of {', '.join(QUERY_NAMES + VIEW_NAMES)}"
        )
    sql = _source(name) if dialect == SOURCE_DIALECT else _derived(dialect, name)
    if dataset is not None:
        if dialect != "bigquery":
            raise ValueError("dataset applies to BigQuery SQL only")
        if not _DATASET_RE.fullmatch(dataset):
            raise ValueError(
                f"bad BigQuery dataset {dataset!r}; expected project.dataset or dataset"
            )
        sql = sql.replace(DATASET_PLACEHOLDER, dataset)
    return sql


def _source(name: str) -> str:
    resource = importlib.resources.files(__package__).joinpath(
        "queries", SOURCE_DIALECT, query_file_name(name)
    )
    return resource.read_text(encoding="utf-8").strip().rstrip(";")


@functools.cache
def _derived(dialect: str, name: str) -> str:
    """The query in ``dialect``, translated by sqlglot from its BigQuery file: the leading
    comment block as it is written, then the translated statement (comments inside the
    statement are dropped; sqlglot would move them)."""
    import sqlglot  # only where a query is loaded: it costs 0.1-0.2 s to import

    source = _source(name)
    lines = source.splitlines()
    header = []
    while lines and lines[0].startswith("--"):
        header.append(lines.pop(0))
    body = "\n".join(line for line in lines if not line.lstrip().startswith("--"))
    body = _TABLE_RE.sub(r"\1", body)
    (sql,) = sqlglot.transpile(body, read=SOURCE_DIALECT, write=dialect, pretty=True)
    return "\n".join([*header, sql])


def query_params(dialect: str, sql: str) -> tuple[str, ...]:
    """Names of the query parameters (``$name`` / ``@name``) that ``sql`` uses, in order.

    Comments are skipped; a marker inside a string literal is not told apart.
    """
    marker = "$" if dialect == "duckdb" else "@"
    text = re.sub(r"--[^\n]*", "", sql)
    found = re.findall(re.escape(marker) + r"([A-Za-z_][A-Za-z0-9_]*)", text)
    return tuple(dict.fromkeys(found))
