"""The features a run reads from the predictions' ``features`` map: their names, their
batch columns and the cap on their number (docs/semantics.md, "Input records: the
features map")."""

from __future__ import annotations

FEATURE_PREFIX = "feat."
PREDICTION_TIME_FIELD = "event_time"  # the prediction's time field (schemas/records.py)
MAX_FEATURES = 32
"""A run sketches at most this many features (``--feature`` and the feature_drift SLOs)."""
MAX_NAME_BYTES = 1024
"""A feature name: at most this many UTF-8 bytes (like an id or a segment value)."""


def feature_column(name: str) -> str:
    """Name of the batch column holding the values of feature ``name``."""
    return FEATURE_PREFIX + name


def check_features(names, segment_keys=()) -> tuple[str, ...]:
    """``names`` as a tuple of the features a run reads, in the given order.

    Raises:
        ValueError: a name that is not a non-empty string of at most
            :data:`MAX_NAME_BYTES` bytes, a repeat, more than :data:`MAX_FEATURES`
            names, or a name that is also a segment key or ``event_time`` (in JSON those
            keys' numbers are read as text, at any depth).
    """
    names = tuple(names or ())
    for name in names:
        if not isinstance(name, str) or not name or len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValueError(
                f"a feature name must be a non-empty string of at most {MAX_NAME_BYTES} "
                f"bytes; got {name!r}"
            )
    if len(set(names)) < len(names):
        raise ValueError(f"feature names must be distinct; got {list(names)}")
    if len(names) > MAX_FEATURES:
        raise ValueError(
            f"at most {MAX_FEATURES} features can be sketched (--feature and the SLO file's "
            f"feature_drift features together); got {len(names)}: keep the ones you watch"
        )
    clash = sorted(set(names) & {*segment_keys, PREDICTION_TIME_FIELD})
    if clash:
        raise ValueError(
            f"feature {clash[0]!r} is also a segment key or the event_time field, whose "
            "numbers are read as text: slice by it or sketch it, not both"
        )
    return names
