"""The layout of a local output folder, and the one way to read it: :func:`resolve`.

A bounded run or a replay into a local folder commits its tables as one snapshot::

    OUTPUT/.msewatch/lock                    held (flock) by the run writing into OUTPUT
    OUTPUT/.msewatch/current -> snapshot-3   the committed snapshot (a relative symlink)
    OUTPUT/.msewatch/snapshot-3/             metrics/, dead_letter/, outcomes/, alerts/, ...,
                                             summary.json and manifest.json
    OUTPUT/metrics -> .msewatch/current/metrics        one link per entry of the snapshot,
    OUTPUT/summary.json -> .msewatch/current/summary.json   so OUTPUT/metrics/*/*.parquet
                                                        still names the tables

A run writes its snapshot beside the current one and commits by replacing the
``current`` link (``os.replace`` of a new link: one atomic rename). Every reader that
resolves ``current`` once (:func:`resolve`) reads one snapshot whole: the previous run's
or the new one's, at any instant and after a kill at any instant. Older snapshots are
removed only after the link has moved (a read that has resolved the old snapshot and
is still reading at that moment fails with a missing file, never mixes two runs).

A folder without ``.msewatch/current`` (a Pub/Sub or Kafka run, which appends into the
folder itself, or a folder an older msewatch wrote) is read as it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE = ".msewatch"
"""The folder inside OUTPUT that holds the lock, the snapshots and the ``current`` link."""
CURRENT = "current"
LOCK = "lock"
SNAPSHOT_PREFIX = "snapshot-"
MANIFEST = "manifest.json"
"""In each snapshot: ``{"msewatch_version": ..., "tables": [...]}``."""


def resolve(output_dir: str | Path) -> Path:
    """The folder that holds the committed tables of ``output_dir``.

    One ``readlink`` of ``OUTPUT/.msewatch/current``: read every table of a run through
    the path this returns, and they are all of one commit.

    Returns:
        ``OUTPUT/.msewatch/snapshot-N`` for a committed bounded run; ``output_dir``
        itself for a folder without snapshots (streaming runs, older folders).
    """
    out = Path(output_dir)
    try:
        target = os.readlink(out / STATE / CURRENT)
    except OSError:  # no link (or not a link): the folder is read as it is
        return out
    return out / STATE / target


def manifest(tables_dir: str | Path) -> dict:
    """The manifest of a resolved snapshot; ``{}`` when absent or unreadable."""
    try:
        data = json.loads((Path(tables_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
