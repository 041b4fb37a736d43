"""What a comparison says: a frozen dataclass that validates itself.

A comparison (``comparisons:`` in the SLO file, ``docs/slo.md``: Comparisons) asks,
per slice, whether a candidate model version is worse than a baseline by more than a
relative ``margin`` of ``metric`` (mse or mae), with always-valid confidence. Its
slices are patterns without ``model_version`` (``overall``, ``region=*``): the
comparison reads the metrics rows of ``model_version=<baseline>`` and
``model_version=<candidate>`` crossed with the slice's keys, which the pipeline adds
to the slice specs. Durations are whole seconds (``*_s``). The SLO file's
``comparisons:`` entries are read into it by :mod:`msewatch.transforms.slo.config`,
with the SLOs' rules for durations and keys.
"""

from __future__ import annotations

import dataclasses

from msewatch.transforms.durations import format_duration
from msewatch.transforms.metrics.slices import parse_slice_name
from msewatch.transforms.shown import shown
from msewatch.transforms.slo.patterns import matches
from msewatch.transforms.slo.spec import (
    SEVERITIES,
    InvalidValue,
    check_count,
    check_number,
    check_seconds,
    check_slices,
    is_name,
)

VERSION_KEY = "model_version"
METRICS = ("mse", "mae")
MODES = ("auto", "paired", "unpaired")
FAIL, PASS, INCONCLUSIVE = "FAIL", "PASS", "INCONCLUSIVE"
DECISIONS = (FAIL, PASS, INCONCLUSIVE)  # of an evaluation (transforms/compare/stats.py)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Comparison:
    """One comparison of a candidate model version with a baseline (``docs/slo.md``).

    Attributes:
        name: names the comparison and its alerts (``<name>/<severity>/<slice>``).
        baseline: the baseline's model_version.
        candidate: the candidate's model_version.
        metric: ``mse`` or ``mae``: the loss compared (per example: e² or |e|).
        mode: ``paired`` (shadow: both versions scored the same ids; per-id loss
            differences), ``unpaired`` (canary: Welch on the two groups), or ``auto``:
            paired when the lookback holds at least ``min_scored`` pairs.
        slices: slice patterns without ``model_version`` (``overall``, ``region=*``).
        lookback_s: the settled windows summed: those ending in
            ``(frontier - lookback, frontier]``.
        margin: the candidate fails when its metric is worse than the baseline's by
            more than this share (relative difference ``C / B - 1``).
        alpha: 1 - the confidence of the always-valid bounds.
        min_scored: fewer scored predictions (or pairs) of either version: INCONCLUSIVE.
        min_coverage: a window counts when both versions' label coverage reaches it
            (or the window is complete): the SLOs' label gate.
        severity: the alert's severity (``page`` or ``ticket``).
        runbook: a URL put in the alerts.
    """

    name: str
    baseline: str
    candidate: str
    metric: str = "mse"
    mode: str = "auto"
    slices: tuple[str, ...] = ("overall",)
    lookback_s: int = 86400
    margin: float = 0.05
    alpha: float = 0.05
    min_scored: int = 200
    min_coverage: float = 0.8
    severity: str = "page"
    runbook: str = ""

    def __post_init__(self):
        if isinstance(self.slices, str):
            object.__setattr__(self, "slices", (self.slices,))
        object.__setattr__(self, "slices", tuple(self.slices))
        try:
            self._check()
        except InvalidValue as e:
            raise InvalidValue(
                e.key, e.what, self.name if isinstance(self.name, str) else None
            ) from None
        for name in ("margin", "alpha", "min_coverage"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def _check(self) -> None:
        if not is_name(self.name):
            raise InvalidValue(
                "name", f"must be 1-100 letters, digits, '-', '_' or '.'; got {shown(self.name)}"
            )
        for key in ("baseline", "candidate"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise InvalidValue(key, "must be a model version, e.g. {model_version: v1}")
        if self.baseline == self.candidate:
            raise InvalidValue(
                "candidate", f"must differ from the baseline ({shown(self.baseline)})"
            )
        _one_of(self.metric, "metric", METRICS)
        _one_of(self.mode, "mode", MODES)
        _one_of(self.severity, "severity", SEVERITIES)
        check_slices(self.slices)
        for i, pattern in enumerate(self.slices):
            if VERSION_KEY in dict(parse_slice_name(pattern)):
                raise InvalidValue(
                    f"slices[{i}]",
                    f"leave out {VERSION_KEY} (baseline and candidate choose it); "
                    f"got {shown(pattern)}",
                )
        check_seconds(self.lookback_s, "lookback")
        _share(self.margin, "margin", "a relative difference >= 0, e.g. 0.05", lambda v: v >= 0)
        _share(self.alpha, "alpha", "in (0, 0.5), e.g. 0.05", lambda v: 0 < v < 0.5)
        _share(self.min_coverage, "min_coverage", "in [0, 1]", lambda v: 0 <= v <= 1)
        check_count(self.min_scored, "min_scored", 2)
        if not isinstance(self.runbook, str):
            raise InvalidValue("runbook", f"must be a string (a URL); got {shown(self.runbook)}")

    def covers(self, rest: str) -> bool:
        """Whether the slice ``rest`` (a slice name without model_version) is compared."""
        return matches(self.slices, rest)

    def describe(self) -> str:
        """One line: what is compared with what, over which lookback."""
        return (
            f"{self.candidate} vs {self.baseline}: {self.metric}, fails beyond "
            f"+{self.margin:.0%} with {1 - self.alpha:.0%} confidence, "
            f"{self.mode}, over {format_duration(self.lookback_s)}"
        )


def _one_of(value, key: str, allowed) -> None:
    if value not in allowed:
        raise InvalidValue(key, f"must be one of {', '.join(allowed)}; got {shown(value)}")


def _share(value, key: str, what: str, ok) -> None:
    check_number(value, key)
    if not ok(value):
        raise InvalidValue(key, f"must be {what}; got {shown(value)}")
