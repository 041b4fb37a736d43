"""Slice patterns of an SLO: which slices it covers.

A pattern is one of

* ``overall``: the overall slice;
* an exact slice name, ``key=value`` pairs joined by ``,`` and written as the
  ``metrics`` table writes them (:func:`~msewatch.transforms.metrics.slices.slice_name`:
  inside a value ``%``, ``,`` and ``=`` are ``%25``, ``%2C`` and ``%3D``);
* pairs whose value is ``*``, which stands for every value of that key:
  ``region=*`` covers ``region=eu``, ``region=us``, ...; ``model_version=*,region=eu``
  covers every model version's ``region=eu`` cross.

A pattern covers a slice when both have the same keys (in any order) and every
value is equal or ``*``. So ``region=*`` covers the slices of ``--slice region``, not
the crosses of ``--slice model_version,region``: write ``model_version=*,region=*``
for those. ``*`` is only a whole value (``region=eu*`` is refused, not a glob).

Values are compared in their written (escaped) form, split at the ``,`` between
pairs and at the first ``=`` of a pair, which the escaping keeps unambiguous;
:func:`matches` is the one place that compares a name with a pattern.
"""

from __future__ import annotations

from msewatch.transforms.metrics.slices import OVERALL, parse_slice_name
from msewatch.transforms.shown import shown

WILDCARD = "*"
ALLOWED = (
    "overall, an exact slice name (key=value pairs joined by ','), "
    "or pairs with the value * (e.g. region=*)"
)


def _pairs(name: str) -> dict[str, str] | None:
    """``{key: written value}`` of a slice name or pattern; None if it is not one."""
    if name == OVERALL:
        return {}
    pairs: dict[str, str] = {}
    for part in name.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key or key in pairs:
            return None
        pairs[key] = value
    return pairs


def check_pattern(pattern: object) -> str:
    """``pattern`` if it is a valid slice pattern.

    Raises:
        ValueError: not a string, not a slice name, a key twice, or ``*`` inside a value.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"a slice pattern is a non-empty string ({ALLOWED}); got {shown(pattern)}")
    try:
        parse_slice_name(pattern)
    except ValueError:
        raise ValueError(f"bad slice pattern {shown(pattern)}: use {ALLOWED}") from None
    pairs = _pairs(pattern)
    if pairs is None:
        raise ValueError(f"bad slice pattern {shown(pattern)}: a key appears twice")
    for key, value in pairs.items():
        if WILDCARD in value and value != WILDCARD:
            raise ValueError(
                f"bad slice pattern {shown(pattern)}: {key}={value} is not supported; "
                f"'*' stands alone for every value ({key}=*)"
            )
    return pattern


def matches(slo_or_patterns, slice_name: str) -> bool:
    """Whether a slice is covered by an SLO (its ``slices``) or by patterns.

    Args:
        slo_or_patterns: an object with a ``slices`` attribute (an ``Slo``), an
            iterable of patterns, or one pattern string.
        slice_name: a slice name as in the ``metrics`` table.

    Returns:
        True when any pattern covers the slice (see the module docstring).
    """
    patterns = getattr(slo_or_patterns, "slices", slo_or_patterns)
    if isinstance(patterns, str):
        patterns = (patterns,)
    target = _pairs(slice_name)
    if target is None:
        return False
    return any(_covers(_pairs(p), target) for p in patterns)


def _covers(pattern: dict[str, str] | None, target: dict[str, str]) -> bool:
    if pattern is None or pattern.keys() != target.keys():
        return False
    return all(v == WILDCARD or v == target[k] for k, v in pattern.items())
