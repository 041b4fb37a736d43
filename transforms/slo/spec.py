"""What an SLO says: frozen dataclasses that validate themselves.

Read from a file by :mod:`.config` (``docs/slo.md`` explains every key). Each check
raises :class:`InvalidValue`, a ``ValueError`` naming the key as it is written in
the SLO file (``within``, not ``within_s``) and what is allowed, so a config built in
code is held to the same rules as one read from YAML. Durations are whole seconds
(``*_s``), times UTC epoch milliseconds (``*_ms``).

Adding an SLI: add its name to :data:`SLIS`, its threshold rule to
``_THRESHOLD_RULES``, say whether the label gate applies (:data:`LABEL_GATED`), and
give it a window rule in :mod:`.sli`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys

from msewatch.schemas.time_range import EARLIEST_MS, END_MS, RANGE_TEXT
from msewatch.transforms.durations import MAX_DURATION_SECONDS, format_duration
from msewatch.transforms.metrics.slices import parse_slice_name
from msewatch.transforms.shown import escape, shown
from msewatch.transforms.slo.patterns import check_pattern, matches
from msewatch.transforms.slo.reference import DRIFT_SLIS, Reference, drift_problem

SLIS = (
    "rmse",
    "error_rate",
    "label_freshness",
    "nan_rate",
    "rmse_trend",
    "label_anomaly",
    "traffic",
    *DRIFT_SLIS,
)
# SLIs whose windows wait for min_coverage/min_scored (the label gate)
LABEL_GATED = ("rmse", "error_rate", "rmse_trend", "label_anomaly", "label_drift")
SEVERITIES = ("page", "ticket")
# rmse_trend: settled windows per Theil-Sen fit (the default, and the allowed range: the
# cost of a fit grows with the square of it)
DEFAULT_TREND_WINDOWS, MIN_TREND_WINDOWS, MAX_TREND_WINDOWS = 24, 3, 200
# traffic: the span of the trailing median (retire_after defaults to it)
DEFAULT_TRAILING_S = 7 * 86400
# a name, whole (fullmatch: ``$`` would also match before a final newline)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MAX_COUNT = 2**53  # min_scored: the largest count a float (a table's column) holds exactly
DEFAULT_SCALE_FACTOR = 10.0  # label_anomaly: mean |y_pred| / mean |y_true| beyond it is bad
# sli -> (is the threshold allowed, what a threshold means and which values are allowed)
_THRESHOLD_RULES = {
    "rmse": (lambda t: t >= 0, "an RMSE >= 0: a window is bad when its RMSE is above it"),
    "error_rate": (lambda t: t >= 0, "an absolute error >= 0: a prediction beyond it is bad"),
    "label_freshness": (lambda t: 0 < t <= 1, "a share in (0, 1] of predictions labeled in time"),
    "nan_rate": (
        lambda t: 0 <= t < 1,
        "a share in [0, 1) of NaN/inf predictions a window may have",
    ),
    "rmse_trend": (
        lambda t: t >= 0,
        "an RMSE slope per day >= 0: a window is bad when the 95 % interval of the "
        "slope lies above it",
    ),
    "label_anomaly": (
        lambda t: 0 <= t < 1,
        "a share in [0, 1) of anomalous labels (out of valid_range, NaN/inf) a window may have",
    ),
    "traffic": (
        lambda t: 0 < t <= 1,
        "a share in (0, 1] of the trailing median of predictions: a window is bad below it",
    ),
    **dict.fromkeys(
        DRIFT_SLIS,
        (
            lambda t: t >= 0,
            "a drift statistic >= 0 (psi: 0.1 minor, 0.25 major shift; js: a distance in "
            "[0, 1]; wasserstein: in the values' units): a window is bad above it",
        ),
    ),
}


class InvalidValue(ValueError):
    """A value the SLO dataclasses refuse; ``key`` is spelled as in the SLO file.

    Attributes:
        key: the key, e.g. ``objective`` or ``alerting.page[1].short``.
        what: what is wrong and what is allowed.
        slo: the SLO's name when the key belongs to one, else None.
    """

    def __init__(self, key: str | None, what: str, slo: str | None = None):
        self.key, self.what, self.slo = key, what, slo
        super().__init__(one_line(slo, key, what))


def one_line(*parts) -> str:
    """``parts`` joined by ``: `` on one line: control characters escaped, an SLO name
    (the first part that is not a key) cut to 100 characters."""
    return ": ".join(escape(p, 100 if i == 0 else None) for i, p in enumerate(parts) if p)


def is_name(value) -> bool:
    """Whether ``value`` is a valid SLO or comparison name (it names alerts)."""
    return isinstance(value, str) and NAME.fullmatch(value) is not None


def check_seconds(value, key: str, minimum: int = 1) -> None:
    """A duration in whole seconds, at least ``minimum`` and at most 3650 days."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        least = "0s" if minimum == 0 else "1s"
        raise InvalidValue(key, f"must be a whole number of seconds >= {least}; got {shown(value)}")
    if value > MAX_DURATION_SECONDS:
        got = format_duration(value) if value < 10**15 else shown(value)
        raise InvalidValue(key, f"must be at most 3650d; got {got}")


def check_time_ms(ms: int, key: str, written=None) -> None:
    """A time (UTC epoch ms) in the accepted range of record times (``schemas/time_range.py``;
    ``END_MS`` itself may end a period); ``written`` is the value as the file wrote it."""
    if not EARLIEST_MS <= ms <= END_MS:
        got = shown(written) if written is not None else f"{shown(ms)} ms"
        raise InvalidValue(key, f"must be a time in {RANGE_TEXT}; got {got}")


def check_count(value, key: str, minimum: int) -> None:
    """A whole number from ``minimum`` to :data:`MAX_COUNT`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(key, f"must be a whole number; got {shown(value)}")
    if value < minimum:
        raise InvalidValue(key, f"must be >= {minimum}; got {shown(value)}")
    if value > MAX_COUNT:
        raise InvalidValue(key, f"must be at most 2^53 ({MAX_COUNT}); got {shown(value)}")


def check_slices(slices: tuple) -> None:
    """The ``slices`` key of an SLO or a comparison: at least one valid pattern, none twice."""
    if not slices:
        raise InvalidValue("slices", "must list at least one slice pattern, e.g. [overall]")
    for i, pattern in enumerate(slices):
        try:
            check_pattern(pattern)
        except ValueError as e:
            raise InvalidValue(f"slices[{i}]", str(e)) from None
        if pattern in slices[:i]:
            raise InvalidValue(f"slices[{i}]", f"{shown(pattern)} is listed twice")


def check_number(value, key: str) -> None:
    """A finite int or float (not a bool), within the range of a float (an int of 400
    digits is refused here, not by an OverflowError where it is used)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise InvalidValue(key, f"must be a finite number; got {shown(value)}")


def _finite(value: int | float) -> bool:
    if isinstance(value, int):  # compared exactly, without converting to float
        return -sys.float_info.max <= value <= sys.float_info.max
    return math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class BurnWindow:
    """One multiwindow condition: the burn rates over ``long_s`` and ``short_s`` (seconds)
    are both at least ``burn_rate``."""

    long_s: int
    short_s: int
    burn_rate: float

    def __post_init__(self):
        check_seconds(self.long_s, "long")
        check_seconds(self.short_s, "short")
        if self.short_s >= self.long_s:
            raise InvalidValue(
                "short",
                f"must be shorter than long ({format_duration(self.long_s)}); "
                f"got {format_duration(self.short_s)}",
            )
        check_number(self.burn_rate, "burn_rate")
        if self.burn_rate <= 0:
            raise InvalidValue("burn_rate", f"must be > 0 (e.g. 14.4); got {shown(self.burn_rate)}")
        object.__setattr__(self, "burn_rate", float(self.burn_rate))


_DEFAULT_PAGE = (BurnWindow(3600, 300, 14.4), BurnWindow(6 * 3600, 1800, 6.0))
_DEFAULT_TICKET = (BurnWindow(3 * 86400, 6 * 3600, 1.0),)


@dataclasses.dataclass(frozen=True)
class Alerting:
    """Conditions per severity; any one holding fires the alert (Google SRE workbook default).

    A severity with no conditions (``ticket: []``) never fires.
    """

    page: tuple[BurnWindow, ...] = _DEFAULT_PAGE
    ticket: tuple[BurnWindow, ...] = _DEFAULT_TICKET

    def __post_init__(self):
        for severity in SEVERITIES:
            windows = tuple(getattr(self, severity))
            if not all(isinstance(w, BurnWindow) for w in windows):
                raise InvalidValue(f"alerting.{severity}", "must be a list of BurnWindow")
            object.__setattr__(self, severity, windows)

    def __getitem__(self, severity: str) -> tuple[BurnWindow, ...]:
        if severity not in SEVERITIES:
            raise KeyError(severity)
        return getattr(self, severity)

    def items(self) -> tuple[tuple[str, tuple[BurnWindow, ...]], ...]:
        """``(severity, conditions)`` pairs, ``page`` first."""
        return tuple((s, self[s]) for s in SEVERITIES)

    def lookbacks_s(self) -> tuple[int, ...]:
        """Every long and short lookback of every condition, ascending, once each."""
        return tuple(
            sorted({s for _, ws in self.items() for w in ws for s in (w.long_s, w.short_s)})
        )


@dataclasses.dataclass(frozen=True)
class Suppression:
    """A known-bad period ``[from_ms, to_ms)`` (UTC epoch ms): its windows spend no budget."""

    from_ms: int
    to_ms: int
    reason: str = ""

    def __post_init__(self):
        for key, value in (("from", self.from_ms), ("to", self.to_ms)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidValue(key, f"must be epoch milliseconds (int); got {shown(value)}")
            check_time_ms(value, key)
        if self.from_ms >= self.to_ms:
            raise InvalidValue("to", "must be later than from")
        if not isinstance(self.reason, str):
            raise InvalidValue("reason", f"must be a string; got {shown(self.reason)}")

    def overlaps(self, start_ms, end_ms):
        """Whether the window ``[start_ms, end_ms)`` overlaps the suppressed period
        (ints, or numpy arrays of window bounds: then an array of bools)."""
        return (start_ms < self.to_ms) & (self.from_ms < end_ms)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Slo:
    """One SLO, keyword arguments only (see ``docs/slo.md`` for the meaning of each)."""

    name: str
    sli: str
    threshold: float
    within_s: int | None = None
    trend_windows: int | None = None  # rmse_trend only; None there means the default
    objective: float
    period_s: int = 30 * 86400
    slices: tuple[str, ...] = ("overall",)
    min_coverage: float = 0.8
    min_scored: int = 30
    alerting: Alerting = Alerting()
    keep_firing_for_s: int = 3600
    runbook: str = ""
    suppress: tuple[Suppression, ...] = ()
    valid_range: tuple[float, float] | None = None  # label_anomaly only, and required there
    scale_factor: float | None = None  # label_anomaly only; None there means the default
    trailing_s: int | None = None  # traffic only; None there means 7d
    retire_after_s: int | None = None  # traffic only; None there means trailing_s
    reference: Reference | None = None  # the drift SLIs only (reference.py)
    statistic: str | None = None  # the drift SLIs; None there means psi
    feature: str | None = None  # feature_drift only

    def __post_init__(self):
        if isinstance(self.slices, str):
            object.__setattr__(self, "slices", (self.slices,))
        object.__setattr__(self, "slices", tuple(self.slices))
        object.__setattr__(self, "suppress", tuple(self.suppress))
        try:
            self._check()
        except InvalidValue as e:
            if e.slo is None and isinstance(self.name, str) and self.name:
                raise InvalidValue(e.key, e.what, self.name) from None
            raise
        for name in ("threshold", "objective", "min_coverage"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def _check(self) -> None:
        if not is_name(self.name):
            raise InvalidValue(
                "name",
                "must be 1-100 letters, digits, '-', '_' or '.' starting with a letter "
                f"or digit (it names alerts); got {shown(self.name)}",
            )
        if self.sli not in SLIS:
            raise InvalidValue("sli", f"must be one of {', '.join(SLIS)}; got {shown(self.sli)}")
        self._check_threshold()
        if self.sli == "label_freshness":
            if self.within_s is None:
                raise InvalidValue("within", "is required for sli: label_freshness, e.g. 24h")
            check_seconds(self.within_s, "within")
        elif self.within_s is not None:
            raise InvalidValue("within", "applies only to sli: label_freshness")
        self._check_trend_windows()
        self._check_label_anomaly()
        self._check_traffic()
        self._check_drift()
        check_number(self.objective, "objective")
        if not 0 < self.objective < 1:
            raise InvalidValue(
                "objective",
                f"must be between 0 and 1 (exclusive), e.g. 0.99; got {shown(self.objective)}",
            )
        check_seconds(self.period_s, "period")
        self._check_slices()
        check_number(self.min_coverage, "min_coverage")
        if not 0 <= self.min_coverage <= 1:
            raise InvalidValue("min_coverage", f"must be in [0, 1]; got {shown(self.min_coverage)}")
        check_count(self.min_scored, "min_scored", 1)
        self._check_alerting()
        check_seconds(self.keep_firing_for_s, "keep_firing_for", minimum=0)
        if not isinstance(self.runbook, str):
            raise InvalidValue("runbook", f"must be a string (a URL); got {shown(self.runbook)}")
        if not all(isinstance(s, Suppression) for s in self.suppress):
            raise InvalidValue("suppress", "must be a list of Suppression")

    def _check_threshold(self) -> None:
        check_number(self.threshold, "threshold")
        allowed, meaning = _THRESHOLD_RULES[self.sli]
        if not allowed(self.threshold):
            raise InvalidValue(
                "threshold", f"for {self.sli} is {meaning}; got {shown(self.threshold)}"
            )

    def _check_trend_windows(self) -> None:
        if self.sli != "rmse_trend":
            if self.trend_windows is not None:
                raise InvalidValue("trend_windows", "applies only to sli: rmse_trend")
            return
        if self.trend_windows is None:
            object.__setattr__(self, "trend_windows", DEFAULT_TREND_WINDOWS)
        k = self.trend_windows
        if isinstance(k, bool) or not isinstance(k, int):
            raise InvalidValue(
                "trend_windows", f"must be a whole number of windows; got {shown(k)}"
            )
        if not MIN_TREND_WINDOWS <= k <= MAX_TREND_WINDOWS:
            raise InvalidValue(
                "trend_windows",
                f"must be between {MIN_TREND_WINDOWS} and {MAX_TREND_WINDOWS} "
                f"(default {DEFAULT_TREND_WINDOWS}); got {shown(k)}",
            )

    def _check_label_anomaly(self) -> None:
        if self.sli != "label_anomaly":
            for key in ("valid_range", "scale_factor"):
                if getattr(self, key) is not None:
                    raise InvalidValue(key, "applies only to sli: label_anomaly")
            return
        r = self.valid_range
        if r is None:
            raise InvalidValue("valid_range", "is required for sli: label_anomaly, e.g. [0, 1000]")
        if isinstance(r, (str, bytes)) or not isinstance(r, (tuple, list)) or len(r) != 2:
            raise InvalidValue("valid_range", f"must be [LOW, HIGH], two numbers; got {shown(r)}")
        check_number(r[0], "valid_range[0]")
        check_number(r[1], "valid_range[1]")
        if not float(r[0]) < float(r[1]):
            raise InvalidValue("valid_range", f"LOW must be below HIGH; got {shown(list(r))}")
        object.__setattr__(self, "valid_range", (float(r[0]), float(r[1])))
        if self.scale_factor is None:
            object.__setattr__(self, "scale_factor", DEFAULT_SCALE_FACTOR)
        check_number(self.scale_factor, "scale_factor")
        if not self.scale_factor > 1:
            raise InvalidValue(
                "scale_factor",
                f"must be > 1 (default {DEFAULT_SCALE_FACTOR:g}); got {shown(self.scale_factor)}",
            )
        object.__setattr__(self, "scale_factor", float(self.scale_factor))

    def _check_traffic(self) -> None:
        if self.sli != "traffic":
            keys = {"trailing": self.trailing_s, "retire_after": self.retire_after_s}
            for key, value in keys.items():
                if value is not None:
                    raise InvalidValue(key, "applies only to sli: traffic")
            return
        if self.trailing_s is None:
            object.__setattr__(self, "trailing_s", DEFAULT_TRAILING_S)
        check_seconds(self.trailing_s, "trailing")
        if self.retire_after_s is None:
            object.__setattr__(self, "retire_after_s", self.trailing_s)
        check_seconds(self.retire_after_s, "retire_after")

    def _check_drift(self) -> None:
        if self.sli in DRIFT_SLIS and self.statistic is None:
            object.__setattr__(self, "statistic", "psi")
        problem = drift_problem(self)
        if problem:
            raise InvalidValue(*problem)

    def _check_slices(self) -> None:
        check_slices(self.slices)

    def _check_alerting(self) -> None:
        if not isinstance(self.alerting, Alerting):
            raise InvalidValue("alerting", "must be an Alerting")
        for severity, windows in self.alerting.items():
            for i, w in enumerate(windows):
                if w.long_s > self.period_s:
                    raise InvalidValue(
                        f"alerting.{severity}[{i}].long",
                        f"must not be longer than period ({format_duration(self.period_s)}); "
                        f"got {format_duration(w.long_s)}",
                    )

    def covers(self, slice_name: str) -> bool:
        """Whether ``slice_name`` is one of this SLO's slices (see :func:`matches`)."""
        return matches(self.slices, slice_name)


@dataclasses.dataclass(frozen=True)
class SloFile:
    """A whole SLO file: ``version`` (1), its SLOs and its comparisons
    (:class:`~msewatch.transforms.compare.spec.Comparison`); names are unique across
    both, since they name alerts."""

    version: int
    slos: tuple[Slo, ...]
    comparisons: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "slos", tuple(self.slos))
        object.__setattr__(self, "comparisons", tuple(self.comparisons))
        if self.version != 1 or isinstance(self.version, bool):
            raise InvalidValue("version", f"must be 1; got {shown(self.version)}")
        seen = set()
        for slo in self.slos:
            if not isinstance(slo, Slo):
                raise InvalidValue("slos", "must be a list of Slo")
            if slo.name in seen:
                raise InvalidValue(
                    "name", "is used by an earlier SLO; names identify alerts", slo.name
                )
            seen.add(slo.name)
        for comparison in self.comparisons:
            if comparison.name in seen:
                raise InvalidValue(
                    "name", "is used by an earlier SLO or comparison", comparison.name
                )
            seen.add(comparison.name)

    def slice_specs(self) -> tuple[tuple[str, ...], ...]:
        """The slice specs the comparisons read: ``("model_version", *keys)`` for the
        keys of each of their slice patterns (``model_version`` alone for ``overall``)."""
        specs = []
        for comparison in self.comparisons:
            for pattern in comparison.slices:
                keys = tuple(k for k, _ in parse_slice_name(pattern))
                spec = ("model_version", *keys)
                if spec not in specs:
                    specs.append(spec)
        return tuple(specs)

    def metrics_needs(self) -> dict[str, tuple]:
        """The exact counts the metrics must carry for these SLOs, as ``MetricsConfig``
        arguments: every error_rate threshold, every label_freshness ``within``, the
        (baseline, candidate) version pairs of the comparisons, the ``(low, high)``
        valid ranges of the label_anomaly SLOs (ascending, once each) and the features of
        the feature_drift SLOs (in file order, once each)."""
        return {
            "error_thresholds": tuple(
                sorted({float(s.threshold) for s in self.slos if s.sli == "error_rate"})
            ),
            "freshness_within_s": tuple(
                sorted({int(s.within_s) for s in self.slos if s.sli == "label_freshness"})
            ),
            "version_pairs": tuple(
                dict.fromkeys((c.baseline, c.candidate) for c in self.comparisons)
            ),
            "valid_ranges": tuple(
                sorted({s.valid_range for s in self.slos if s.sli == "label_anomaly"})
            ),
            "features": tuple(
                dict.fromkeys(s.feature for s in self.slos if s.sli == "feature_drift")
            ),
        }


def unreachable_conditions(slo: Slo) -> list[tuple[str, BurnWindow]]:
    """Conditions that can never hold: their burn rate is above ``1 / (1 - objective)``,
    the burn rate when every eligible window or prediction is bad."""
    ceiling = 1.0 / (1.0 - slo.objective)
    return [(s, w) for s, ws in slo.alerting.items() for w in ws if w.burn_rate > ceiling]
