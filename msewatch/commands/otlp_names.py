"""The OpenTelemetry names of ``msewatch serve``'s metrics, for ``--otlp``
(:mod:`msewatch.commands.otlp`).

One rule turns each Prometheus family that :class:`msewatch.commands.serve.TablesCollector` builds
into an instrument (:func:`instrument_name`) and each label into an attribute
(:func:`attribute_name`), so there is no second list of metrics; :func:`series` applies
them to the families of one read. docs/observability.md lists the result.
"""

from __future__ import annotations

from collections.abc import Iterable

NAMESPACE = "msewatch"
_UNITS = (  # (Prometheus suffix, what stays of it in the name, OpenTelemetry unit)
    ("_timestamp_seconds", "_timestamp", "s"),
    ("_per_second", "", "/s"),
    ("_seconds", "", "s"),
    ("_ratio", "", "1"),
)
_SCOPES = ("slo", "comparison", "serve")  # msewatch_slo_* -> msewatch.slo.*; others: .slice.


def instrument_name(prometheus_name: str) -> tuple[str, str]:
    """A Prometheus family name -> ``(OpenTelemetry instrument name, unit)``.

    ``msewatch_rmse`` -> ``("msewatch.slice.rmse", "")``; ``msewatch_slo_burn_rate`` ->
    ``("msewatch.slo.burn_rate", "")``; ``msewatch_window_end_timestamp_seconds`` ->
    ``("msewatch.slice.window_end_timestamp", "s")``; ``msewatch_slice_info`` ->
    ``("msewatch.slice.info", "")``. The unit leaves the name (semantic conventions keep
    units in the unit field), the first word after ``msewatch_`` that names a scope
    (``slo``, ``comparison``, ``serve``) becomes a namespace, every other metric is a
    slice's.

    Raises:
        ValueError: not an ``msewatch_`` name.
    """
    prefix = f"{NAMESPACE}_"
    if not prometheus_name.startswith(prefix):
        raise ValueError(f"not an msewatch metric: {prometheus_name!r}")
    rest, unit = prometheus_name[len(prefix) :], ""
    for suffix, kept, otel_unit in _UNITS:
        if rest.endswith(suffix):
            rest, unit = rest[: -len(suffix)] + kept, otel_unit
            break
    scope, _, tail = rest.partition("_")
    if scope not in (*_SCOPES, "slice") or not tail:
        scope, tail = "slice", rest
    return f"{NAMESPACE}.{scope}.{tail}", unit


def attribute_name(label: str) -> str:
    """A Prometheus label -> its attribute: ``slice`` -> ``msewatch.slice``."""
    return f"{NAMESPACE}.{label}"


def _slice_keys(families: list) -> dict[str, dict[str, str]]:
    """Per slice, its key attributes, from the ``msewatch_slice_info`` samples (the one
    place that names the key labels)."""
    keys: dict[str, dict[str, str]] = {}
    for family in families:
        if family.name == f"{NAMESPACE}_slice_info":
            for sample in family.samples:
                labels = dict(sample.labels)
                name = labels.pop("slice")
                keys[name] = {attribute_name(k): v for k, v in labels.items()}
    return keys


def series(families: Iterable) -> dict[str, tuple[str, str, str, list[tuple[float, dict]]]]:
    """Prometheus families -> per instrument name ``(kind, unit, description, points)``.

    ``kind`` is ``gauge`` or ``counter``; ``points`` are ``(value, attributes)``.
    """
    families = list(families)
    keys = _slice_keys(families)
    out = {}
    for family in families:
        if family.type not in ("gauge", "counter"):
            continue
        name, unit = instrument_name(family.name)
        values = {family.name, f"{family.name}_total"}
        points = []
        for sample in family.samples:
            if sample.name not in values:  # a counter's _created
                continue
            attributes = {attribute_name(k): v for k, v in sample.labels.items()}
            for key, value in keys.get(sample.labels.get("slice"), {}).items():
                attributes.setdefault(key, value)
            points.append((float(sample.value), attributes))
        out[name] = (family.type, unit, family.documentation, points)
    return out
