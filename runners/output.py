"""Where ``msewatch run`` writes, checked before anything runs.

An output is a local folder, ``gs://BUCKET[/PATH]``, or ``bq://PROJECT.DATASET``.
msewatch only ever touches what it writes: the table folders in :data:`TABLES`, the
files in :data:`OWN_FILES`, and its own staging folders (``.msewatch-staging-*``).

Refused, with one line saying what to do: an output that is a file, the file-system
root, a ``gs://`` URL without a bucket, an unknown scheme, and a local folder holding
anything else than msewatch's own entries (``--force`` writes there anyway, still
touching only msewatch's entries).

Reruns (local folders). A bounded run or a replay writes into a fresh staging folder
inside the output; when it has finished, each of its tables replaces the previous
run's table of the same name, so two runs of the same input leave the rows of one run
(a killed run leaves only its staging folder, which the next run removes). A Pub/Sub
run writes into the output folder itself and appends: a restarted stream adds panes
whose ``emitted_at`` is newer, and readers take the latest pane (``metrics_latest``).
On ``gs://`` every run adds files: use a new folder per bounded run.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import uuid

TABLES = ("metrics", "dead_letter", "outcomes", "alerts", "slo_status", "comparisons")
OWN_FILES = ("summary.json", "report.html")
STAGING_PREFIX = ".msewatch-staging-"
_GCS = re.compile(r"^gs://[a-z0-9][-_a-z0-9.]{1,220}[a-z0-9](/.*)?$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """Where a run writes.

    Attributes:
        final: the ``--output`` as given.
        write_to: where the pipeline writes (a staging folder for local reruns).
        previous: msewatch entries of an earlier run that this run will replace.
    """

    final: str
    write_to: str
    previous: tuple[str, ...] = ()

    @property
    def staged(self) -> bool:
        return self.write_to != self.final


def is_local(url: str) -> bool:
    return not _SCHEME.match(url)


def _own(name: str) -> bool:
    return name in TABLES or name in OWN_FILES or name.startswith(STAGING_PREFIX)


def check(url: str, *, force: bool = False) -> None:
    """Raises ValueError (one line, what to do) for an output msewatch must not use."""
    if url.startswith("bq://"):
        return  # parsed by schemas.bigquery_files.parse_output_url
    if url.startswith("gs://"):
        if not _GCS.match(url):
            raise ValueError(f"--output {url!r}: use gs://BUCKET or gs://BUCKET/PATH")
        return
    if not is_local(url):
        raise ValueError(
            f"--output {url!r}: use a local folder, gs://BUCKET/PATH or bq://PROJECT.DATASET"
        )
    path = os.path.abspath(url)
    if os.path.dirname(path) == path:
        raise ValueError(f"--output {url!r} is the file-system root: name a folder for the tables")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--output {url!r} is a file: name a folder (new or msewatch's own)")
    if os.path.isdir(path) and not force:
        others = sorted(n for n in os.listdir(path) if not _own(n))
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise ValueError(
                f"--output {url!r} holds other files than msewatch tables ({shown}): use a "
                "new or empty folder, or --force to write msewatch's tables beside them"
            )


def prepare(url: str, *, staged: bool) -> OutputPlan:
    """Creates the staging folder of a local run (removing stale ones); no-op otherwise."""
    if not is_local(url) or not staged:
        return OutputPlan(url, url)
    os.makedirs(url, exist_ok=True)
    names = os.listdir(url)
    for name in names:
        if name.startswith(STAGING_PREFIX):
            shutil.rmtree(os.path.join(url, name), ignore_errors=True)
    previous = tuple(sorted(n for n in names if n in TABLES or n in OWN_FILES))
    staging = os.path.join(url, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")
    os.makedirs(staging)
    return OutputPlan(url, staging, previous)


def commit(plan: OutputPlan) -> None:
    """Moves a finished staged run into place: each of its entries replaces the old one.

    Entries of the previous run that this run did not write (e.g. ``report.html``,
    ``alerts`` of a run with an SLO file) are removed too, so the folder holds one
    run's results.
    """
    if not plan.staged:
        return
    written = os.listdir(plan.write_to)
    for name in set(plan.previous) | set(written):
        old = os.path.join(plan.final, name)
        if os.path.isdir(old) and not os.path.islink(old):
            shutil.rmtree(old)
        elif os.path.lexists(old):
            os.remove(old)
    for name in written:
        os.replace(os.path.join(plan.write_to, name), os.path.join(plan.final, name))
    os.rmdir(plan.write_to)


def abandon(plan: OutputPlan) -> None:
    """Removes the staging folder of a run that failed; the previous results stay."""
    if plan.staged:
        shutil.rmtree(plan.write_to, ignore_errors=True)
