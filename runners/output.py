"""Where ``msewatch run`` writes, checked before anything runs, and the commit of a run.

An output is a local folder, ``gs://BUCKET[/PATH]``, or ``bq://PROJECT.DATASET``.
msewatch only ever touches what it writes: the entries in :data:`TABLES` and
:data:`OWN_FILES`, its state folder ``.msewatch`` and the staging folders of older
versions (``.msewatch-staging-*``).

Refused, with one line saying what to do: an output that is a file, the file-system
root, a ``gs://`` URL without a bucket, an unknown scheme, a local folder holding
anything else than msewatch's own entries (``--force`` writes there anyway, still
touching only msewatch's entries), and a local folder another run is writing into
(its lock, ``OUTPUT/.msewatch/lock``, is held: the error names the holder's pid).

Reruns (local folders; the layout is :mod:`msewatch.schemas.layout`). A bounded run or
a replay writes a new snapshot folder beside the current one; when it has finished
(and its outcomes balance: ``runners/launch.py``), :func:`commit` writes the empty
tables that got no rows and the manifest, removes a ``report.html`` of the previous
results, adds the links the new snapshot needs (dangling until the commit), then moves
the ``current`` link to the new snapshot in one ``os.replace``: readers see the whole
previous run or the whole new one, at any instant and after a kill at any instant.
Then links to entries the new run lacks and the older snapshots are removed. Tables
that are real folders (written by an older msewatch, or by a stream into a folder
without snapshots) are first made a committed snapshot of their own, hard-linked,
before the run starts, so they too are replaced by one rename. Two runs of the same
input leave the rows of one run; a killed run leaves a snapshot that ``current`` does
not name, which the next run removes. A Pub/Sub or Kafka run writes into the
committed snapshot (or the folder itself) and appends: a restarted stream adds panes
whose ``emitted_at`` is newer, and readers take the latest pane (``metrics_latest``).
On ``gs://`` every run adds files: use a new folder per bounded run.

``MSEWATCH_TEST_COMMIT_PAUSE=STEP`` makes a run stop at a step of the commit
(``adopted``: an older layout's tables made a snapshot; ``snapshot-written``,
``pointer-moved``, ``linked``) until it is killed: the tests kill it there
(``tests/e2e/test_output_folder.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import sys
import time
import uuid

import pyarrow.parquet as pq

from msewatch import __version__
from msewatch.schemas import records
from msewatch.schemas.layout import CURRENT, LOCK, MANIFEST, SNAPSHOT_PREFIX, STATE, resolve

TABLES = ("metrics", "dead_letter", "outcomes", "alerts", "slo_status", "comparisons")
OWN_FILES = ("summary.json", "report.html")
ENTRIES = (*TABLES, "summary.json")
"""What a snapshot holds, each linked from ``OUTPUT/<name>``."""
EMPTY_TABLES = {
    "metrics": records.METRICS,
    "dead_letter": records.DEAD_LETTER,
    "outcomes": records.OUTCOMES,
}
"""Tables every finished run has: one without rows is written as one empty file."""
EMPTY_FILE = {"metrics": "metrics/window_date=none/part-empty.parquet"}
LEGACY_STAGING_PREFIX = ".msewatch-staging-"
_TRASH = "trash-"
_GCS = re.compile(r"^gs://[a-z0-9][-_a-z0-9.]{1,220}[a-z0-9](/.*)?$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class FolderBusy(ValueError):
    """Another run holds the output folder's lock (a ValueError: one line, exit 2)."""


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """Where a run writes.

    Attributes:
        final: the ``--output`` as given.
        write_to: where the pipeline writes (a new snapshot folder for local reruns).
        previous: msewatch entries of an earlier run that this run will replace.
        staged: the run writes a snapshot that :func:`commit` makes current.
        lock_fd: the open lock file of a local folder (released by :func:`release`).
    """

    final: str
    write_to: str
    previous: tuple[str, ...] = ()
    staged: bool = False
    lock_fd: int | None = None


def is_local(url: str) -> bool:
    return not _SCHEME.match(url)


def _own(name: str) -> bool:
    return (
        name in TABLES
        or name in OWN_FILES
        or name == STATE
        or name.startswith(LEGACY_STAGING_PREFIX)
    )


def check(url: str, *, force: bool = False) -> None:
    """Raises ValueError (one line, what to do) for an output msewatch must not use."""
    if url.startswith("bq://"):
        return  # parsed by schemas.bigquery_files.parse_output_url
    if url.startswith("gs://"):
        if not _GCS.fullmatch(url):
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


def _lock(url: str) -> int:
    """Takes ``OUTPUT/.msewatch/lock`` (an exclusive ``flock``, not waiting) for this run.

    The lock file keeps the holder's pid; the kernel releases the lock when the holder
    exits, however it ends, so a killed run never leaves the folder locked.

    Raises:
        FolderBusy: another process holds it.
    """
    state = os.path.join(url, STATE)
    os.makedirs(state, exist_ok=True)
    fd = os.open(os.path.join(state, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise FolderBusy(
            f"--output {url}: another msewatch run (pid {holder}) is writing into this "
            "folder; wait until it has finished, or use another --output"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release(plan: OutputPlan) -> None:
    """Releases the output folder's lock (closing the lock file)."""
    if plan.lock_fd is not None:
        os.close(plan.lock_fd)


def prepare(url: str, *, staged: bool) -> OutputPlan:
    """Locks a local output folder and creates the run's snapshot folder.

    Snapshots that ``current`` does not name (left by a killed run) are removed first:
    with the lock held, no other run is writing them. Remote outputs: no-op.

    Raises:
        FolderBusy: another run is writing into the folder.
    """
    if not is_local(url):
        return OutputPlan(url, url)
    os.makedirs(url, exist_ok=True)
    fd = _lock(url)
    try:
        if not staged:  # appends into what readers read
            return OutputPlan(url, str(resolve(url)), lock_fd=fd)
        _remove_stale(url)
        previous = tuple(n for n in (*TABLES, *OWN_FILES) if os.path.lexists(os.path.join(url, n)))
        _adopt_real_entries(url)
        snapshot = _next_snapshot(url)
        os.makedirs(snapshot)
        return OutputPlan(url, snapshot, previous, staged=True, lock_fd=fd)
    except BaseException:
        os.close(fd)
        raise


def _next_snapshot(url: str) -> str:
    """The path of the next ``OUTPUT/.msewatch/snapshot-N`` (N one above the highest)."""
    state = os.path.join(url, STATE)
    numbers = [int(n[len(SNAPSHOT_PREFIX) :]) for n in os.listdir(state) if _snapshot(n)]
    return os.path.join(state, f"{SNAPSHOT_PREFIX}{max(numbers, default=0) + 1}")


def _adopt_real_entries(url: str) -> None:
    """Turns tables that are real folders (an older msewatch's, a stream's) into a
    committed snapshot, so the run's own commit is one link away for every reader.

    Without ``current``: the entries are hard-linked (copied where links fail) into a
    new snapshot, which is committed; until then readers read them in place, after it
    through the snapshot, the same rows. With ``current`` (a kill between its move and
    the links): the real entries are older than it and are replaced by links.
    """
    state = os.path.join(url, STATE)
    real = [n for n in ENTRIES if _is_real(os.path.join(url, n))]
    if not real:
        return
    if not os.path.islink(os.path.join(state, CURRENT)):
        snapshot = os.path.join(state, f"{_TRASH}adopting")  # removed as stale if killed
        os.makedirs(snapshot)
        for name in real:
            source, target = os.path.join(url, name), os.path.join(snapshot, name)
            if os.path.isdir(source):
                shutil.copytree(source, target, copy_function=_link_or_copy)
            else:
                _link_or_copy(source, target)
        adopted = _next_snapshot(url)
        os.rename(snapshot, adopted)
        _replace_link(os.path.basename(adopted), os.path.join(state, CURRENT), state)
        _pause("adopted")
    _link_entries(url, str(resolve(url)))


def _is_real(path: str) -> bool:
    return os.path.lexists(path) and not os.path.islink(path)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


def _snapshot(name: str) -> bool:
    return name.startswith(SNAPSHOT_PREFIX) and name[len(SNAPSHOT_PREFIX) :].isdigit()


def _remove_stale(url: str) -> None:
    """Removes what no reader can reach: snapshots ``current`` does not name, trash,
    temporary links, and the staging folders of older msewatch versions."""
    state = os.path.join(url, STATE)
    current = os.path.basename(resolve(url)) if os.path.islink(os.path.join(state, CURRENT)) else ""
    for name in os.listdir(state):
        path = os.path.join(state, name)
        if (_snapshot(name) and name != current) or name.startswith(_TRASH):
            shutil.rmtree(path, ignore_errors=True)
        elif name.startswith(f"{CURRENT}.tmp"):
            os.remove(path)
    for name in os.listdir(url):
        if name.startswith(LEGACY_STAGING_PREFIX):
            shutil.rmtree(os.path.join(url, name), ignore_errors=True)


def _pause(step: str) -> None:
    """Stops here until killed when ``MSEWATCH_TEST_COMMIT_PAUSE`` names this step."""
    if os.environ.get("MSEWATCH_TEST_COMMIT_PAUSE") == step:
        print(f"msewatch: paused at commit step {step}", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)


def _replace_link(target: str, path: str, state: str) -> None:
    """Makes ``path`` a symlink to ``target`` in one rename (a file in the way too).

    The new link is made in ``state`` (a link's text is kept by a rename, and a stale
    one is removed by the next run) and renamed over ``path``.
    """
    temp = os.path.join(state, f"{CURRENT}.tmp-{uuid.uuid4().hex[:8]}")
    os.symlink(target, temp)
    try:
        os.replace(temp, path)
    except BaseException:
        os.remove(temp)
        raise


def _write_empty_tables(snapshot: str) -> None:
    """A table without any Parquet file gets one file of no rows, with the schema."""
    for name, schema in EMPTY_TABLES.items():
        folder = os.path.join(snapshot, name)
        has_rows = os.path.isdir(folder) and any(
            f.endswith(".parquet") for _, _, files in os.walk(folder) for f in files
        )
        if not has_rows:
            path = os.path.join(snapshot, EMPTY_FILE.get(name, f"{name}/part-empty.parquet"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            pq.write_table(schema.empty_table(), path)


def _write_manifest(snapshot: str) -> None:
    tables = sorted(n for n in ENTRIES if os.path.lexists(os.path.join(snapshot, n)))
    with open(os.path.join(snapshot, MANIFEST), "w", encoding="utf-8") as f:
        json.dump({"msewatch_version": __version__, "tables": tables}, f, indent=1)


def _link_entries(url: str, snapshot: str) -> None:
    """``OUTPUT/<entry>`` -> ``.msewatch/current/<entry>`` for each entry of the snapshot.

    An entry of an older layout (a real folder or file) is moved to the trash first,
    in one rename; a link to an entry the snapshot lacks is removed.
    """
    state = os.path.join(url, STATE)
    for name in ENTRIES:
        top, target = os.path.join(url, name), os.path.join(STATE, CURRENT, name)
        wanted = os.path.lexists(os.path.join(snapshot, name))
        if os.path.islink(top) and os.readlink(top) == target and wanted:
            continue
        if os.path.isdir(top) and not os.path.islink(top):
            os.rename(top, os.path.join(state, f"{_TRASH}{name}-{uuid.uuid4().hex[:8]}"))
        if wanted:
            _replace_link(target, top, state)
        elif os.path.lexists(top):
            os.remove(top)


def _remove_report(url: str) -> None:
    report = os.path.join(url, "report.html")
    if os.path.lexists(report) and not os.path.isdir(report):
        os.remove(report)


def commit(plan: OutputPlan) -> None:
    """Makes a finished run's snapshot the current one (see the module docstring).

    Raises:
        OSError: writing failed; before the ``current`` link moved the previous
            results stay current, after it the new ones are (the links follow at
            the next commit).
    """
    if not plan.staged:
        return
    _write_empty_tables(plan.write_to)
    _write_manifest(plan.write_to)
    _pause("snapshot-written")
    _remove_report(plan.final)  # of the previous results: never beside the new ones
    state = os.path.dirname(plan.write_to)
    for name in ENTRIES:  # links the new run needs, dangling (absent) until the commit
        top = os.path.join(plan.final, name)
        if not os.path.lexists(top) and os.path.lexists(os.path.join(plan.write_to, name)):
            os.symlink(os.path.join(STATE, CURRENT, name), top)
    _replace_link(os.path.basename(plan.write_to), os.path.join(state, CURRENT), state)  # commit
    _fsync(state)
    _pause("pointer-moved")
    _link_entries(plan.final, plan.write_to)
    _pause("linked")
    _remove_stale(plan.final)


def _fsync(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def abandon(plan: OutputPlan) -> None:
    """Removes the snapshot of a run that failed, unless it was committed already."""
    if plan.staged and os.path.abspath(resolve(plan.final)) != os.path.abspath(plan.write_to):
        shutil.rmtree(plan.write_to, ignore_errors=True)


class _HideDiskFull(logging.Filter):
    """Drops Beam's log record (a traceback) of a DoFn that failed on a full disk."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or disk_full(error) is None


@contextlib.contextmanager
def disk_full_said_once():
    """While a pipeline runs: a full disk is left to the one-line error of the launcher
    (``runners/launch.py``), not logged with its traceback by Beam's DoFn runner too
    (``apache_beam.runners.common`` logs every DoFn error before raising it)."""
    beam_logger = logging.getLogger("apache_beam.runners.common")
    hide = _HideDiskFull()
    beam_logger.addFilter(hide)
    try:
        yield
    finally:
        beam_logger.removeFilter(hide)


def disk_full(error: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT ``OSError`` in an exception's chain (Beam wraps a DoFn's), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error
        error = error.__cause__ or error.__context__
    return None
