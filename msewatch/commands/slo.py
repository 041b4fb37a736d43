"""``msewatch slo check FILE``: validate an SLO file and say what each SLO means.

``msewatch slo rules FILE [--out RULES]`` writes Prometheus recording and alerting rules
that evaluate the file's SLOs over ``msewatch serve --recent-windows``
(:mod:`msewatch.commands.slo_rules`).

``msewatch slo status OUTPUT`` prints the latest state per SLO and slice, then each
flapping alert with the setting that calms it (:mod:`msewatch.commands.flaps`), then the RMSE
trends.

Prints one block per SLO: what makes a window (or a prediction) bad, the objective
and its error budget, when windows settle, the slices, each alert condition with
the budget it spends, resolution, runbook and suppressions; a warning for a
condition that can never hold. A mistake in the file prints ``msewatch: error:
<file>: <slo>: <key>: <what>`` and exits 2. See ``docs/slo.md``.
"""

from __future__ import annotations

import argparse
import sys

from msewatch.commands.flaps import read_flaps
from msewatch.commands.trend import DEFAULT_K, render_trends, slice_trends
from msewatch.schemas.slo import utc_datetime
from msewatch.transforms.durations import format_duration as _d
from msewatch.transforms.shown import escape
from msewatch.transforms.slo.config import (
    LABEL_GATED,
    Slo,
    SloFile,
    SloFileError,
    load_slo_file,
    unreachable_conditions,
)
from msewatch.transforms.slo.text import condition
from msewatch.transforms.slo.trend import MIN_POINTS

EXIT_USAGE = 2
MAX_SUPPORTED_SLOS = 1000  # README, "SLOs and alerts": Size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``msewatch slo`` sub-commands to ``parser``."""
    sub = parser.add_subparsers(dest="slo_command", required=True, metavar="COMMAND")
    check = sub.add_parser("check", help="validate an SLO file and summarise its SLOs")
    check.add_argument("file", metavar="FILE", help="the SLO file (YAML), e.g. slo.yaml")
    rules = sub.add_parser(
        "rules", help="Prometheus recording and alerting rules for the SLOs of a file"
    )
    rules.add_argument("file", metavar="FILE", help="the SLO file (YAML), e.g. slo.yaml")
    rules.add_argument(
        "--out", metavar="RULES", help="write the rules (YAML) here (default: standard output)"
    )
    status = sub.add_parser(
        "status", help="latest state, budget and burn rates per SLO and slice of a run"
    )
    status.add_argument("output", metavar="OUTPUT", help="the --output of `msewatch run --slo`")
    status.add_argument(
        "--trend-windows",
        type=int,
        default=DEFAULT_K,
        metavar="K",
        help=f"settled windows per RMSE trend fit (default {DEFAULT_K}, at least 3)",
    )


def run(args: argparse.Namespace) -> int:
    """Runs ``msewatch slo``; returns the exit code (0, or 2 on a user mistake)."""
    if args.slo_command == "status":
        return _status(args.output, args.trend_windows)
    try:
        slo_file = load_slo_file(args.file)
    except SloFileError as error:
        print(f"msewatch: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(
            f"msewatch: error: {args.file}: {error.strerror or error}; check the path",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.slo_command == "rules":
        from msewatch.commands import slo_rules

        return slo_rules.run(args.file, slo_file, args.out)
    sys.stdout.write(describe_file(args.file, slo_file))
    return 0


def describe_file(path: str, slo_file: SloFile) -> str:
    """The text ``slo check`` prints."""
    n, m = len(slo_file.slos), len(slo_file.comparisons)
    lines = [
        f"{path}: OK, {n} SLO{'' if n == 1 else 's'}"
        + (f", {m} comparison{'' if m == 1 else 's'}" if m else "")
    ]
    if n + m > MAX_SUPPORTED_SLOS:
        lines.append(
            f"warning: {n + m} SLOs and comparisons are more than the {MAX_SUPPORTED_SLOS:,} "
            "an SLO file is supported with (README: SLOs and alerts, Size); a run's time "
            "and memory grow with each, and so does its slo_status table"
        )
    for slo in slo_file.slos:
        lines += ["", *describe_slo(slo)]
    for c in slo_file.comparisons:
        lines += ["", *describe_comparison(c)]
    return "".join(f"{escape(line)}\n" for line in lines)  # a runbook, a reason: shown as text


def describe_comparison(c) -> list[str]:
    """Lines for one comparison (the first line names it)."""
    slices = ", ".join(c.slices)
    return [
        f"{c.name}  (comparison, {c.severity})",
        f"  {c.describe()}",
        f"  slices: {slices} (read from model_version={c.baseline} and "
        f"model_version={c.candidate} crossed with them)",
        f"  a window counts when both versions have label_coverage >= {c.min_coverage:g} "
        f"(or complete); INCONCLUSIVE under {c.min_scored} scored per version (or pairs)",
        "  FAIL (alert fires): the always-valid lower bound of C / B - 1 is above the margin; "
        "PASS (resolves): the upper bound is below it",
    ]


_BAD = {
    "rmse": lambda s: f"a window is bad when its RMSE > {s.threshold:g}",
    "error_rate": lambda s: f"a prediction is bad when |y_pred - y_true| > {s.threshold:g}",
    "label_freshness": lambda s: (
        f"a window is bad when under {s.threshold:.1%} of its predictions are labeled "
        f"within {_d(s.within_s)}"
    ),
    "nan_rate": lambda s: f"a window is bad when over {s.threshold:.2%} of its y_pred are NaN/inf",
    "rmse_trend": lambda s: (
        f"a window is bad when the RMSE rises faster than {s.threshold:g} per day with 95% "
        f"confidence (Theil-Sen slope over the {s.trend_windows} newest settled windows)"
    ),
    "label_anomaly": lambda s: (
        f"a window is bad when over {s.threshold:.2%} of its labels are outside "
        f"[{s.valid_range[0]:g}, {s.valid_range[1]:g}] or NaN/inf, when its labels are "
        f"constant, or when mean |y_pred| / mean |y_true| is beyond {s.scale_factor:g}x "
        f"(or below 1/{s.scale_factor:g})"
    ),
    "traffic": lambda s: (
        f"a window is bad when its predictions are under {s.threshold:.0%} of the median of "
        f"the slice's windows in the {_d(s.trailing_s)} before it (a silent window counts 0)"
    ),
    **{
        sli: (
            lambda s, what=what: (
                f"a window is bad when the {s.statistic} of its {what} "
                f"distribution against {s.reference.text()} is above {s.threshold:g}"
            )
        )
        for sli, what in (("prediction_drift", "y_pred"), ("label_drift", "y_true"))
    },
    "feature_drift": lambda s: (
        f"a window is bad when the {s.statistic} of its {s.feature} distribution against "
        f"{s.reference.text()} is above {s.threshold:g}"
    ),
}
_SETTLES = {
    "label_freshness": lambda s: f"when the watermark passes window end + {_d(s.within_s)}",
    "nan_rate": lambda s: "when the window closes",
    "traffic": lambda s: (
        f"when the window closes and at least 3 windows cover half of {_d(s.trailing_s)} "
        f"before it; a silent slice gets zero rows until idle for {_d(s.retire_after_s)}"
    ),
    **dict.fromkeys(
        ("prediction_drift", "feature_drift"),
        lambda s: f"when the window closes with >= {s.min_scored} values (its reference too)",
    ),
}


def describe_slo(slo: Slo) -> list[str]:
    """Lines for one SLO (the first line names it)."""
    units = "weighted scored predictions" if slo.sli == "error_rate" else "windows"
    if slo.sli in LABEL_GATED:
        counted = "labeled" if slo.sli == "label_anomaly" else "scored"
        settles = f"label_coverage >= {slo.min_coverage:g} (or complete) and {counted} >= "
        settles += str(slo.min_scored)
        if slo.sli == "rmse_trend":
            settles += f", once {slo.trend_windows} such windows end within {_d(slo.period_s)}"
        if slo.sli == "label_drift":
            settles += f", with a reference of >= {slo.min_scored} values"
    else:
        settles = _SETTLES[slo.sli](slo)
    lines = [
        f"{slo.name} ({slo.sli}): {_BAD[slo.sli](slo)}",
        f"  objective  {slo.objective:.4g} of {units} good over {_d(slo.period_s)} "
        f"(error budget {1 - slo.objective:.3g} of them)",
        f"  settles    {settles}; unsettled windows count neither way",
        f"  slices     {', '.join(slo.slices)}",
    ]
    for severity, windows in slo.alerting.items():
        if not windows:
            lines.append(f"  {severity:<10} never (no conditions)")
        for i, w in enumerate(windows):
            lines.append(f"  {severity if i == 0 else 'or':<10} {condition(w, slo)}")
    lines.append(f"  resolves   when no condition has held for {_d(slo.keep_firing_for_s)}")
    if slo.runbook:
        lines.append(f"  runbook    {slo.runbook}")
    for s in slo.suppress:
        lines.append(
            f"  suppressed {utc_datetime(s.from_ms):%Y-%m-%d %H:%M} to "
            f"{utc_datetime(s.to_ms):%Y-%m-%d %H:%M} UTC" + (f" ({s.reason})" if s.reason else "")
        )
    ceiling = 1 / (1 - slo.objective)
    for severity, w in unreachable_conditions(slo):
        lines.append(
            f"  warning    {severity} burn_rate {w.burn_rate:g} can never be reached: with "
            f"objective {slo.objective:g} the burn rate is at most {ceiling:.3g} (all bad)"
        )
    return lines


def _status(output: str, trend_windows: int = DEFAULT_K) -> int:
    """Prints ``msewatch query OUTPUT slo-status`` as a table a person reads, then the
    RMSE trend per slice (:mod:`msewatch.commands.trend`)."""
    from msewatch.commands import query as q

    if trend_windows < MIN_POINTS:
        print(f"msewatch: error: --trend-windows must be >= {MIN_POINTS}", file=sys.stderr)
        return EXIT_USAGE
    try:
        frame = q.query(output, "slo-status")
        trends = slice_trends(output, trend_windows)
    except q.QueryError as error:
        print(f"msewatch: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if frame.empty:
        print(f"no SLO evaluations in {output}: run `msewatch run ... --slo FILE` first")
    else:
        print(render_status(frame))
    flapping = render_flaps(read_flaps(output))
    if flapping:
        print(f"\n{flapping}")
    print()
    print(render_trends(trends, trend_windows))
    return 0


def render_flaps(flaps) -> str:
    """The flapping alerts (:mod:`msewatch.commands.flaps`), each with the settings that calm
    it; "" when none flaps."""
    lines = []
    for flap in flaps:
        lines += [f"FLAPPING {flap.describe()}; calm it with one of:"]
        lines += [f"  {hint}" for hint in flap.hints]
    return "\n".join(escape(line) for line in lines)


def render_status(frame) -> str:
    """One line per SLO and slice: alert states, SLI, budget, burn rates, frontier, lag."""
    lines = [
        f"{'slo':22} {'slice':24} {'page':7} {'ticket':7} {'sli value':>10} "
        f"{'objective':>9} {'budget left':>11}  burn rates (lookback: rate)   "
        f"{'frontier (UTC)':16} {'lag p90':>8}"
    ]
    for r in frame.itertuples():
        burns = ", ".join(
            f"{_d(int(w))}: {b:.3g}" for w, b in zip(r.lookbacks_s, r.burn_rates, strict=True)
        )
        lag = "" if r.label_lag_p90_s != r.label_lag_p90_s else f"{r.label_lag_p90_s / 3600:.1f} h"
        lines.append(
            f"{r.slo:22} {r.slice:24} {r.page_state:7} {r.ticket_state:7} {r.value:>10.4g} "
            f"{r.objective:>9.4g} {r.budget_remaining:>11.1%}  {burns:28} "
            f"{r.frontier:%Y-%m-%d %H:%M} {lag:>8}"
        )
    return "\n".join(escape(line) for line in lines)  # slice values from the tables
