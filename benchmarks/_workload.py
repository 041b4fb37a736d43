"""The benchmark workload: generated once per parameter set and cached on disk.

A workload is ``msewatch.commands.generate.generate`` output without malformed lines
(every peer can read it), in JSON Lines and Parquet, in
``CACHE/p<predictions>-s<seed>-d<days>-<generator hash>/``. The generator's source
hash is part of the name, so a changed generator regenerates. ``workload.json``,
written last, marks a complete workload and records its record counts.

Events are records: prediction lines plus label lines (duplicates and orphans
included), the same in both formats.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import re
import shutil

_ID = re.compile(rb'"prediction_id":\s*"([^"]*)"')
_MARKER = "workload.json"


@dataclasses.dataclass(frozen=True)
class Workload:
    """Paths and record counts of one generated workload (or a slice of one).

    Attributes:
        directory: where the files are.
        prediction_records: lines of ``predictions.jsonl``.
        label_records: lines of ``labels.jsonl``.
        parquet: whether ``*.parquet`` copies exist.
    """

    directory: str
    prediction_records: int
    label_records: int
    parquet: bool = True

    @property
    def events(self) -> int:
        """Prediction records plus label records."""
        return self.prediction_records + self.label_records

    def path(self, kind: str, fmt: str = "jsonl") -> str:
        """Path of ``predictions`` or ``labels`` in format ``jsonl`` or ``parquet``."""
        return os.path.join(self.directory, f"{kind}.{fmt}")


def _generator_hash() -> str:
    from msewatch.commands import generate as sample

    return hashlib.sha256(inspect.getsource(sample).encode()).hexdigest()[:10]


def _count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))


def _load(directory: str) -> Workload | None:
    marker = os.path.join(directory, _MARKER)
    if not os.path.exists(marker):
        return None
    with open(marker, encoding="utf-8") as f:
        facts = json.load(f)
    return Workload(
        directory, facts["prediction_records"], facts["label_records"], facts["parquet"]
    )


def _save(workload: Workload, extra: dict) -> Workload:
    facts = dataclasses.asdict(workload) | extra
    with open(os.path.join(workload.directory, _MARKER), "w", encoding="utf-8") as f:
        json.dump(facts, f, indent=2)
    return workload


def ensure(cache_dir: str, predictions: int, seed: int = 7, days: float = 3.0) -> Workload:
    """The cached workload for these parameters, generated if missing.

    Args:
        cache_dir: root of the workload cache.
        predictions: distinct predictions (``generate``'s ``predictions``).
        seed: generator seed.
        days: event-time range in days.

    Returns:
        The workload (JSON Lines and Parquet).
    """
    from msewatch.commands.generate import generate

    name = f"p{predictions}-s{seed}-d{days:g}-{_generator_hash()}"
    directory = os.path.join(cache_dir, name)
    cached = _load(directory)
    if cached is not None:
        return cached
    shutil.rmtree(directory, ignore_errors=True)
    stats = generate(
        directory,
        predictions=predictions,
        seed=seed,
        days=days,
        malformed=False,
        formats=("jsonl", "parquet"),
    )
    workload = Workload(
        directory,
        _count_lines(os.path.join(directory, "predictions.jsonl")),
        _count_lines(os.path.join(directory, "labels.jsonl")),
    )
    return _save(workload, {"stats": stats.to_dict()})


def head(workload: Workload, predictions: int) -> Workload:
    """The first ``predictions`` prediction lines and every label line of their ids.

    JSON Lines only, cached in a sub-directory of the workload. Labels keep their
    order; orphan labels (ids of no prediction) are left out.
    """
    directory = os.path.join(workload.directory, f"head-{predictions}")
    cached = _load(directory)
    if cached is not None:
        return cached
    os.makedirs(directory, exist_ok=True)
    ids = set()
    n_preds = n_labels = 0
    with (
        open(workload.path("predictions"), "rb") as src,
        open(os.path.join(directory, "predictions.jsonl"), "wb") as dst,
    ):
        for line in src:
            if n_preds == predictions:
                break
            ids.add(_ID.search(line).group(1))
            dst.write(line)
            n_preds += 1
    with (
        open(workload.path("labels"), "rb") as src,
        open(os.path.join(directory, "labels.jsonl"), "wb") as dst,
    ):
        for line in src:
            if _ID.search(line).group(1) in ids:
                dst.write(line)
                n_labels += 1
    return _save(Workload(directory, n_preds, n_labels, parquet=False), {"of": workload.directory})


def predictions_for_events(events: int) -> int:
    """Distinct predictions whose generated workload has about ``events`` records.

    The generator writes about 1.94 records per distinct prediction (the prediction,
    0.5 % duplicates, 93 % labelled, 0.1 % orphans, 0.5 % duplicate labels).
    """
    return max(1, round(events / 1.9407))
