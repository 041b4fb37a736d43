"""Speed-ups for Beam's streaming ``BundleBasedDirectRunner`` (local runs only).

The streaming DirectRunner asks ``userstate.get_dofn_specs`` for the state and timer
specs of a DoFn every time it schedules or starts a bundle; each call inspects the
signature of every method of the DoFn (``dir(dofn)`` and ``inspect.signature``).
With the many small bundles that panes produce, that introspection was 60 % of a
streaming replay's CPU time. The specs of a DoFn are class attributes (the
``StateSpec``/``TimerSpec`` defaults of its methods), so they are memoized per DoFn
class. The evaluator also pickles and unpickles every DoFn at the start of every
bundle (to hand each bundle a fresh copy); the pickled bytes are now made once per
DoFn and unpickled per bundle, and ``core.get_function_arguments`` (an
``inspect.signature`` per DoFn method per bundle) is memoized per class function.
User state whose coder says ``in_memory_passthrough`` (the join's shard state, the
metrics' pane totals: immutable objects whose ``__deepcopy__`` returns themselves)
is stored as the object rather than encoded on every write and decoded on every read.
Nothing else changes: other runners never call this code (they keep state with
their own classes and encode it with the coder).

:func:`install` is idempotent; ``runners/launch.py`` calls it before running on the
BundleBasedDirectRunner.
"""

from __future__ import annotations

import types

from apache_beam.internal import pickler
from apache_beam.runners.direct import direct_runner, direct_userstate, transform_evaluator
from apache_beam.transforms import core, userstate

_ORIGINAL = userstate.get_dofn_specs
_SPECS_BY_CLASS: dict[type, tuple] = {}
_ORIGINAL_ARGUMENTS = core.get_function_arguments
_ARGUMENTS_BY_FUNCTION: dict = {}
_PICKLED: dict[int, tuple[object, bytes]] = {}


def _cached_get_dofn_specs(dofn):
    specs = _SPECS_BY_CLASS.get(type(dofn))
    if specs is None:
        specs = _SPECS_BY_CLASS[type(dofn)] = _ORIGINAL(dofn)
    return specs


def _cached_is_stateful_dofn(dofn) -> bool:
    state_specs, timer_specs = _cached_get_dofn_specs(dofn)
    return bool(state_specs or timer_specs)


def _cached_get_function_arguments(obj, func: str):
    """``core.get_function_arguments`` memoized per class function.

    Objects that describe their own arguments (``_inspect_<func>``, e.g. the DoFn
    wrapping a ``Map`` lambda) are inspected every time, as before.
    """
    method = getattr(obj, func)
    function = getattr(method, "__func__", None)
    if function is None or hasattr(obj, f"_inspect_{func}"):
        return _ORIGINAL_ARGUMENTS(obj, func)
    cached = _ARGUMENTS_BY_FUNCTION.get(function)
    if cached is None:
        cached = _ARGUMENTS_BY_FUNCTION[function] = _ORIGINAL_ARGUMENTS(obj, func)
    args, defaults = cached
    return list(args), list(defaults)


def _roundtrip_pickled_once(dofn):
    """A fresh copy of ``dofn`` per bundle, as before, from bytes pickled once."""
    entry = _PICKLED.get(id(dofn))
    if entry is None or entry[0] is not dofn:
        entry = _PICKLED[id(dofn)] = (dofn, pickler.dumps(dofn))
    return pickler.loads(entry[1])


_ORIGINAL_ENCODE = direct_userstate.DirectRuntimeState._encode
_ORIGINAL_DECODE = direct_userstate.DirectRuntimeState._decode


def _passthrough(coder) -> bool:
    return getattr(coder, "in_memory_passthrough", False)


def _encode(self, value):
    return value if _passthrough(self._state_spec.coder) else _ORIGINAL_ENCODE(self, value)


def _decode(self, value):
    return value if _passthrough(self._state_spec.coder) else _ORIGINAL_DECODE(self, value)


def install() -> None:
    """Memoizes DoFn introspection and pickling in the DirectRunner's modules."""
    for module in (userstate, transform_evaluator):
        module.get_dofn_specs = _cached_get_dofn_specs
        module.is_stateful_dofn = _cached_is_stateful_dofn
    core.get_function_arguments = _cached_get_function_arguments
    # The evaluator pickles and unpickles every DoFn at the start of every bundle.
    transform_evaluator.pickler = types.SimpleNamespace(roundtrip=_roundtrip_pickled_once)
    # User state lives in this process: keep immutable values as they are.
    direct_userstate.DirectRuntimeState._encode = _encode
    direct_userstate.DirectRuntimeState._decode = _decode
    # direct_runner and direct_userstate call through the userstate module.
    assert direct_runner.userstate is userstate and direct_userstate.userstate is userstate
