"""``python -m msewatch run --streaming-replay``, in this process: the DirectRunner
speed-ups (runners/direct_speedups.py) are in force while the pipeline runs, and
Beam's own functions are back once the command returns."""

from __future__ import annotations

import json
import runpy
import sys

import pytest

from msewatch.runners import launch
from tests.beam_internals import PATCHED, not_beams_own


def _msewatch(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["msewatch", *args])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("msewatch", run_name="__main__")
    return exited.value.code


def test_a_streaming_replay_patches_beam_only_while_its_pipeline_runs(monkeypatch, tmp_path):
    sample, out = tmp_path / "sample", tmp_path / "out"
    assert _msewatch(monkeypatch, "generate", "--predictions", "300", "--out", str(sample)) == 0
    assert not_beams_own() == []

    seen_while_running = []
    run_pipeline = launch._run_pipeline

    def spy(*args, **kwargs):
        result = run_pipeline(*args, **kwargs)
        seen_while_running.append(not_beams_own())
        return result

    monkeypatch.setattr(launch, "_run_pipeline", spy)
    code = _msewatch(
        monkeypatch,
        "run",
        "--predictions",
        str(sample / "predictions.jsonl"),
        "--labels",
        str(sample / "labels.jsonl"),
        "--output",
        str(out),
        "--streaming-replay",
        "--quiet",
    )
    assert code == 0
    assert json.loads((out / "summary.json").read_text())  # the replay ran to the end
    assert seen_while_running == [PATCHED]
    assert not_beams_own() == []
