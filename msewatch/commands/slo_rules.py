"""``msewatch slo rules SLO.yaml [--out FILE]``: Prometheus rules from an SLO file.

The rules re-do msewatch's SLO evaluation (:mod:`msewatch.transforms.slo.kernel`) in
PromQL, over the per-window series of ``msewatch serve --recent-windows DURATION``
(:mod:`msewatch.commands.serve_windows`), in **event time**: per SLO, one rule group

1. ``msewatch_slo:settled_window_end_timestamp_seconds``: the windows of the SLO's slices
   that settle: they pass its label gate (``label_coverage >= min_coverage`` or
   ``complete``, and ``scored >= min_scored``) and have a value; nan_rate: they have
   predictions and are closed;
2. ``msewatch_slo:frontier_timestamp_seconds``: per slice the newest of them, the label
   frontier F;
3. ``msewatch_slo:counted_window_eligible`` and ``..._bad``: the eligible and bad units
   of each settled window outside the SLO's suppressions (rmse, nan_rate: 1, and 1 when
   the RMSE or the NaN share is above the threshold; error_rate: the scored weight and the
   weight beyond the threshold);
4. ``msewatch_slo:error_ratio`` per lookback L of the alert conditions (label
   ``lookback``): bad / eligible over the counted windows ending in ``(F - L, F]``, and
   ``msewatch_slo:burn_rate``, the error ratio / (1 - objective);
5. one alert per severity with conditions, ``MsewatchSloBurnRate`` (labels ``slo``,
   ``slice``, ``severity``, ``sli``, ``msewatch_alert``: msewatch's alert name
   ``<slo>/<severity>/<slice>``; annotations ``summary``, ``runbook_url``): firing while
   any condition holds (long and short burn rates both at least its ``burn_rate``, to
   within the kernel's float tolerance), with ``keep_firing_for`` the SLO's.

So at every Prometheus evaluation the conditions are those of msewatch's evaluation at
the newest frontier in the tables. What stays different is said in ``docs/observability.md``
("Prometheus rules from the SLO file"): Prometheus sees only the newest frontier (an
output written all at once shows its last evaluation, not the history of the
``alerts`` table), and ``keep_firing_for`` runs on Prometheus's clock, not frontier time.

SLIs the tables cannot give PromQL faithfully are not generated; the file says why in a
comment (:data:`NOT_EXPRESSIBLE`), as for comparisons.
"""

from __future__ import annotations

import itertools
import json
import re
import sys

import yaml

from msewatch.commands import serve_windows as w
from msewatch.transforms.durations import format_duration as _d
from msewatch.transforms.slo.config import Slo, SloFile
from msewatch.transforms.slo.kernel import RELATIVE_TOLERANCE

ALERT = "MsewatchSloBurnRate"
SETTLED = "msewatch_slo:settled_window_end_timestamp_seconds"
FRONTIER = "msewatch_slo:frontier_timestamp_seconds"
ELIGIBLE = "msewatch_slo:counted_window_eligible"
BAD = "msewatch_slo:counted_window_bad"
ERROR_RATIO = "msewatch_slo:error_ratio"
BURN_RATE = "msewatch_slo:burn_rate"
EXPRESSIBLE = ("rmse", "error_rate", "nan_rate")
NOT_EXPRESSIBLE = {  # sli -> why its rules are not generated
    "label_freshness": "a window settles when the watermark passes its end + within, "
    "and the tables do not carry the watermark",
    "rmse_trend": "its verdict is a Theil-Sen fit over the trend_windows newest settled "
    "windows, which PromQL cannot compute",
    "label_anomaly": "serve does not export the label-range counts, y_true_min/max and "
    "the scale sums it needs per window",
    "traffic": "its baseline is the median of each window's own trailing span of "
    "windows, which PromQL cannot compute per window",
    "prediction_drift": "its statistic compares value sketches, which PromQL cannot read",
    "label_drift": "its statistic compares value sketches, which PromQL cannot read",
    "feature_drift": "its statistic compares value sketches, which PromQL cannot read",
}
_GO_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def slice_regex(patterns: tuple[str, ...]) -> str:
    """An RE2 regex (Prometheus anchors it) matching the slice names ``patterns`` cover,
    as :func:`msewatch.transforms.slo.patterns.matches` decides: the same keys in any
    order, each value equal or ``*`` (any written value, which holds no ``,``)."""
    alternatives = []
    for pattern in patterns:
        if pattern == "overall":
            alternatives.append("overall")
            continue
        pairs = [p.partition("=") for p in pattern.split(",")]
        for order in itertools.permutations(pairs):
            alternatives.append(
                ",".join(
                    f"{_quote(k)}=" + ("[^,]*" if v == "*" else _quote(v)) for k, _, v in order
                )
            )
    return "|".join(dict.fromkeys(alternatives))


def _quote(text: str) -> str:
    """``text`` matched literally by an RE2 regex."""
    return _GO_META.sub(r"\\\1", text)


def _string(text: str) -> str:
    """A PromQL string literal (Go escapes, which JSON's are)."""
    return json.dumps(text, ensure_ascii=False)


def _number(x: float) -> str:
    return repr(float(x))


def _settled(slo: Slo, sel: str) -> str:
    """The window ends of the windows that settle (``transforms/slo/sli.py``)."""
    if slo.sli == "nan_rate":  # it has predictions and the watermark passed its end
        conditions = [f"{w.PREDICTIONS}{sel} > 0", f"{w.CLOSED}{sel} == 1"]
    else:  # the label gate, and a value
        gate = (
            f"(\n    {w.COVERAGE}{sel} >= {_number(slo.min_coverage)}\n"
            f"    or on (slice, window) {w.COMPLETE}{sel} == 1\n  )"
        )
        conditions = [gate, f"{w.SCORED}{sel} >= {slo.min_scored}", f"{w.RMSE}{sel}"]
        if slo.sli == "error_rate":  # a scored weight, and the count of its threshold
            conditions[-1:] = [f"{w.SCORED_WEIGHT}{sel} > 0", _bad_weight(slo, sel)]
    return f"{w.END}{sel}" + "".join(f"\n  and on (slice, window) {c}" for c in conditions)


def _eligible(slo: Slo, sel: str, this: str) -> str:
    if slo.sli != "error_rate":  # each settled window is one unit
        expr = f"{SETTLED}{this} * 0 + 1"
    else:  # error_rate: the scored weight
        expr = f"{w.SCORED_WEIGHT}{sel}\n  and on (slice, window) {SETTLED}{this}"
    for s in slo.suppress:  # a window overlapping [from, to) counts neither way
        expr = (
            f"({expr})\n  unless on (slice, window) ({w.START}{sel} < {s.to_ms / 1000:.3f}"
            f" and on (slice, window) {w.END}{sel} > {s.from_ms / 1000:.3f})"
        )
    return expr


def _bad_weight(slo: Slo, sel: str) -> str:
    """error_rate: the weight beyond the SLO's threshold. The metrics count it for every
    threshold of the run's SLO file (0 included), so a window without it is of a run not
    given this SLO: it does not settle (no burn rate), rather than look healthy."""
    t = _string(w.threshold_label(slo.threshold))
    return f"{w.BAD_WEIGHT}{sel[:-1]}, threshold={t}}}"


def _bad(slo: Slo, sel: str, this: str) -> str:
    if slo.sli == "rmse":
        bad = f"{w.RMSE}{sel} > bool {_number(slo.threshold)}"
    elif slo.sli == "nan_rate":
        share = f"{w.NAN_PREDICTIONS}{sel} / on (slice, window) {w.PREDICTIONS}{sel}"
        bad = f"({share}) > bool {_number(slo.threshold)}"
    else:
        bad = _bad_weight(slo, sel)
    return f"({bad})\n  and on (slice, window) {ELIGIBLE}{this}"


def _in_lookback(sel: str, this: str, lookback_s: int) -> str:
    return f"({w.END}{sel}\n      > on (slice) group_left () ({FRONTIER}{this} - {lookback_s}))"


def _error_ratio(sel: str, this: str, lookback_s: int) -> str:
    inside = _in_lookback(sel, this, lookback_s)
    return (
        f"sum by (slice) (\n  {BAD}{this}\n    and on (slice, window) {inside}\n)\n/\n"
        f"sum by (slice) (\n  {ELIGIBLE}{this}\n    and on (slice, window) {inside}\n)"
    )


def _alert_expr(slo: Slo, severity: str) -> str:
    def burn(lookback_s: int) -> str:
        return f"{BURN_RATE}{{slo={_string(slo.name)}, lookback={_string(_d(lookback_s))}}}"

    held = []
    for c in slo.alerting[severity]:
        reach = f"{_number(c.burn_rate)} * (1 - {RELATIVE_TOLERANCE:g})"
        held.append(
            f"  (\n    {burn(c.long_s)} >= {reach}\n"
            f"    and on (slo, slice) {burn(c.short_s)} >= {reach}\n  )"
        )
    return "max by (slo, slice) (\n" + "\n  or\n".join(held) + "\n)"


def _alert(slo: Slo, severity: str) -> dict:
    conditions = " or ".join(
        f"{_d(c.long_s)}/{_d(c.short_s)} >= {c.burn_rate:g}x" for c in slo.alerting[severity]
    )
    rule = {"alert": ALERT, "expr": _alert_expr(slo, severity)}
    if slo.keep_firing_for_s:
        rule["keep_firing_for"] = _d(slo.keep_firing_for_s)
    rule["labels"] = {
        "severity": severity,
        "sli": slo.sli,
        "msewatch_alert": f"{slo.name}/{severity}/{{{{ $labels.slice }}}}",
    }
    rule["annotations"] = {
        "summary": f"{slo.name} {severity} firing for {{{{ $labels.slice }}}}: burn rate "
        f'{{{{ $value | printf "%.3g" }}}}x ({conditions}) at the label frontier',
        "runbook_url": slo.runbook,
    }
    return rule


def slo_group(slo: Slo) -> dict:
    """The rule group of one expressible SLO (see the module docstring)."""
    sel = "{slice=~" + _string(slice_regex(slo.slices)) + "}"
    this = "{slo=" + _string(slo.name) + "}"
    labels = {"slo": slo.name}  # copied into each rule: the YAML has no anchors
    rules = [
        {"record": SETTLED, "expr": _settled(slo, sel), "labels": {**labels}},
        {
            "record": FRONTIER,
            "expr": f"max by (slo, slice) ({SETTLED}{this})",
            "labels": {**labels},
        },
        {"record": ELIGIBLE, "expr": _eligible(slo, sel, this), "labels": {**labels}},
        {"record": BAD, "expr": _bad(slo, sel, this), "labels": {**labels}},
    ]
    for lookback_s in slo.alerting.lookbacks_s():
        rules.append(
            {
                "record": ERROR_RATIO,
                "expr": _error_ratio(sel, this, lookback_s),
                "labels": {**labels, "lookback": _d(lookback_s)},
            }
        )
    burn = f"{ERROR_RATIO}{this} / (1 - {_number(slo.objective)})"
    rules.append({"record": BURN_RATE, "expr": burn, "labels": {**labels}})
    rules += [_alert(slo, s) for s, conditions in slo.alerting.items() if conditions]
    return {"name": f"msewatch-slo-{slo.name}", "rules": rules}


def skipped(slo_file: SloFile) -> list[str]:
    """One line per SLO and comparison not generated, saying why."""
    lines = [
        f"{slo.name} ({slo.sli}): not generated: {NOT_EXPRESSIBLE[slo.sli]}; alert on "
        f'msewatch_slo_alert_firing{{slo="{slo.name}"}} == 1 (msewatch\'s own evaluation)'
        for slo in slo_file.slos
        if slo.sli not in EXPRESSIBLE
    ]
    lines += [
        f"{c.name} (comparison): not generated: its always-valid bounds need the summed "
        "moments of both versions; alert on msewatch_comparison_decision"
        f'{{comparison="{c.name}", decision="FAIL"}} == 1 (msewatch\'s own decision)'
        for c in slo_file.comparisons
    ]
    return lines


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the PromQL expressions) as literal blocks."""


_Dumper.add_representer(
    str,
    lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None),
)


def rules_text(path: str, slo_file: SloFile) -> str:
    """The rules file: a header comment (what serve must export, the SLOs left out)
    and the groups of the expressible SLOs."""
    slos = [s for s in slo_file.slos if s.sli in EXPRESSIBLE]
    longest = max((max(s.alerting.lookbacks_s(), default=0) for s in slos), default=0)
    header = [
        f"Prometheus rules generated by `msewatch slo rules {path}`: the SLOs' burn-rate",
        "alerts in event time, over the per-window series of",
        f"  msewatch serve OUTPUT --recent-windows {_d(longest + 86400) if longest else '1d'}",
        f"(at least the longest lookback, {_d(longest) if longest else 'none'}, plus how far "
        "the label frontier trails the newest window).",
        "docs/observability.md, 'Prometheus rules from the SLO file', says how they relate",
        "to msewatch's own evaluation.",
        *skipped(slo_file),
    ]
    body = yaml.dump(
        {"groups": [slo_group(s) for s in slos]},
        Dumper=_Dumper,
        sort_keys=False,
        width=1000,
        allow_unicode=True,
    )
    return "".join(f"# {line}\n" for line in header) + body


def run(path: str, slo_file: SloFile, out: str | None) -> int:
    """Writes the rules to ``out`` (stdout when None); 2 when it cannot be written."""
    text = rules_text(path, slo_file)
    if out is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as error:
        print(
            f"msewatch: error: cannot write {out}: {error.strerror or error}; "
            "pass --out a writable file",
            file=sys.stderr,
        )
        return 2
    return 0
