"""runners/direct_speedups.py: in force only inside ``installed()``, Beam's own
functions back on exit, a clear error for another Beam, and memoized answers equal to
Beam's (Beam's own functions, called outside the context, are the reference)."""

from __future__ import annotations

import gc
import types
import weakref

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.runners.direct import direct_userstate, transform_evaluator
from apache_beam.transforms import core, userstate

from msewatch.runners import direct_speedups
from msewatch.transforms.join.kernel import JoinConfig
from msewatch.transforms.join.state import TombstonesCoder
from msewatch.transforms.join.transform import _StreamingJoinDoFn
from tests.beam_internals import PATCHED, not_beams_own


class _Stateful(beam.DoFn):
    COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())

    def process(self, element, count=beam.DoFn.StateParam(COUNT)):
        yield element


class _Stateless(beam.DoFn):
    def process(self, element):
        yield element


def _stateful_process(self, element, count=beam.DoFn.StateParam(_Stateful.COUNT)):
    yield element


def _stateless_process(self, element):
    yield element


class _PerInstanceProcess(beam.DoFn):
    """Builds ``process`` per instance, as Beam's exception-handling wrapper does."""

    def __init__(self, stateful: bool):
        self.process = types.MethodType(_stateful_process if stateful else _stateless_process, self)


def _exception_handling(fn: beam.DoFn) -> beam.DoFn:
    """The DoFn ``ParDo(fn).with_exception_handling(allow_unsafe_userstate_in_process=True)``
    runs (apache-beam 2.77: its ``process`` is made per instance and wraps ``fn``'s)."""
    return core._ExceptionHandlingWrapperDoFn(fn, "bad", (Exception,), False, None, True)


@pytest.fixture(autouse=True)
def _beams_own_before_and_after():
    assert not_beams_own() == []
    yield
    assert not_beams_own() == []


def test_every_internal_is_patched_inside_the_context():
    with direct_speedups.installed():
        assert not_beams_own() == PATCHED


def test_exit_restores_beams_functions():
    with direct_speedups.installed():
        pass
    assert not_beams_own() == []


def test_an_exception_inside_restores_beams_functions():
    with pytest.raises(ZeroDivisionError), direct_speedups.installed():
        1 / 0  # noqa: B018
    assert not_beams_own() == []


def test_nested_contexts_restore_when_the_outermost_exits():
    with direct_speedups.installed():
        with direct_speedups.installed():
            assert not_beams_own() == PATCHED
        assert not_beams_own() == PATCHED  # the inner exit leaves the outer in force
    assert not_beams_own() == []


@pytest.mark.parametrize("version", ["2.77.0", "2.77.1", "2.77.0rc1"])
def test_version_check_accepts_2_77(version):
    direct_speedups.check_beam_version(version)


@pytest.mark.parametrize("version", ["2.78.0", "2.76.2", "2.7", "2.770.0", "3.77.0", ""])
def test_version_check_refuses_other_versions_saying_what_to_do(version):
    with pytest.raises(RuntimeError) as raised:
        direct_speedups.check_beam_version(version)
    message = str(raised.value)
    assert f"apache-beam {version} is installed" in message
    assert "2.77.x" in message and "apache-beam[gcp]>=2.77,<2.78" in message


def test_another_beam_version_is_refused_before_anything_is_patched(monkeypatch):
    monkeypatch.setattr(beam, "__version__", "2.78.0")
    with pytest.raises(RuntimeError, match="apache-beam 2.78.0"), direct_speedups.installed():
        pass
    assert not_beams_own() == []


def test_a_function_patched_by_other_code_is_refused(monkeypatch):
    monkeypatch.setattr(userstate, "get_dofn_specs", lambda dofn: (set(), set()))
    with (
        pytest.raises(RuntimeError, match=r"not Beam's own: .*userstate\.get_dofn_specs"),
        direct_speedups.installed(),
    ):
        pass
    monkeypatch.undo()
    assert not_beams_own() == []


def _beams_specs(dofn):
    assert not_beams_own() == []  # Beam's own get_dofn_specs, not the memo
    return userstate.get_dofn_specs(dofn)


@pytest.mark.parametrize("stateful_first", [True, False])
@pytest.mark.parametrize(
    "make",
    [
        _PerInstanceProcess,
        lambda stateful: _exception_handling(_Stateful() if stateful else _Stateless()),
    ],
    ids=["own-class", "beam-exception-handling"],
)
def test_a_dofn_with_a_per_instance_process_gets_its_own_specs(make, stateful_first):
    # Same class, one instance with a state parameter, one without: asked in either
    # order, each gets Beam's answer for itself, not the other's.
    dofns = [make(stateful=stateful_first), make(stateful=not stateful_first)]
    expected = [_beams_specs(d) for d in dofns]
    assert [bool(s) for s, _ in expected] == [stateful_first, not stateful_first]
    with direct_speedups.installed():
        got = [userstate.get_dofn_specs(d) for d in dofns]
        stateful = [userstate.is_stateful_dofn(d) for d in dofns]
    assert got == expected
    assert stateful == [stateful_first, not stateful_first]


@pytest.mark.parametrize(
    "make",
    [
        lambda: _StreamingJoinDoFn(JoinConfig()),
        _Stateful,
        _Stateless,
        lambda: beam.Map(lambda x: x).dofn,
    ],
    ids=["join", "stateful", "stateless", "map"],
)
def test_memoized_specs_and_arguments_are_beams(make):
    first, second = make(), make()
    expected_specs = _beams_specs(first)
    expected_arguments = core.get_function_arguments(first, "process")
    with direct_speedups.installed():
        for dofn in (first, second, first):  # the second and third answers are memoized
            assert userstate.get_dofn_specs(dofn) == expected_specs  # the same spec objects
            assert transform_evaluator.get_dofn_specs(dofn) == expected_specs
            assert core.get_function_arguments(dofn, "process") == expected_arguments


def test_each_bundle_gets_a_fresh_copy_and_none_is_kept_after_exit():
    dofn = _Stateless()
    with direct_speedups.installed():
        copies = [transform_evaluator.pickler.roundtrip(dofn) for _ in range(2)]
    assert len({id(dofn), *map(id, copies)}) == 3
    assert all(type(c) is _Stateless for c in copies)
    gone = weakref.ref(dofn)
    del dofn, copies
    gc.collect()
    assert gone() is None  # the pickled-once cache let go of it on exit


@pytest.mark.parametrize(
    ("coder", "passthrough"), [(TombstonesCoder(), True), (VarIntCoder(), False)]
)
def test_state_with_a_passthrough_coder_is_kept_as_the_object(coder, passthrough):
    spec = userstate.ReadModifyWriteStateSpec("s", coder)
    state = direct_userstate.ReadModifyWriteRuntimeState(spec, None, lambda: [])
    value = object() if passthrough else 5
    with direct_speedups.installed():
        encoded = state._encode(value)
        assert state._decode(encoded) == value
    assert (encoded is value) == passthrough
    if not passthrough:
        assert encoded == coder.encode(value)
