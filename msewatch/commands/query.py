"""query the output tables: named queries or SQL, with DuckDB over the Parquet files

This is ``msewatch query``.

Reads the layout ``msewatch run --output OUTPUT`` writes:

* ``OUTPUT/metrics/window_date=YYYY-MM-DD/*.parquet``: the ``metrics`` table, one row
  per (window, slice, pane). Required.
* ``OUTPUT/dead_letter/*.parquet`` (or one Hive partition level below): the ``dead_letter``
  table. May be absent: the view is then empty, with the same columns.
* ``OUTPUT/outcomes/*.parquet``: the ``outcomes`` table (may be absent, as dead_letter).

Registers the views ``metrics``, ``dead_letter``, ``outcomes`` (exactly the columns of
``METRICS_FIELDS`` / ``DEAD_LETTER_FIELDS`` / ``OUTCOMES_FIELDS``) and ``metrics_latest``
(latest pane per window and slice), then runs a named query from :mod:`msewatch.schemas.queries` or
the user's SQL. The session time zone is UTC, so timestamps print in UTC.

The tables are read from the committed snapshot (:func:`msewatch.schemas.layout.resolve`),
once per connection. A file that lacks its table's columns is refused, naming it (and
the msewatch version that wrote the folder, from its manifest). After the views are
made the connection reads the table files and nothing else (external access off but
for them, configuration locked), and ``--sql`` runs queries only.

User mistakes (missing folder, unknown query name, bad SQL) raise :class:`QueryError`
from :func:`query`; :func:`run` prints them as one line on stderr and returns 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from msewatch import __version__
from msewatch.commands import terminal
from msewatch.schemas import layout, queries, records
from msewatch.schemas.slo import ALERTS_FIELDS, COMPARISONS_FIELDS, SLO_STATUS_FIELDS

if TYPE_CHECKING:
    import duckdb

FORMATS = ("table", "csv", "json")
DEFAULT_SLICE = "overall"
EXIT_USAGE = 2
METRICS_PATTERNS = ("metrics/window_date=*/*.parquet",)
DEAD_LETTER_PATTERNS = ("dead_letter/*.parquet", "dead_letter/*=*/*.parquet")

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "large_string": "VARCHAR",
    "int64": "BIGINT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "binary": "BLOB",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
}


class QueryError(Exception):
    """A user mistake: the message says what was wrong and what to do."""


class NoMetricsError(QueryError):
    """The output folder does not exist or holds no ``metrics`` table (yet)."""


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parquet_source(patterns: list[Path], fields) -> str:
    # can_have_nan: Parquet min/max statistics leave NaN out, and DuckDB by default
    # trusts them, so `isnan(rmse)` or `rmse > x` would skip the NaN (empty) metrics.
    columns = ", ".join(f'"{f.name}"' for f in fields)
    paths = ", ".join(_sql_string(str(p)) for p in patterns)
    return (
        f"SELECT {columns} FROM read_parquet([{paths}], "
        "union_by_name = true, hive_partitioning = false, can_have_nan = true)"
    )


def _duckdb_type(arrow_type) -> str:
    """The DuckDB type of an output column's Arrow type (lists of structs included)."""
    if isinstance(arrow_type, pa.ListType):
        return _duckdb_type(arrow_type.value_type) + "[]"
    if isinstance(arrow_type, pa.StructType):
        members = ", ".join(f'"{m.name}" {_duckdb_type(m.type)}' for m in arrow_type)
        return f"STRUCT({members})"
    return _DUCKDB_TYPES[str(arrow_type)]


def _empty_source(fields) -> str:
    columns = ", ".join(f'CAST(NULL AS {_duckdb_type(f.arrow_type)}) AS "{f.name}"' for f in fields)
    return f"SELECT {columns} WHERE false"


def _existing(out: Path, patterns: tuple[str, ...]) -> list[Path]:
    """The files under ``out`` that match the patterns, as absolute paths.

    Only ``patterns`` are globbed, never ``out`` itself: an output folder named
    ``out[1]`` is a name, not a character class. DuckDB gets the file list.
    """
    root = out.resolve()
    return sorted({f for p in patterns for f in root.glob(p)})


def connect(output_dir: str | Path) -> duckdb.DuckDBPyConnection:
    """Opens an in-memory DuckDB with the output tables registered as views.

    Args:
        output_dir: the ``--output`` folder of ``msewatch run``.

    Returns:
        A connection with views ``metrics``, ``metrics_latest``, ``dead_letter`` and
        ``outcomes`` (and the SLO tables).

    Raises:
        NoMetricsError: the folder does not exist or holds no metrics Parquet files.
        QueryError: a file cannot be read as the table it should be.
    """
    out = Path(output_dir)
    if not out.is_dir():
        what = "is a file, not a folder" if out.exists() else "does not exist"
        raise NoMetricsError(f"output folder {out} {what}; pass the --output of `msewatch run`")
    tables = layout.resolve(out)  # one commit's tables, read whole
    metrics = _existing(tables, METRICS_PATTERNS)
    if not metrics:
        raise NoMetricsError(
            f"no metrics table in {out}: no files match metrics/window_date=*/*.parquet; "
            "pass the --output folder of a finished `msewatch run`"
        )
    sources = {
        "metrics": (metrics, records.METRICS_FIELDS),
        "dead_letter": (_existing(tables, DEAD_LETTER_PATTERNS), records.DEAD_LETTER_FIELDS),
        "outcomes": (_existing(tables, ("outcomes/*.parquet",)), records.OUTCOMES_FIELDS),
        **{
            table: (_existing(tables, (f"{table}/*.parquet",)), fields)
            for table, fields in (
                ("alerts", ALERTS_FIELDS),
                ("slo_status", SLO_STATUS_FIELDS),
                ("comparisons", COMPARISONS_FIELDS),
            )
        },
    }
    import duckdb  # here, not at import: `msewatch run` loads this module for its options

    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        _check_columns(con, out, tables, sources)
        for table, (files, fields) in sources.items():
            source = _parquet_source(files, fields) if files else _empty_source(fields)
            con.execute(f"CREATE VIEW {table} AS {source}")
        for view in queries.VIEW_NAMES:
            con.execute(f"CREATE VIEW {view} AS {queries.load_query('duckdb', view)}")
        _lock_down(con, [f for files, _ in sources.values() for f in files])
    except duckdb.Error as error:  # a damaged file
        con.close()
        raise QueryError(f"cannot read the tables in {out}: {_one_line(error)}") from None
    except QueryError:
        con.close()
        raise
    return con


def _lock_down(con, files: list[Path]) -> None:
    """From here on the connection reads the tables' files and nothing else.

    DuckDB's own safeguards: no file system access except the table files (read
    through the views), no extensions, and the configuration locked so SQL cannot undo
    it. (A table file could still be overwritten by ``COPY``: :func:`query` runs
    read-only statements only.)
    """
    con.execute("SET allowed_paths = ?", [[str(f) for f in files]])
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


def _check_columns(con, out: Path, tables: Path, sources) -> None:
    """Refuses a file that lacks columns of its table (a foreign file, or an older msewatch's).

    Raises:
        QueryError: naming the file, the missing columns and what to do.
    """
    for table, (files, fields) in sources.items():
        if not files:
            continue
        rows = con.execute(
            "SELECT file_name, list(name) FROM parquet_schema(?) GROUP BY file_name",
            [[str(f) for f in files]],
        ).fetchall()
        wanted = [f.name for f in fields]
        for file_name, names in sorted(rows):
            missing = [n for n in wanted if n not in set(names)]
            if missing:
                foreign = len(missing) > len(wanted) // 2  # an older msewatch lacks a few
                raise QueryError(_missing_columns(out, tables, table, file_name, missing, foreign))


def _missing_columns(out: Path, tables: Path, table: str, file_name: str, missing, foreign) -> str:
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    where = f"{file_name} lacks the {table} columns {shown}"
    written_by = layout.manifest(tables).get("msewatch_version")
    if foreign or written_by == __version__:  # not a file any msewatch wrote
        return f"{where}: it is not a file msewatch wrote; move it out of {out}"
    return (
        f"{where}: {out} was written by msewatch {written_by or 'older than this one'}, "
        f"this is msewatch {__version__}; rerun `msewatch run` into it to rewrite the "
        "tables, or read them with the msewatch that wrote them"
    )


def _one_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def query(
    output_dir: str | Path,
    name: str | None = None,
    sql: str | None = None,
    *,
    limit: int | None = None,
    **params: str,
) -> pd.DataFrame:
    """Runs a named query or SQL over the output tables.

    Args:
        output_dir: the ``--output`` folder of ``msewatch run``.
        name: a named query (:data:`msewatch.schemas.queries.QUERY_NAMES`).
        sql: DuckDB SQL over ``metrics``, ``metrics_latest`` and ``dead_letter``;
            exactly one of ``name`` and ``sql`` is given.
        limit: keep at most this many rows (in the query's order).
        **params: values of the query's ``$name`` parameters, e.g. ``slice="region=eu"``.
            ``slice`` defaults to ``"overall"``; parameters the SQL does not use are
            ignored.

    Returns:
        The result; timestamps are timezone-aware UTC, empty metrics are NaN.

    Raises:
        QueryError: a user mistake (see :func:`connect`), an unknown name, both or
            neither of ``name`` and ``sql``, or SQL that DuckDB rejects.
    """
    if (name is None) == (sql is None):
        raise QueryError(
            "give a query name or --sql (not both); named queries: "
            + ", ".join(queries.QUERY_NAMES)
        )
    if name is not None:
        if name not in queries.QUERY_NAMES:
            raise QueryError(
                f"unknown query {name!r}; choose one of {', '.join(queries.QUERY_NAMES)} or --sql"
            )
        sql = queries.load_query("duckdb", name)
    if limit is not None and limit < 0:
        raise QueryError(f"--limit must be >= 0, got {limit}")
    import duckdb

    values = {"slice": DEFAULT_SLICE, **{k: v for k, v in params.items() if v is not None}}
    used = queries.query_params("duckdb", sql)
    con = connect(output_dir)
    try:
        _check_read_only(con, sql)
        relation = con.sql(sql, params={k: values[k] for k in used if k in values} or None)
        if relation is None:
            return pd.DataFrame()
        if limit is not None:
            relation = relation.limit(limit)
        return relation.df()
    except duckdb.Error as error:
        raise QueryError(_one_line(error)) from None
    finally:
        con.close()


_READ_ONLY = ("SELECT", "EXPLAIN")


def _check_read_only(con, sql: str) -> None:
    """Refuses statements other than queries (COPY, ATTACH, INSERT, SET, PRAGMA, ...).

    Raises:
        QueryError: naming the refused statement.
    """
    for statement in con.extract_statements(sql):
        kind = statement.type.name
        if kind not in _READ_ONLY:
            raise QueryError(
                f"--sql runs queries only (SELECT, WITH, FROM, DESCRIBE, SUMMARIZE, EXPLAIN); "
                f"the {kind} statement is refused"
            )


def format_frame(frame: pd.DataFrame, fmt: str) -> str:
    """Renders a result as an aligned text table, CSV, or a JSON array of objects.

    The table is for a terminal: control characters in values are escaped
    (:func:`msewatch.commands.terminal.escape`); CSV and JSON carry the values as they are.
    """
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return frame.to_json(orient="records", date_format="iso", date_unit="s", indent=1) + "\n"
    frame = frame.rename(columns=terminal.escape).map(terminal.escape)
    if frame.empty:
        return ("  ".join(map(str, frame.columns)) + "\n(0 rows)\n") if len(frame.columns) else ""
    return frame.to_string(index=False) + f"\n({len(frame)} rows)\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``msewatch query`` arguments to ``parser``."""
    names = "; ".join(f"{n}: {d}" for n, d in queries.QUERY_DESCRIPTIONS.items())
    parser.add_argument("output", metavar="OUTPUT", help="the --output folder of `msewatch run`")
    parser.add_argument("name", metavar="NAME", nargs="?", help=f"a named query ({names})")
    parser.add_argument(
        "--sql",
        help="a DuckDB query (SELECT/WITH/DESCRIBE; it reads the tables and nothing else) over "
        "the views metrics, metrics_latest and dead_letter, instead of NAME",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
    parser.add_argument(
        "--slice",
        default=DEFAULT_SLICE,
        help="slice for trend and coverage (and $slice in --sql), e.g. region=eu",
    )
    parser.add_argument("--limit", type=int, default=None, help="print at most N rows")


def run(args: argparse.Namespace) -> int:
    """Runs ``msewatch query``; returns the exit code (0, or 2 on a user mistake)."""
    try:
        frame = query(args.output, args.name, args.sql, limit=args.limit, slice=args.slice)
    except QueryError as error:
        print(f"msewatch query: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(format_frame(frame, args.format))
    if args.format == "table" and frame.empty and _no_windows(args.output):
        print(NO_WINDOWS)
    return 0


NO_WINDOWS = "no windows yet: the metrics table has no rows (no valid prediction; see dead_letter)"


def _no_windows(output_dir) -> bool:
    """True when the run finished without any metrics row (every prediction invalid)."""
    return int(query(output_dir, sql="SELECT count(*) AS n FROM metrics")["n"].iloc[0]) == 0
