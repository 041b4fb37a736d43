"""Sentences people read: the ``summary`` of an alert transition, the conditions of an SLO."""

from __future__ import annotations

import math

from msewatch.schemas.slo import FIRING, AlertTransition, utc_datetime
from msewatch.transforms.durations import format_duration as _d
from msewatch.transforms.slo.sli import SLI_RULES
from msewatch.transforms.slo.spec import BurnWindow, Slo


def _rate(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3g}x"


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def summary(slo: Slo, t: AlertTransition) -> str:
    """One line: what fired or resolved, where in event time, why, and the budget left."""
    frontier = f"{utc_datetime(t.frontier_ms):%Y-%m-%d %H:%M} UTC"
    value = "n/a" if math.isnan(t.value) else SLI_RULES[slo.sli].describe(slo, t.value)
    burns = (
        f"burn rate {_rate(t.burn_rate_long)} over {_d(t.long_window_s)} and "
        f"{_rate(t.burn_rate_short)} over {_d(t.short_window_s)}"
    )
    budget = f"{_percent(t.budget_remaining)} of the {_d(slo.period_s)} error budget left"
    if t.state == FIRING:
        head = (
            f"{slo.name} {t.severity} firing for {t.slice}: {burns} (>= {t.burn_rate_threshold:g}x)"
        )
    else:
        head = (
            f"{slo.name} {t.severity} resolved for {t.slice}: no condition held for "
            f"{_d(slo.keep_firing_for_s)}; {burns}"
        )
    return f"{head} at the label frontier {frontier}; newest settled window: {value}; {budget}."


def condition(w: BurnWindow, slo: Slo) -> str:
    """A condition for a person, with the bad share it means and the budget it spends:
    a burn rate b held for the long lookback L spends ``b * L / period`` of the budget."""
    spent = w.burn_rate * w.long_s / slo.period_s
    return (
        f"burn rate >= {w.burn_rate:g}x over both {_d(w.long_s)} and {_d(w.short_s)} "
        f"(bad share >= {w.burn_rate * (1 - slo.objective):.3g}; "
        f"{spent:.1%} of the budget in {_d(w.long_s)})"
    )
