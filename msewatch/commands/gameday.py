"""``msewatch gameday``: run the game-day scenarios and check the alerts they raise.

For each scenario (:mod:`msewatch.commands.scenarios`): write its data, ``slo.yaml`` and
``expected_alerts.json``; run it twice through the launcher (``runners/launch.py``'s
``run``, what ``msewatch run`` calls), in-process, bounded and with
``--streaming-replay``, with the scenario's SLO file (or ``--slo FILE`` for all);
read each run's ``alerts`` table and print, per mode, every alert that fired and
every expected one: its first firing frontier (event time, UTC), the detection delay
``frontier - fault start``, for the replay the watermark of the firing row (when a
page would have been sent) and its delay, when it resolved, and a verdict:

* ``ok``: a ``must_fire`` alert first firing inside its window of frontiers, or an
  alert ``may_fire`` allows;
* ``early`` / ``late``: a ``must_fire`` alert first firing outside its window;
* ``MISSING``: a ``must_fire`` entry no alert matched;
* ``FALSE ALARM``: an alert matching ``must_not_fire`` (and neither list above);
* ``other``: an alert no list mentions (shown, not a mismatch);
* ``FLAPPING``: an alert that fired again within a day of firing
  (:mod:`msewatch.commands.flaps`) in a scenario whose ``must_not_flap`` is true
  (``stationary``): the config is too twitchy; the line after the table says which
  setting calms it. In the other scenarios a flapping alert is shown as ``flapping``.

Bounded and replayed runs of the same records must give the same firing periods in
event time (firing frontier, resolving frontier, per alert); a difference is a
mismatch too. The command exits 1 on any mismatch, 0 when every scenario passes,
and 2 on a usage error (one line).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import fnmatch
import json
import os
import sys
import tempfile
import time

from msewatch.commands import scenarios
from msewatch.commands.scenarios import SCENARIOS, generate_scenario
from msewatch.schemas.slo import AlertTransition
from msewatch.transforms.durations import format_duration

MODES = ("bounded", "replay")
EXIT_MISMATCH = 1
_KEYS = ("slo", "sli", "severity", "slice")
# the alerts columns a game day reads: the leading fields of an alerts record, up to its
# times (schemas/slo.py's AlertTransition, the one list), the times as UTC epoch ms
Transition = collections.namedtuple(
    "Transition", AlertTransition._fields[: AlertTransition._fields.index("watermark_ms") + 1]
)
_COLUMNS = ", ".join(
    f"epoch_ms({name[: -len('_ms')]})" if name.endswith("_ms") else name
    for name in Transition._fields
)
_TRANSITIONS_SQL = f"""
SELECT {_COLUMNS}
FROM alerts ORDER BY alert, frontier, emitted_at, state DESC
"""


@dataclasses.dataclass(frozen=True)
class Line:
    """One alert of one run, as printed: fired (``first_ms`` set) or expected and missing."""

    alert: str
    expected: str  # must | may | must not | other
    first_ms: int | None = None
    watermark_ms: int | None = None
    resolved_ms: int | None = None  # the last resolution; None while still firing
    periods: int = 0
    verdict: str = "ok"

    @property
    def mismatch(self) -> bool:
        return self.verdict not in ("ok", "other", "flapping")


def read_flaps(output_dir: str):
    """The flapping alerts of a run's output (:func:`msewatch.commands.flaps.read_flaps`)."""
    from msewatch.commands import flaps

    return flaps.read_flaps(output_dir)


def read_transitions(output_dir: str) -> list[Transition]:
    """The ``alerts`` rows of a run's output folder, per alert in frontier order."""
    from msewatch.commands import query

    with query.connect(output_dir) as con:
        rows = con.execute(_TRANSITIONS_SQL).fetchall()
    return [Transition(*row) for row in rows]


def firing_periods(transitions: list[Transition]) -> dict[str, tuple[tuple, ...]]:
    """Per alert, its firing periods ``(firing frontier, resolving frontier or None)``."""
    periods: dict[str, list[list]] = {}
    for t in transitions:
        spans = periods.setdefault(t.alert, [])
        if t.state == "firing":
            spans.append([t.frontier_ms, None])
        elif spans and spans[-1][1] is None:
            spans[-1][1] = t.frontier_ms
    return {alert: tuple(tuple(s) for s in spans) for alert, spans in periods.items()}


def matches(entry: dict, t: Transition) -> bool:
    """Whether ``t`` is what ``entry`` describes: each of slo, sli, severity and slice
    (absent: any) is a glob pattern (``*``, ``region=*``) or a list of them."""
    for key in _KEYS:
        want = entry.get(key, "*")
        patterns = want if isinstance(want, list) else [want]
        if not any(fnmatch.fnmatchcase(getattr(t, key), p) for p in patterns):
            return False
    return True


def _ms(text: str | None) -> int | None:
    return None if text is None else int(dt.datetime.fromisoformat(text).timestamp() * 1000)


def _describe(entry: dict) -> str:
    words = [entry.get(k, "*") for k in ("sli", "severity", "slice")]
    return " ".join("|".join(w) if isinstance(w, list) else w for w in words)


def check(expected: dict, transitions: list[Transition]) -> list[Line]:
    """The lines of one run: every alert that fired, then each missing ``must_fire``."""
    must = expected.get("must_fire", [])
    found = [False] * len(must)
    lines = []
    firsts: dict[str, Transition] = {}
    for t in transitions:
        if t.state == "firing":
            firsts.setdefault(t.alert, t)
    periods = firing_periods(transitions)
    for alert, t in firsts.items():
        spans = periods[alert]
        line = Line(alert, "other", t.frontier_ms, t.watermark_ms, spans[-1][1], len(spans))
        hits = [i for i, entry in enumerate(must) if matches(entry, t)]
        if hits:
            for i in hits:
                found[i] = True
            entry = must[hits[0]]
            low, high = _ms(entry.get("frontier_from")), _ms(entry.get("frontier_to"))
            verdict = "early" if low is not None and t.frontier_ms < low else "ok"
            verdict = "late" if high is not None and t.frontier_ms > high else verdict
            line = dataclasses.replace(line, expected="must", verdict=verdict)
        elif any(matches(e, t) for e in expected.get("may_fire", [])):
            line = dataclasses.replace(line, expected="may")
        elif any(matches(e, t) for e in expected.get("must_not_fire", [])):
            line = dataclasses.replace(line, expected="must not", verdict="FALSE ALARM")
        else:
            line = dataclasses.replace(line, verdict="other")
        lines.append(line)
    for entry, hit in zip(must, found, strict=True):
        if not hit:
            lines.append(Line(_describe(entry), "must", verdict="MISSING"))
    return lines


def check_flaps(expected: dict, flaps) -> list[Line]:
    """A line per flapping alert (:class:`msewatch.commands.flaps.Flap`): a mismatch when the
    scenario's ``must_not_flap`` is true, else shown only."""
    strict = bool(expected.get("must_not_flap"))
    return [
        Line(
            f.alert,
            "no flapping" if strict else "other",
            f.frontier_ms,
            verdict="FLAPPING" if strict else "flapping",
        )  # fmt: skip
        for f in flaps
    ]


def compare_periods(bounded: list[Transition], replay: list[Transition]) -> list[str]:
    """The alerts whose firing periods (event time) differ between the two runs."""
    a, b = firing_periods(bounded), firing_periods(replay)
    return [
        f"{alert}: bounded {_spans(a.get(alert, ()))}, replay {_spans(b.get(alert, ()))}"
        for alert in sorted(set(a) | set(b))
        if a.get(alert, ()) != b.get(alert, ())
    ]


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _spans(spans) -> str:
    return ", ".join(f"[{_time(a)} .. {_time(b) if b else 'firing'}]" for a, b in spans) or "none"


def _delay(ms: int | None, since_ms: int | None) -> str:
    if ms is None or since_ms is None:
        return "-"
    seconds = (ms - since_ms) // 1000
    return ("-" if seconds < 0 else "") + format_duration(abs(seconds))


_HEADER = ("mode", "alert", "expected", "first firing", "delay", "watermark", "delay")
_HEADER += ("resolved", "verdict")


def render_lines(mode: str, lines: list[Line], fault_ms: int | None) -> list[tuple[str, ...]]:
    """Table rows of one run (see :data:`_HEADER`); a run without alerts gets one row."""
    if not lines:
        return [(mode, "(no alert fired)", "", "", "", "", "", "", "ok")]
    rows = []
    for x in lines:
        resolved = _time(x.resolved_ms) if x.periods else "-"
        if x.periods and x.resolved_ms is None:
            resolved = "still firing"
        if x.periods > 1:
            resolved += f" ({x.periods} periods)"
        watermark = _time(x.watermark_ms)
        rows.append(
            (mode, x.alert, x.expected, _time(x.first_ms), _delay(x.first_ms, fault_ms))
            + (watermark, _delay(x.watermark_ms, fault_ms), resolved, x.verdict)
        )
    return rows


def format_table(rows: list[tuple[str, ...]], indent: str = "  ") -> str:
    """Left-aligned columns, the first row the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    )


def _run_once(data: str, out: str, slo: str, expected: dict, replay: bool) -> int:
    """``msewatch run --quiet`` of the scenario's records in ``data`` into ``out`` with
    the scenario's settings (``expected``: its ``window_s``, :data:`scenarios.SLICES`),
    bounded or replayed: its exit status; a mistake is one line on stderr and 2."""
    from msewatch.runners import config, launch
    from msewatch.transforms.slo.config import load_slo_file

    job = config.Job(
        predictions=os.path.join(data, "predictions.jsonl"),
        labels=os.path.join(data, "labels.jsonl"),
        streaming_replay=replay,
        quiet=True,
    )
    try:
        settings = config.monitor_config(
            out,
            bounded=job.bounded,
            runner=job.runner,
            window_seconds=expected["window_s"],
            slices=scenarios.SLICES,
            slo=load_slo_file(slo),
        )
        return launch.run(settings, job).code
    except (ValueError, OSError) as error:
        if os.environ.get("MSEWATCH_DEBUG"):
            raise
        from msewatch import cli

        print(f"msewatch: error: {cli.one_line(error)}", file=sys.stderr)
        return 2


def _print_expectations(expected: dict, fault_ms: int | None) -> None:
    fault, name = expected["fault"], expected["scenario"]
    what = (
        f": region={fault['segment']}: {fault['what']}, from {_time(fault_ms)} UTC" if fault else ""
    )
    print(f"\n== {name} ({expected['predictions']} predictions){what}")
    must = "; ".join(
        f"{_describe(e)} first firing in [{_time(_ms(e.get('frontier_from')))} .. "
        f"{_time(_ms(e.get('frontier_to')))}]"
        for e in expected["must_fire"]
    )
    print(f"  must fire: {must or 'nothing'}")
    may = "; ".join(_describe(e) for e in expected["may_fire"])
    print(f"  may fire: {may or 'nothing'}; anything else is a false alarm")


def run_scenario(name: str, root: str, slo: str | None, seed: int) -> bool:
    """Generates, runs and checks one scenario; prints its block; True when it passes."""
    data = os.path.join(root, name)
    expected = generate_scenario(name, data, seed)
    fault = expected["fault"]
    fault_ms = _ms(fault["start"]) if fault else None
    _print_expectations(expected, fault_ms)
    transitions, rows, ok, took, hints = {}, [_HEADER], True, [], {}
    for mode in MODES:
        out = os.path.join(data, f"out-{mode}")
        started = time.monotonic()
        code = _run_once(data, out, slo or os.path.join(data, "slo.yaml"),
                         expected, mode == "replay")  # fmt: skip
        took.append(f"{mode} {time.monotonic() - started:.0f} s")
        if code != 0:
            rows.append((mode, f"(msewatch run exited {code})", "", "", "", "", "", "", "FAILED"))
            ok = False
            continue
        transitions[mode] = read_transitions(out)
        flapping = read_flaps(out)
        lines = check(expected, transitions[mode]) + check_flaps(expected, flapping)
        hints.update((f.alert, f) for f in flapping)
        ok &= not any(x.mismatch for x in lines)
        rows += render_lines(mode, lines, fault_ms)
    print(format_table(rows))
    for flap in hints.values():
        print(f"  flapping: {flap.describe()}; calm it with {'; or '.join(flap.hints)}")
    if len(transitions) == len(MODES):
        differ = compare_periods(transitions["bounded"], transitions["replay"])
        ok &= not differ
        print("  firing periods (event time): " + ("bounded = replay" if not differ else "DIFFER"))
        for text in differ:
            print(f"    {text}")
    print(f"  {'passed' if ok else 'FAILED'} ({', '.join(took)})")
    return ok


def _count(n: int) -> str:
    return f"{n} scenario" + ("" if n == 1 else "s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``msewatch gameday`` options to ``parser``."""
    parser.add_argument(
        "--slo", metavar="FILE", help="SLO file for every scenario (default: each one's slo.yaml)"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        help="run this scenario (repeatable; default: all)",
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="write data and outputs under DIR and keep them"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")


def run(args: argparse.Namespace) -> int:
    """Runs the scenarios; 0 when all pass, :data:`EXIT_MISMATCH` otherwise."""
    if args.slo:
        from msewatch.transforms.slo.config import load_slo_file

        load_slo_file(args.slo)  # a mistake is one line before anything runs
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    names = list(dict.fromkeys(args.scenario or SCENARIOS))
    source = f"SLO file {args.slo}" if args.slo else "each scenario's slo.yaml"
    print(f"game day: {_count(len(names))}, bounded and --streaming-replay, {source}")
    with tempfile.TemporaryDirectory(prefix="msewatch-gameday-") as scratch:
        root = args.keep or scratch
        results = {name: run_scenario(name, root, args.slo, args.seed) for name in names}
        if args.keep:
            with open(os.path.join(root, "gameday.json"), "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2)
    failed = [name for name, ok in results.items() if not ok]
    print()
    if failed:
        print(f"game day FAILED: {', '.join(failed)} ({len(failed)} of {_count(len(names))})")
        return EXIT_MISMATCH
    print(f"game day passed: {_count(len(names))}, bounded and replayed")
    return 0
