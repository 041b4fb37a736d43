"""Speed-ups for Beam's streaming ``BundleBasedDirectRunner``, in force only inside
:func:`installed`.

Why: the streaming DirectRunner starts many small bundles (every pane, every timer
firing), and at each one it

* pickles and unpickles the DoFn, to hand the bundle a fresh copy;
* asks ``userstate.get_dofn_specs`` (and ``is_stateful_dofn``) for the DoFn's state
  and timer specs, which wraps every method of the DoFn (``dir(dofn)``) and reads
  its signature;
* calls ``core.get_function_arguments`` (an ``inspect.signature``) for each method
  it will invoke;
* encodes every user-state write and decodes every read with the state's coder.

That was most of a streaming replay's CPU time. Inside :func:`installed`:

* each DoFn is pickled once (cleared on exit) and unpickled per bundle, so every
  bundle still gets a fresh copy;
* ``get_function_arguments`` is memoized per function (the answer depends on the
  function only); objects that describe their own arguments (``_inspect_<name>``,
  e.g. the DoFn behind ``beam.Map``) are asked every time, as Beam does;
* ``get_dofn_specs`` is memoized per DoFn class when the class alone decides the
  answer: every method Beam finds on the instance is a plain function of the class.
  A DoFn with a method in its instance ``__dict__`` (Beam's exception-handling
  wrapper builds ``process`` per instance), a property or slot that yields a method,
  or its own ``__getattribute__``/``__getattr__`` is inspected by Beam every time;
* user state whose coder is one of ``_PASSTHROUGH_CODERS`` (the join's shard state,
  the metrics' pane totals: immutable objects whose ``__deepcopy__`` returns
  themselves) is kept as the object instead of being encoded at every write.

Why scoped: Beam 2.77 calls ``core.get_function_arguments`` and
``userstate.get_dofn_specs`` from ``apache_beam/runners/common.py`` for every
runner, the FnApiRunner included, so patches left in place would reach pipelines
that never asked for them. The context must stay open until the pipeline has
finished: state written while it is open may be kept as objects, which Beam's own
``_decode`` cannot read. It patches module attributes, so while it is open it is in
force for the whole process (every thread). Nesting is safe: the outermost context
installs and restores. The patched functions are Beam internals; on entry the Beam
version and the patched attributes are checked, with a clear error when they are
not the ones this module was written for (apache-beam 2.77.x).

``runners/launch.py`` opens it around the runs on the BundleBasedDirectRunner
(``--streaming-replay`` and local Pub/Sub); ``tests/harness.py`` around its replays.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import threading
import types
import weakref
from collections.abc import Iterator

import apache_beam
from apache_beam.internal import pickler
from apache_beam.runners import common
from apache_beam.runners.direct import direct_runner, direct_userstate, transform_evaluator
from apache_beam.transforms import core, userstate

from msewatch.transforms.join.state import CELL_CODERS
from msewatch.transforms.metrics.totals_coder import PaneTotalsCoder

WRITTEN_FOR = "2.77"
"""The apache-beam minor version whose internals this module patches."""

_State = direct_userstate.DirectRuntimeState
# What is patched: owner, attribute, and where Beam defines the value found there
# (under apache_beam.); transform_evaluator imported the userstate functions by name.
_TARGETS = (
    (core, "get_function_arguments", "transforms.core.get_function_arguments"),
    (userstate, "get_dofn_specs", "transforms.userstate.get_dofn_specs"),
    (userstate, "is_stateful_dofn", "transforms.userstate.is_stateful_dofn"),
    (transform_evaluator, "get_dofn_specs", "transforms.userstate.get_dofn_specs"),
    (transform_evaluator, "is_stateful_dofn", "transforms.userstate.is_stateful_dofn"),
    (_State, "_encode", "runners.direct.direct_userstate.DirectRuntimeState._encode"),
    (_State, "_decode", "runners.direct.direct_userstate.DirectRuntimeState._decode"),
)
# Beam's functions, captured on import (checked on entry) and called by the patches.
_GET_FUNCTION_ARGUMENTS = core.get_function_arguments
_GET_DOFN_SPECS = userstate.get_dofn_specs
_ENCODE = vars(_State)["_encode"]
_DECODE = vars(_State)["_decode"]
_ORIGINALS = {(owner, name): vars(owner).get(name) for owner, name, _ in _TARGETS}

_lock = threading.Lock()
_depth = 0  # open installed() contexts
_restore: list[tuple[object, str, object]] = []  # (owner, attribute, original)
# Caches, cleared when the outermost context exits. Keys are weak: a function or
# class that goes away (e.g. a DoFn copy's per-instance method) leaves with its entry.
_arguments_by_function: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_specs_by_class: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_names_by_class: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_pickled: dict[int, tuple[object, bytes]] = {}  # id(dofn) -> (dofn, its pickled bytes)


def check_beam_version(version: str) -> None:
    """Refuses an apache-beam version whose internals this module was not written for.

    Args:
        version: an apache-beam version string, e.g. ``apache_beam.__version__``.

    Raises:
        RuntimeError: ``version`` is not 2.77.x.
    """
    if re.fullmatch(rf"{re.escape(WRITTEN_FOR)}(\..*)?", version) is None:
        raise RuntimeError(
            f"msewatch's streaming DirectRunner speed-ups (runners/direct_speedups.py) "
            f"patch internals of apache-beam {WRITTEN_FOR}.x, but apache-beam {version} "
            f"is installed. Install the supported version (pip install "
            f"'apache-beam[gcp]>=2.77,<2.78', as pyproject.toml requires), or check "
            f"the patched functions against apache-beam {version} and update "
            f"direct_speedups.py and its version."
        )


def _is_beams(value, where: str) -> bool:
    return (
        isinstance(value, types.FunctionType)
        and f"{value.__module__}.{value.__qualname__}" == f"apache_beam.{where}"
    )


def _check_targets() -> None:
    """Checks that every attribute about to be patched is Beam's own, unpatched.

    Raises:
        RuntimeError: naming each attribute that is not.
    """
    wrong = [
        f"{getattr(owner, '__name__', owner)}.{name}"
        for owner, name, where in _TARGETS
        if vars(owner).get(name) is not _ORIGINALS[owner, name]
        or not _is_beams(_ORIGINALS[owner, name], where)
    ]
    if transform_evaluator.pickler is not pickler or not callable(
        getattr(pickler, "roundtrip", None)
    ):
        wrong.append("transform_evaluator.pickler")
    # The runners must reach the patched functions through the patched modules.
    for module in (common, direct_runner, direct_userstate):
        if getattr(module, "userstate", None) is not userstate:
            wrong.append(f"{module.__name__}.userstate")
    if getattr(common, "core", None) is not core:
        wrong.append(f"{common.__name__}.core")
    if wrong:
        raise RuntimeError(
            f"msewatch's streaming DirectRunner speed-ups (runners/direct_speedups.py) "
            f"were written for the internals of apache-beam {WRITTEN_FOR}.x, and these "
            f"are not Beam's own: {', '.join(wrong)} (patched by other code, or changed "
            f"in this Beam). Run without the other patch, or update direct_speedups.py "
            f"for this Beam."
        )


def _get_function_arguments(obj, func: str):
    """``core.get_function_arguments``, memoized per function."""
    if hasattr(obj, f"_inspect_{func}"):  # the object describes its own arguments
        return _GET_FUNCTION_ARGUMENTS(obj, func)
    function = getattr(getattr(obj, func), "__func__", None)
    if function is None:
        return _GET_FUNCTION_ARGUMENTS(obj, func)
    cached = _arguments_by_function.get(function)
    if cached is None:
        cached = _arguments_by_function[function] = _GET_FUNCTION_ARGUMENTS(obj, func)
    args, defaults = cached
    return list(args), list(defaults)


# Class attributes whose value on an instance is decided by the class alone.
_OF_THE_CLASS = (
    types.FunctionType,
    staticmethod,
    classmethod,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
)
# DoFn's own properties (_process_defined, _can_yield_batches, ...) return booleans.
_DOFN_PROPERTIES = tuple(v for v in vars(core.DoFn).values() if isinstance(v, property))


def _names_to_check(cls: type) -> tuple[str, ...] | None:
    """Names of ``cls`` whose value on an instance may not be a function of the class.

    ``None`` when Beam's answer for an instance cannot be told from the class (it
    looks attributes up itself). Otherwise: properties, slots and other
    descriptors, and methods that describe their own arguments (``_inspect_``).
    """
    if cls.__getattribute__ is not object.__getattribute__ or hasattr(cls, "__getattr__"):
        return None
    names = []
    for name in dir(cls):
        static = inspect.getattr_static(cls, name)
        descriptor = hasattr(type(static), "__get__") and not (
            isinstance(static, _OF_THE_CLASS) or static in _DOFN_PROPERTIES
        )
        if descriptor or hasattr(cls, f"_inspect_{name}"):
            names.append(name)
    return tuple(names)


def _class_decides_specs(dofn) -> bool:
    """Whether every method Beam finds on ``dofn`` is a plain function of its class."""
    cls = type(dofn)
    try:
        names = _names_by_class[cls]
    except KeyError:
        names = _names_by_class[cls] = _names_to_check(cls)
    if names is None:
        return False
    for value in getattr(dofn, "__dict__", {}).values():
        if isinstance(value, types.MethodType):
            return False  # a per-instance method, e.g. Beam's exception-handling wrapper
    for name in names:
        if isinstance(getattr(dofn, name, None), types.MethodType):
            return False
    return True


def _get_dofn_specs(dofn):
    """``userstate.get_dofn_specs``, memoized per class where the class decides it."""
    if not _class_decides_specs(dofn):
        return _GET_DOFN_SPECS(dofn)
    cls = type(dofn)
    specs = _specs_by_class.get(cls)
    if specs is None:
        specs = _specs_by_class[cls] = _GET_DOFN_SPECS(dofn)
    state_specs, timer_specs = specs
    return set(state_specs), set(timer_specs)


def _is_stateful_dofn(dofn) -> bool:
    state_specs, timer_specs = _get_dofn_specs(dofn)
    return bool(state_specs or timer_specs)


class _PickleOnce:
    """Stands in for the evaluator's ``pickler`` module: ``roundtrip`` unpickles a
    fresh copy per bundle, as before, from bytes pickled once per DoFn."""

    @staticmethod
    def roundtrip(dofn):
        entry = _pickled.get(id(dofn))
        if entry is None or entry[0] is not dofn:
            entry = _pickled[id(dofn)] = (dofn, pickler.dumps(dofn))
        return pickler.loads(entry[1])

    def __getattr__(self, name):
        return getattr(pickler, name)


# state coders of immutable objects (``__deepcopy__`` returns them) that the DirectRunner,
# which keeps state in this process, may store as the objects: the join's state cells
# and the metrics' pane totals. Every other runner encodes them.
_PASSTHROUGH_CODERS = (*CELL_CODERS, PaneTotalsCoder)


def _passthrough(coder) -> bool:
    return isinstance(coder, _PASSTHROUGH_CODERS)


def _encode(self, value):
    return value if _passthrough(self._state_spec.coder) else _ENCODE(self, value)


def _decode(self, value):
    return value if _passthrough(self._state_spec.coder) else _DECODE(self, value)


def _patches() -> list[tuple[object, str, object]]:
    replacements = {
        "get_function_arguments": _get_function_arguments,
        "get_dofn_specs": _get_dofn_specs,
        "is_stateful_dofn": _is_stateful_dofn,
        "_encode": _encode,
        "_decode": _decode,
    }
    patches = [(owner, name, replacements[name]) for owner, name, _ in _TARGETS]
    return [*patches, (transform_evaluator, "pickler", _PickleOnce())]


def _install() -> None:
    check_beam_version(apache_beam.__version__)
    _check_targets()
    try:
        for owner, name, replacement in _patches():
            _restore.append((owner, name, vars(owner)[name]))
            setattr(owner, name, replacement)
    except BaseException:
        _uninstall()
        raise


def _uninstall() -> None:
    while _restore:
        owner, name, original = _restore.pop()
        setattr(owner, name, original)
    for cache in (_arguments_by_function, _specs_by_class, _names_by_class, _pickled):
        cache.clear()


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Puts the speed-ups in force for the ``with`` block; restores Beam on exit.

    Open it around building and running a pipeline on the BundleBasedDirectRunner,
    until the pipeline has finished. Exiting (also on an exception) restores every
    patched attribute and clears the caches; nested contexts leave that to the
    outermost.

    Raises:
        RuntimeError: the installed apache-beam is not 2.77.x, or an attribute it
            patches is not Beam's own (see :func:`check_beam_version`).
    """
    global _depth
    with _lock:
        if _depth == 0:
            _install()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _uninstall()
