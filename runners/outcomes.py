"""A finished run's bookkeeping: the outcome (conservation) table and ``summary.json``.

Outcome counts are read back from the ``outcomes`` table the pipeline wrote (rows are
deltas; totals are sums). Conservation: for each record type, ``input`` equals the
sum of its outcomes. The launcher (``runners/launch.py``) commits a run only when they
balance; ``msewatch run``'s printed summary (``msewatch/commands/summary.py``) shows them.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys

import duckdb

from msewatch.schemas import layout
from msewatch.schemas.records import RECORD_OUTCOMES


def _parquet(output_dir: str, table: str) -> list[str]:
    """The table's Parquet files; the folder name is escaped (``out[1]`` is a name)."""
    return sorted(glob.glob(os.path.join(glob.escape(output_dir), table, "*.parquet")))


def outcome_counts(output_dir: str) -> dict[str, dict[str, int]]:
    """The conservation table: ``{record_type: {"input": n, outcome: n, ...}}``."""
    sql = "SELECT record_type, outcome, SUM(count) FROM read_parquet(?) GROUP BY ALL"
    files = _parquet(output_dir, "outcomes")
    with duckdb.connect() as con:
        rows = con.execute(sql, [files]).fetchall() if files else []
    totals = {(r, o): int(n) for r, o, n in rows}
    return {
        record_type: {
            "input": totals.get((record_type, "input"), 0),
            **{o: totals.get((record_type, o), 0) for o in outcomes},
        }
        for record_type, outcomes in RECORD_OUTCOMES.items()
    }


DETAILS_SQL = """
SELECT record_type, outcome, detail, SUM(count) FROM read_parquet(?, union_by_name = true)
WHERE detail IS NOT NULL GROUP BY ALL ORDER BY ALL
"""


def outcome_details(output_dir: str) -> dict[str, dict[str, dict[str, int]]]:
    """The parts of outcomes the ``detail`` column names: ``{record_type: {outcome:
    {detail: n}}}``, e.g. ``{"label": {"duplicate": {"conflicting": 3}}}`` (a part of the
    outcome's count, not an outcome); empty when there are none."""
    files = _parquet(str(layout.resolve(output_dir)), "outcomes")  # a run's committed tables
    with duckdb.connect() as con:
        rows = con.execute(DETAILS_SQL, [files]).fetchall() if files else []
    out: dict = {}
    for record_type, outcome, detail, n in rows:
        out.setdefault(record_type, {}).setdefault(outcome, {})[detail] = int(n)
    return out


def outcomes_total(row: dict[str, int]) -> int:
    """The sum of one record type's outcomes (everything but its ``input``)."""
    return sum(v for k, v in row.items() if k != "input")


def balanced(table: dict[str, dict[str, int]]) -> bool:
    """True when every record type's outcomes add up to its input count."""
    return not unbalanced(table)


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if callable(value):
        return f"{value.__module__}.{value.__qualname__}"
    return value


def write(config, outcomes, path: str, details=None) -> None:
    """Writes ``summary.json`` (outcomes, their details (:func:`outcome_details`) and the
    config used) next to the tables."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    doc = {"outcomes": outcomes, "outcome_details": details or {}, "config": _jsonable(config)}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)


def unbalanced(outcomes) -> list[str]:
    """One sentence per record type whose outcomes do not add up to its input."""
    out = []
    for record_type, row in outcomes.items():
        total = outcomes_total(row)
        if total != row["input"]:
            missing = row["input"] - total
            what = f"{missing} without an outcome" if missing > 0 else f"{-missing} counted twice"
            out.append(f"{record_type}s: input {row['input']}, outcomes sum to {total} ({what})")
    return out


def check_conservation(outcomes) -> int:
    """Exit status of a finished run: 0, or 1 with one line on stderr per broken law."""
    problems = unbalanced(outcomes)
    for problem in problems:
        print(f"msewatch: error: conservation broken: {problem}", file=sys.stderr)
    return 1 if problems else 0


UNDELIVERED_SQL = """
SELECT count(*) FROM read_parquet(?, union_by_name = true) WHERE reason = 'alert_delivery_failed'
"""


def undelivered_alerts(output_dir: str) -> int:
    """Alerts not delivered (to Alertmanager, or as Pub/Sub messages): the ``dead_letter``
    rows with reason ``alert_delivery_failed``; 0 without tables."""
    files = _parquet(str(layout.resolve(output_dir)), "dead_letter")  # the committed tables
    with duckdb.connect() as con:
        return con.execute(UNDELIVERED_SQL, [files]).fetchone()[0] if files else 0


def check_delivered(output_dir: str) -> int:
    """Exit status for ``--fail-on-undelivered``: 0, or 1 with one line on stderr."""
    n = undelivered_alerts(output_dir)
    if n:
        print(
            f"msewatch: error: {n} alert deliveries failed (--fail-on-undelivered); the "
            f"reasons: msewatch query {output_dir} dead_letter",
            file=sys.stderr,
        )
    return 1 if n else 0
