"""print the latest decision of every comparison and slice: is the candidate worse?

This is ``msewatch compare OUTPUT [--comparison NAME] [--exit-code]``. It reads the
``comparisons`` table of a run whose SLO file has ``comparisons:`` (the named query
``comparisons`` of :mod:`msewatch.schemas.queries`: the row with the newest
frontier, then the newest ``emitted_at``, per comparison and slice) and prints, per
comparison, one line per slice::

    v2-rollout: v2 vs v1 in mse, margin +5%, 95% always-valid bounds
      FAIL          region=eu   +31.2% [+18.0%, +44.3%]  paired  1210 pairs  frontier ...

``--exit-code`` makes it a rollout gate: exit status 1 when any latest decision is
FAIL (0 otherwise, 2 on a user mistake). ``docs/slo.md`` (Comparisons) explains the
numbers.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd

from msewatch.commands import query, terminal

EXIT_FAIL, EXIT_USAGE = 1, 2
_ORDER = {"FAIL": 0, "INCONCLUSIVE": 1, "PASS": 2}


def latest(output_dir: str, comparison: str | None = None) -> pd.DataFrame:
    """The latest row per comparison and slice (the named query ``comparisons``).

    Raises:
        query.QueryError: OUTPUT cannot be read, or has no comparisons table.
    """
    if not os.path.isdir(os.path.join(output_dir, "comparisons")):
        raise query.QueryError(
            f"{output_dir} has no comparisons table: run msewatch run with --slo FILE "
            "whose file has comparisons: (docs/slo.md)"
        )
    frame = query.query(output_dir, "comparisons")
    if comparison is not None:
        if comparison not in set(frame["comparison"]):
            known = ", ".join(sorted(set(frame["comparison"]))) or "none"
            raise query.QueryError(f"no comparison named {comparison!r}; the table has {known}")
        frame = frame[frame["comparison"] == comparison]
    return frame


def _pct(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x:+.1%}"


def render(frame: pd.DataFrame) -> list[str]:
    """The lines a person reads: a header per comparison, one line per slice (control
    characters in names escaped: :func:`msewatch.commands.terminal.escape`)."""
    frame = frame.map(terminal.escape)
    lines = []
    for name, rows in frame.groupby("comparison", sort=True):
        first = rows.iloc[0]
        lines.append(
            f"{name}: {first['candidate']} vs {first['baseline']} in {first['metric']}, "
            f"FAIL beyond {first['margin']:+.0%}, {1 - first['alpha']:.0%} always-valid bounds "
            "of the relative difference"
        )
        rows = rows.assign(_rank=rows["decision"].map(_ORDER)).sort_values(["_rank", "slice"])
        width = max(len(s) for s in rows["slice"])
        for _, r in rows.iterrows():
            counts = (
                f"{r['n_candidate']} pairs"
                if r["paired"]
                else f"{r['n_candidate']} vs {r['n_baseline']} scored"
            )
            lines.append(
                f"  {r['decision']:<12}  {r['slice']:<{width}}  {_pct(r['change']):>7} "
                f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]  "
                f"{'paired' if r['paired'] else 'unpaired'}  {counts}  "
                f"p={r['p_value']:.3g}  frontier {r['frontier']:%Y-%m-%d %H:%M} UTC"
            )
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``msewatch compare`` arguments to ``parser``."""
    parser.add_argument("output", metavar="OUTPUT", help="the --output folder of `msewatch run`")
    parser.add_argument("--comparison", metavar="NAME", help="only this comparison")
    parser.add_argument(
        "--exit-code",
        action="store_true",
        help="exit with status 1 when any latest decision is FAIL (a rollout gate)",
    )


def run(args: argparse.Namespace) -> int:
    """Runs ``msewatch compare``; returns the exit code."""
    try:
        frame = latest(args.output, args.comparison)
    except query.QueryError as error:
        print(f"msewatch compare: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if frame.empty:
        print("no comparison has been evaluated yet (no window passed the label gate)")
        return 0
    print("\n".join(render(frame)))
    failed = bool((frame["decision"] == "FAIL").any())
    return EXIT_FAIL if failed and args.exit_code else 0
