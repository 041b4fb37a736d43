"""The explicit, versioned state coder of the metrics' pane totals (no pickle).

``AccumulatePanes`` keeps, per window, ``{slice: ErrorAccumulator}`` in Beam state;
:class:`PaneTotalsCoder` writes it as a tagged tree (``schemas/state_tree.py``) after
the ``VersionedStateCoder`` header (tag ``MWMT``).
"""

from __future__ import annotations

import pyarrow as pa

from msewatch.schemas import state_tree
from msewatch.transforms.metrics.accumulators import ErrorAccumulator
from msewatch.transforms.metrics.distributions import Distributions
from msewatch.transforms.metrics.sketch import ValueSketch

state_tree.register(b"E", ErrorAccumulator)
state_tree.register(b"D", Distributions)
state_tree.register(b"V", ValueSketch)


class PaneTotalsCoder(state_tree.TreeStateCoder):
    """``{slice: ErrorAccumulator}`` of one window (``AccumulatePanes``' state), encoded
    explicitly; decodes to a :class:`Totals`."""

    MAGIC = b"MWMT"
    VERSION = 1

    def write_payload(self, sink: pa.NativeFile, value) -> None:
        super().write_payload(sink, dict(value))

    def read_payload(self, payload: memoryview):
        value = super().read_payload(payload)
        if not isinstance(value, dict):
            raise ValueError("PaneTotalsCoder: the payload is not one totals map")
        return Totals(value)


class Totals(dict):
    """``{slice: ErrorAccumulator}`` of a window so far; never modified once stored."""

    def __deepcopy__(self, memo) -> Totals:
        return self
