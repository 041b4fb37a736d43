"""The SLO file: read YAML into the validated dataclasses of :mod:`.spec`.

The file (``docs/examples/slo.yaml`` is a commented example, ``docs/slo.md`` the
semantics)::

    version: 1
    slos:
      - name: forecast-rmse
        sli: rmse              # rmse | error_rate | label_freshness | nan_rate | rmse_trend
                               # | label_anomaly (with valid_range: [LOW, HIGH])
                               # | traffic
                               # | prediction_drift | label_drift | feature_drift
        threshold: 40
        objective: 0.99
        period: 30d
        slices: ["overall", "region=*"]
        ...
    comparisons:
      - name: v2-rollout       # is model_version v2 worse than v1? (transforms/compare/spec.py)
        baseline: {model_version: v1}
        candidate: {model_version: v2}
        ...

A file may have ``slos: []`` (only comparisons). Durations are written ``90s``,
``5m``, ``1h``, ``30d`` (:mod:`msewatch.transforms.durations`) or as a number of
seconds, and must be whole seconds. Suppression times are RFC 3339 with an offset
(``2026-11-02T00:00:00Z``, quoted or not) or epoch milliseconds, UTC. A key written
twice is refused.

Every mistake raises :class:`SloFileError`, a ``ValueError`` whose one-line message
names the file, the SLO (its name, or ``slos[i]`` when it has none), the key and
what is allowed: ``slo.yaml: forecast-rmse: objective: must be between 0 and 1 ...``.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import pyarrow as pa
import yaml

from msewatch.schemas.slo import epoch_ms
from msewatch.transforms.compare.spec import VERSION_KEY, Comparison
from msewatch.transforms.durations import parse_duration_seconds
from msewatch.transforms.parse.timestamps import time_from_text
from msewatch.transforms.shown import shown
from msewatch.transforms.slo.patterns import matches
from msewatch.transforms.slo.reference import DRIFT_SLIS, Reference, read_reference_file
from msewatch.transforms.slo.spec import (
    LABEL_GATED,
    SEVERITIES,
    SLIS,
    Alerting,
    BurnWindow,
    InvalidValue,
    Slo,
    SloFile,
    Suppression,
    check_time_ms,
    one_line,
    unreachable_conditions,
)

__all__ = [
    "Alerting",
    "BurnWindow",
    "InvalidValue",
    "LABEL_GATED",
    "SEVERITIES",
    "SLIS",
    "Slo",
    "SloFile",
    "SloFileError",
    "Suppression",
    "load_slo_file",
    "matches",
    "parse_slo_file",
    "unreachable_conditions",
]


class SloFileError(ValueError):
    """A mistake in an SLO file: ``<file>: <slo>: <key>: <what>`` on one line."""

    def __init__(self, path: str, slo: str | None, key: str | None, what: str):
        self.path, self.slo, self.key, self.what = path, slo, key, what
        super().__init__(one_line(str(path), slo, key, what))


def parse_slo_file(text: str, path: str = "<slo file>") -> SloFile:
    """The :class:`SloFile` written in ``text`` (YAML); ``path`` names it in errors, and
    a drift reference file's relative path is relative to its folder.

    Raises:
        SloFileError: the first mistake, naming ``path``, the SLO and the key.
    """
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader that refuses repeated keys
    except RecursionError:
        raise SloFileError(path, None, None, "not valid YAML: nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SloFileError(path, None, None, f"{where}not valid YAML: {problem}") from None
    folder = Path(path).parent if path != "<slo file>" else Path.cwd()
    try:
        return _file(doc, folder)
    except InvalidValue as e:
        raise SloFileError(path, e.slo, e.key, e.what) from None


def load_slo_file(path: str) -> SloFile:
    """Reads and validates the SLO file at ``path``.

    Raises:
        SloFileError: a mistake in the file.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
        raise SloFileError(
            path,
            None,
            None,
            f"byte {e.start}: not UTF-8 text"
            + (" (this file is UTF-16)" if utf16 else "")
            + ": save it as UTF-8 YAML",
        ) from None
    return parse_slo_file(text, path)


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping, and an
    integer Python will not read (more than 4,300 digits) with its line."""

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, "a number too long to read", node.start_mark
            ) from None

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {shown(key)} is written twice", key_node.start_mark
                    )
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader says so
                break
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


_TOP_KEYS = ("version", "slos", "comparisons")
_FIELDS = {  # key in the file -> field of Slo
    "name": "name",
    "sli": "sli",
    "threshold": "threshold",
    "within": "within_s",
    "trend_windows": "trend_windows",
    "objective": "objective",
    "period": "period_s",
    "slices": "slices",
    "min_coverage": "min_coverage",
    "min_scored": "min_scored",
    "alerting": "alerting",
    "keep_firing_for": "keep_firing_for_s",
    "runbook": "runbook",
    "suppress": "suppress",
    "valid_range": "valid_range",
    "scale_factor": "scale_factor",
    "trailing": "trailing_s",
    "retire_after": "retire_after_s",
    "reference": "reference",
    "statistic": "statistic",
    "feature": "feature",
}
_REQUIRED = ("name", "sli", "threshold", "objective")


def _mapping(value, key: str | None, allowed, slo: str | None = None) -> dict:
    if not isinstance(value, dict):
        raise InvalidValue(key, f"must be a mapping with keys {', '.join(allowed)}", slo)
    for k in value:
        if k not in allowed:
            raise InvalidValue(
                f"{key}.{k}" if key else str(k), f"unknown key; allowed: {', '.join(allowed)}", slo
            )
    return value


def _list(value, key: str) -> list:
    if not isinstance(value, list):
        raise InvalidValue(key, f"must be a list; got {shown(value)}")
    return value


def _entries(doc: dict, key: str, parse) -> list:
    """Each entry of the list ``doc[key]`` parsed; a mistake names the entry (its name,
    or ``key[i]`` when it has none)."""
    out = []
    for i, raw in enumerate(_list(doc.get(key, []), key)):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = name if isinstance(name, str) and name else f"{key}[{i}]"
        try:
            out.append(parse(raw))
        except InvalidValue as e:
            raise InvalidValue(e.key, e.what, label) from None
    return out


def _file(doc, folder: Path) -> SloFile:
    if doc is None:
        raise InvalidValue(None, "the file is empty: write version: 1 and slos: [...]")
    doc = _mapping(doc, None, _TOP_KEYS)
    if "version" not in doc:
        raise InvalidValue("version", "is required: write version: 1")
    slos = _entries(doc, "slos", lambda raw: _slo(raw, folder))
    comparisons = _entries(doc, "comparisons", _comparison)
    return SloFile(version=doc["version"], slos=tuple(slos), comparisons=tuple(comparisons))


def _slo(raw, folder: Path) -> Slo:
    raw = _mapping(raw, None, tuple(_FIELDS))
    for key in _REQUIRED:
        if key not in raw:
            raise InvalidValue(key, "is required")
    sli = raw["sli"]
    if sli not in SLIS:
        raise InvalidValue("sli", f"must be one of {', '.join(SLIS)}; got {shown(sli)}")
    if sli not in LABEL_GATED:
        for key in ("min_coverage", "min_scored"):
            if key in raw and not (key == "min_scored" and sli in DRIFT_SLIS):
                gated = f"{', '.join(LABEL_GATED[:-1])} or {LABEL_GATED[-1]}"
                drift = " (min_scored: also the drift SLIs)" if key == "min_scored" else ""
                raise InvalidValue(key, f"applies only to sli: {gated}{drift}")
    args = {_FIELDS[k]: v for k, v in raw.items()}
    for key in ("within", "period", "keep_firing_for", "trailing", "retire_after"):
        if key in raw:
            args[_FIELDS[key]] = _seconds(raw[key], key)
    if isinstance(args.get("slices"), str):
        args["slices"] = (args["slices"],)
    elif "slices" in args:
        args["slices"] = tuple(_list(args["slices"], "slices"))
    if "alerting" in raw:
        args["alerting"] = _alerting(raw["alerting"])
    if "reference" in raw:
        args["reference"] = _reference(raw["reference"], folder)
    if "suppress" in raw:
        args["suppress"] = tuple(
            _suppression(s, f"suppress[{i}]")
            for i, s in enumerate(_list(raw["suppress"], "suppress"))
        )
    return Slo(**args)


_COMPARISON_FIELDS = {  # key in the file -> field of Comparison
    "name": "name",
    "baseline": "baseline",
    "candidate": "candidate",
    "metric": "metric",
    "mode": "mode",
    "slices": "slices",
    "lookback": "lookback_s",
    "margin": "margin",
    "alpha": "alpha",
    "min_scored": "min_scored",
    "min_coverage": "min_coverage",
    "severity": "severity",
    "runbook": "runbook",
}


def _comparison(raw) -> Comparison:
    raw = _mapping(raw, None, tuple(_COMPARISON_FIELDS))
    for key in ("name", "baseline", "candidate"):
        if key not in raw:
            raise InvalidValue(key, "is required")
    args = {_COMPARISON_FIELDS[k]: v for k, v in raw.items()}
    for key in ("baseline", "candidate"):
        args[key] = _version(raw[key], key)
    if "lookback" in raw:
        args["lookback_s"] = _seconds(raw["lookback"], "lookback")
    if isinstance(args.get("slices"), str):
        args["slices"] = (args["slices"],)
    elif "slices" in args:
        args["slices"] = tuple(_list(args["slices"], "slices"))
    return Comparison(**args)


def _version(raw, key: str) -> str:
    """``{model_version: v1}`` or ``v1`` -> ``v1`` (a number is its text)."""
    if isinstance(raw, dict):
        if set(raw) != {VERSION_KEY}:
            raise InvalidValue(key, f"must be {{{VERSION_KEY}: <version>}}; got {shown(raw)}")
        raw = raw[VERSION_KEY]
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw:
        raise InvalidValue(key, f"must be {{{VERSION_KEY}: <version>}}; got {shown(raw)}")
    return raw


def _alerting(raw) -> Alerting:
    raw = _mapping(raw, "alerting", SEVERITIES)
    severities = {}
    for severity, windows in raw.items():
        parsed = []
        for i, w in enumerate(_list(windows, f"alerting.{severity}")):
            key = f"alerting.{severity}[{i}]"
            w = _mapping(w, key, ("long", "short", "burn_rate"))
            for k in ("long", "short", "burn_rate"):
                if k not in w:
                    raise InvalidValue(
                        f"{key}.{k}", "is required (e.g. long: 1h, short: 5m, burn_rate: 14.4)"
                    )
            try:
                parsed.append(
                    BurnWindow(
                        _seconds(w["long"], "long"), _seconds(w["short"], "short"), w["burn_rate"]
                    )
                )
            except InvalidValue as e:
                raise InvalidValue(f"{key}.{e.key}", e.what) from None
        severities[severity] = tuple(parsed)
    return Alerting(**severities)


def _suppression(raw, key: str) -> Suppression:
    raw = _mapping(raw, key, ("from", "to", "reason"))
    for k in ("from", "to"):
        if k not in raw:
            raise InvalidValue(f"{key}.{k}", 'is required, e.g. "2026-11-02T00:00:00Z"')
    try:
        return Suppression(
            _timestamp_ms(raw["from"], "from"),
            _timestamp_ms(raw["to"], "to"),
            raw.get("reason", ""),
        )
    except InvalidValue as e:
        raise InvalidValue(f"{key}.{e.key}", e.what) from None


def _reference(raw, folder: Path) -> Reference:
    """``{from: T1, to: T2}``, ``{trailing: 7d}`` or ``{file: PATH}`` (a file is read now)."""
    forms = "{from: T1, to: T2}, {trailing: 7d} or {file: PATH}"
    raw = _mapping(raw, "reference", ("from", "to", "trailing", "file"))
    keys = set(raw)
    try:
        if keys == {"from", "to"}:
            return Reference(
                "range", _timestamp_ms(raw["from"], "from"), _timestamp_ms(raw["to"], "to")
            )
        if keys == {"trailing"}:
            return Reference("trailing", trailing_s=_seconds(raw["trailing"], "trailing"))
        if keys == {"file"}:
            return read_reference_file(raw["file"], folder)
    except InvalidValue as e:
        raise InvalidValue(f"reference.{e.key}", e.what) from None
    except ValueError as e:
        key = "file" if "file" in keys else "trailing" if "trailing" in keys else "to"
        raise InvalidValue(f"reference.{key}", str(e)) from None
    raise InvalidValue("reference", f"must be one of {forms}; got keys {', '.join(sorted(keys))}")


def _seconds(value, key: str) -> int:
    """A duration (``1h``) or a number of seconds, as whole seconds."""
    if isinstance(value, str):
        try:
            value = parse_duration_seconds(value)
        except ValueError as e:
            raise InvalidValue(key, str(e)) from None
    elif (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise InvalidValue(key, f"must be a duration such as 90s, 5m, 1h, 30d; got {shown(value)}")
    if value != int(value):
        raise InvalidValue(key, f"must be a whole number of seconds; got {shown(value)}s")
    return int(value)


def _timestamp_ms(value, key: str) -> int:
    """RFC 3339 with an offset (text, or a timestamp YAML parsed) or epoch ms -> UTC epoch ms."""
    what = 'must be an RFC 3339 time with an offset, e.g. "2026-11-02T00:00:00Z"'
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise InvalidValue(key, f"{what} (this one has no Z or offset)")
        return epoch_ms(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidValue(key, f"{what}; got {shown(value)}")
    ms, ok = time_from_text(pa.array([str(value)]))
    if not ok[0]:
        raise InvalidValue(key, f"{what}, or epoch milliseconds; got {shown(value)}")
    check_time_ms(int(ms[0]), key, value)
    return int(ms[0])
