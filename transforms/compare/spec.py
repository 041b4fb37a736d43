"""What a comparison says: a frozen dataclass that validates itself, and its YAML form.

A comparison (``comparisons:`` in the SLO file, ``docs/slo.md``: Comparisons) asks,
per slice, whether a candidate model version is worse than a baseline by more than a
relative ``margin`` of ``metric`` (mse or mae), with always-valid confidence. Its
slices are patterns without ``model_version`` (``overall``, ``region=*``): the
comparison reads the metrics rows of ``model_version=<baseline>`` and
``model_version=<candidate>`` crossed with the slice's keys, which the pipeline adds
to the slice specs. Durations are whole seconds (``*_s``).
"""

from __future__ import annotations

import dataclasses
import math

from msewatch.transforms.durations import format_duration, parse_duration_seconds
from msewatch.transforms.metrics.slices import parse_slice_name
from msewatch.transforms.slo.patterns import matches
from msewatch.transforms.slo.spec import _NAME, SEVERITIES, InvalidValue, check_slices

VERSION_KEY = "model_version"
METRICS = ("mse", "mae")
MODES = ("auto", "paired", "unpaired")
_KEYS = (
    "name",
    "baseline",
    "candidate",
    "metric",
    "mode",
    "slices",
    "lookback",
    "margin",
    "alpha",
    "min_scored",
    "min_coverage",
    "severity",
    "runbook",
)


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
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InvalidValue(
                "name", f"must be 1-100 letters, digits, '-', '_' or '.'; got {self.name!r}"
            )
        for key in ("baseline", "candidate"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise InvalidValue(key, "must be a model version, e.g. {model_version: v1}")
        if self.baseline == self.candidate:
            raise InvalidValue("candidate", f"must differ from the baseline ({self.baseline!r})")
        _one_of(self.metric, "metric", METRICS)
        _one_of(self.mode, "mode", MODES)
        _one_of(self.severity, "severity", SEVERITIES)
        check_slices(self.slices)
        for i, pattern in enumerate(self.slices):
            if VERSION_KEY in dict(parse_slice_name(pattern)):
                raise InvalidValue(
                    f"slices[{i}]",
                    f"leave out {VERSION_KEY} (baseline and candidate choose it); got {pattern!r}",
                )
        if isinstance(self.lookback_s, bool) or not isinstance(self.lookback_s, int):
            raise InvalidValue("lookback", f"must be a duration, e.g. 24h; got {self.lookback_s!r}")
        if self.lookback_s < 1:
            raise InvalidValue("lookback", f"must be at least 1s; got {self.lookback_s}")
        _share(self.margin, "margin", "a relative difference >= 0, e.g. 0.05", lambda v: v >= 0)
        _share(self.alpha, "alpha", "in (0, 0.5), e.g. 0.05", lambda v: 0 < v < 0.5)
        _share(self.min_coverage, "min_coverage", "in [0, 1]", lambda v: 0 <= v <= 1)
        if isinstance(self.min_scored, bool) or not isinstance(self.min_scored, int):
            raise InvalidValue("min_scored", f"must be a whole number; got {self.min_scored!r}")
        if self.min_scored < 2:
            raise InvalidValue("min_scored", f"must be >= 2; got {self.min_scored}")
        if not isinstance(self.runbook, str):
            raise InvalidValue("runbook", f"must be a string (a URL); got {self.runbook!r}")

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
        raise InvalidValue(key, f"must be one of {', '.join(allowed)}; got {value!r}")


def _share(value, key: str, what: str, ok) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int | float)
    if bad or not math.isfinite(value) or not ok(value):
        raise InvalidValue(key, f"must be {what}; got {value!r}")


def _version(raw, key: str) -> str:
    """``{model_version: v1}`` or ``v1`` -> ``v1``."""
    if isinstance(raw, dict):
        if set(raw) != {VERSION_KEY}:
            raise InvalidValue(key, f"must be {{{VERSION_KEY}: <version>}}; got {raw!r}")
        raw = raw[VERSION_KEY]
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw:
        raise InvalidValue(key, f"must be {{{VERSION_KEY}: <version>}}; got {raw!r}")
    return raw


def comparison_from_yaml(raw) -> Comparison:
    """One entry of ``comparisons:`` as a :class:`Comparison`.

    Raises:
        InvalidValue: an unknown or missing key, or a value the dataclass refuses.
    """
    if not isinstance(raw, dict):
        raise InvalidValue(None, f"a comparison must be a mapping with keys {', '.join(_KEYS)}")
    for key in raw:
        if key not in _KEYS:
            raise InvalidValue(str(key), f"unknown key; allowed: {', '.join(_KEYS)}")
    for key in ("name", "baseline", "candidate"):
        if key not in raw:
            raise InvalidValue(key, "is required")
    args = {k: v for k, v in raw.items() if k != "lookback"}
    args["baseline"], args["candidate"] = (
        _version(raw["baseline"], "baseline"),
        _version(raw["candidate"], "candidate"),
    )
    if "lookback" in raw:
        value = raw["lookback"]
        if isinstance(value, str):
            try:
                value = parse_duration_seconds(value)
            except ValueError as e:
                raise InvalidValue("lookback", str(e)) from None
            value = int(value) if value == int(value) else value
        args["lookback_s"] = value
    if isinstance(args.get("slices"), list):
        args["slices"] = tuple(args["slices"])
    return Comparison(**args)
