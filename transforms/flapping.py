"""Flapping alerts: the one definition, and the count the ``alerts`` table carries.

An alert *flaps* when it fires again soon after it fired (:data:`FLAPPING_FIRINGS`
firings within a day) while nothing changed for good: a threshold near the healthy
value, a short lookback that is the newest window alone, a small ``keep_firing_for``.
Every transition row of ``alerts`` carries ``fired_24h``: how many times its alert (one
(SLO, severity, slice), or one comparison and slice) fired with a label frontier in the
trailing :data:`FLAP_SPAN_S` of frontier (event) time, ``(F - 24 h, F]``, the row's own
firing included. Time is event time (UTC epoch ms), never the wall clock, so a bounded
run and a streaming run of the same rows count alike. ``docs/slo.md`` ("Flapping")
says which settings calm a flapping alert.

The SLO and comparison kernels (``transforms/slo/kernel.py``,
``transforms/compare/kernel.py``) keep each alert's recent firing frontiers with
:func:`record_firing`; ``msewatch slo status``, the report and ``msewatch gameday`` call
:func:`is_flapping`.
"""

from __future__ import annotations

FLAP_SPAN_S = 86_400
"""The trailing span of frontier time over which firings are counted: one day."""

FLAPPING_FIRINGS = 2
"""An alert *flaps* when it fired at least this many times within :data:`FLAP_SPAN_S`
(``fired_24h >= 2``): it fired again less than a day after it fired. The second page
of a day for one alert is one the on-call did not need: the incident was still the
same, and a ``keep_firing_for`` that spans the gap makes it one firing period. (Three
would flag nothing on 6 h windows: with four evaluations a day an alert can fire at
most twice in any ``(F - 24 h, F]``: firing, resolved, firing, resolved.)"""

MAX_KEPT_FIRINGS = 256
"""At most this many recent firing frontiers are kept per alert, so the state stays
bounded whatever the window grid (288 five-minute windows a day could each fire at
most every other one); ``fired_24h`` saturates there."""


def is_flapping(fired_24h) -> bool:
    """Whether an alert that fired ``fired_24h`` times in the trailing day flaps."""
    return fired_24h is not None and fired_24h == fired_24h and fired_24h >= FLAPPING_FIRINGS


def recent_firings(firings_ms: tuple[int, ...], frontier_ms: int) -> tuple[int, ...]:
    """The firing frontiers of ``firings_ms`` within ``(frontier - 24 h, frontier]``."""
    since = frontier_ms - FLAP_SPAN_S * 1000
    return tuple(f for f in firings_ms if since < f <= frontier_ms)


def record_firing(firings_ms: tuple[int, ...], frontier_ms: int) -> tuple[int, ...]:
    """``firings_ms`` pruned to the trailing day before ``frontier_ms``, with a firing at
    ``frontier_ms`` added (the newest :data:`MAX_KEPT_FIRINGS` kept)."""
    return (*recent_firings(firings_ms, frontier_ms), frontier_ms)[-MAX_KEPT_FIRINGS:]
