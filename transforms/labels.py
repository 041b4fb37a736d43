"""Label names for slice keys: one rule for Alertmanager and for Prometheus (``serve``).

Alertmanager and Prometheus accept label names that match ``[a-zA-Z_][a-zA-Z0-9_]*``
(Alertmanager answers 400 to an alert with any other name), and Prometheus reserves
names that start with ``__``. A slice key is free text (``--slice sku-category``), so
each key of a slice becomes a label through :func:`label_names`:

1. a key that is a valid name, does not start with ``__`` and is not one of the
   caller's own labels (``reserved``: ``slo``, ``severity``, ...) keeps its name;
2. otherwise every character outside ``[a-zA-Z0-9_]`` becomes ``_``, and the name is
   prefixed with ``slice_`` when it is then empty or only ``_``, starts with a digit or
   ``__``, or is reserved (``sku-category`` -> ``sku_category``, ``2nd`` ->
   ``slice_2nd``, ``é`` -> ``slice__``, ``severity`` -> ``slice_severity``);
3. a name so made that is already taken (by a key of rule 1, a reserved label or an
   earlier key of rule 2, keys taken in sorted order) gets the suffix ``_2``, ``_3``,
   ... (the first free one): ``sku-category`` and ``sku_category`` together give
   ``sku_category_2`` and ``sku_category``.

The mapping depends only on the set of keys, never on their order. Whoever renames a
key keeps the original: alerts carry it in an annotation, ``serve`` in the ``slice``
label (the whole slice name, unchanged).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
"""A valid Alertmanager / Prometheus label name (matched whole)."""
_INVALID = re.compile(r"[^a-zA-Z0-9_]")
PREFIX = "slice_"


def is_label_name(name: str) -> bool:
    """True for a name both Alertmanager and Prometheus accept as a label of ours."""
    return LABEL_NAME.fullmatch(name) is not None and not name.startswith("__")


def label_names(keys: Iterable[str], reserved: Iterable[str] = ()) -> dict[str, str]:
    """The label name of each slice key (see the module docstring for the rule).

    Args:
        keys: slice keys (duplicates are ignored).
        reserved: label names the caller uses itself.

    Returns:
        ``{key: label name}``: distinct valid names, none in ``reserved``.
    """
    reserved = set(reserved)
    keys = sorted(set(keys))
    names = {k: k for k in keys if is_label_name(k) and k not in reserved}
    taken = reserved | set(names.values())
    for key in keys:
        if key in names:
            continue
        base = _INVALID.sub("_", key)
        if not base.strip("_") or base[0].isdigit() or base.startswith("__") or base in reserved:
            base = PREFIX + base
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        names[key] = name
        taken.add(name)
    return names
