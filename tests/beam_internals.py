"""The Beam internals ``runners/direct_speedups.py`` patches, and which of them are not
Beam's own right now (read from Beam's modules, not from direct_speedups)."""

from __future__ import annotations

import os
import sys
import types

import apache_beam
from apache_beam.runners.direct import direct_userstate, transform_evaluator
from apache_beam.transforms import core, userstate

_BEAM_DIR = os.path.dirname(apache_beam.__file__)
_STATE = direct_userstate.DirectRuntimeState

# name, how to read it now, where Beam defines the function it should be
_FUNCTIONS = [
    (
        "core.get_function_arguments",
        lambda: core.get_function_arguments,
        "apache_beam.transforms.core.get_function_arguments",
    ),
    (
        "userstate.get_dofn_specs",
        lambda: userstate.get_dofn_specs,
        "apache_beam.transforms.userstate.get_dofn_specs",
    ),
    (
        "userstate.is_stateful_dofn",
        lambda: userstate.is_stateful_dofn,
        "apache_beam.transforms.userstate.is_stateful_dofn",
    ),
    (
        "transform_evaluator.get_dofn_specs",
        lambda: transform_evaluator.get_dofn_specs,
        "apache_beam.transforms.userstate.get_dofn_specs",
    ),
    (
        "transform_evaluator.is_stateful_dofn",
        lambda: transform_evaluator.is_stateful_dofn,
        "apache_beam.transforms.userstate.is_stateful_dofn",
    ),
    (
        "DirectRuntimeState._encode",
        lambda: vars(_STATE).get("_encode"),
        "apache_beam.runners.direct.direct_userstate.DirectRuntimeState._encode",
    ),
    (
        "DirectRuntimeState._decode",
        lambda: vars(_STATE).get("_decode"),
        "apache_beam.runners.direct.direct_userstate.DirectRuntimeState._decode",
    ),
]
PATCHED = [name for name, _, _ in _FUNCTIONS] + ["transform_evaluator.pickler"]
"""Every attribute the speed-ups replace while they are in force."""


def _is_beams(value, where: str) -> bool:
    return (
        isinstance(value, types.FunctionType)
        and f"{value.__module__}.{value.__qualname__}" == where
        and os.path.dirname(value.__code__.co_filename).startswith(_BEAM_DIR)
    )


def not_beams_own() -> list[str]:
    """The names in :data:`PATCHED` whose current value is not Beam's original."""
    wrong = [name for name, read, where in _FUNCTIONS if not _is_beams(read(), where)]
    if transform_evaluator.pickler is not sys.modules["apache_beam.internal.pickler"]:
        wrong.append("transform_evaluator.pickler")
    return wrong
