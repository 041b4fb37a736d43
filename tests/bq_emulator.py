"""A local BigQuery API emulator for tests: the ``bqemulator`` package from PyPI.

Run as a script, this module starts ``bqemulator`` (REST on ``127.0.0.1``, a free
port, in-memory DuckDB) with the DuckDB ``spatial`` extension load switched off:
``bqemulator`` installs and loads that extension at startup (it backs GEOGRAPHY),
which needs a download from the DuckDB extension site and fails offline. msewatch has
no GEOGRAPHY column, so the launcher replaces ``DuckDBEngine._load_spatial`` with a
no-op; the ``avro`` extension (Avro load jobs, also a download) is switched off with
the emulator's own setting. When the server is up the script prints one line,
``BQEMULATOR_READY http://127.0.0.1:PORT``, and runs until SIGTERM or SIGINT (or, with
``--exit-on-stdin-eof``, until its standard input closes: the fixture's way to make
sure the server dies with the test process, even if that is killed).

Tests use :func:`running_emulator`, which runs the script as a subprocess, waits for
that line and for the REST API to answer, yields the endpoint and stops the process,
or :func:`emulator_or_skip` (for a fixture), which skips the test with the reason when
the emulator cannot start, or fails it under ``MSEWATCH_REQUIRE_SERVERS=1`` (CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

READY_PREFIX = "BQEMULATOR_READY "


class EmulatorUnavailable(RuntimeError):
    """The emulator is not installed or did not start; the message says why."""


def _serve(exit_on_stdin_eof: bool) -> None:
    """Starts the emulator in this process and blocks until SIGTERM/SIGINT."""
    from bqemulator.config import LogLevel, PersistenceMode, Settings
    from bqemulator.server import EmulatorServer
    from bqemulator.storage import engine

    engine.DuckDBEngine._load_spatial = lambda self: None  # offline: no GEOGRAPHY
    settings = Settings(
        persistence_mode=PersistenceMode.EPHEMERAL,
        rest_host="127.0.0.1",
        rest_port=0,
        grpc_host="127.0.0.1",
        grpc_port=0,
        enable_format_extensions=False,
        log_level=LogLevel.WARNING,
        metrics_enabled=False,
    )
    server = EmulatorServer(settings)

    async def run() -> None:
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if exit_on_stdin_eof:

            def watch_stdin() -> None:
                sys.stdin.read()
                loop.call_soon_threadsafe(stop.set)

            threading.Thread(target=watch_stdin, daemon=True).start()
        print(READY_PREFIX + server.rest_url, flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(run())


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _wait_for_http(url: str, deadline: float) -> None:
    probe = f"{url}/bigquery/v2/projects/probe/datasets"
    while True:
        try:
            with urllib.request.urlopen(probe, timeout=2) as response:
                response.read()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is serving
        except OSError as exc:
            if time.monotonic() > deadline:
                raise EmulatorUnavailable(f"bqemulator at {url} did not answer: {exc}") from exc
            time.sleep(0.1)


@contextlib.contextmanager
def running_emulator(timeout_seconds: float = 60.0) -> Iterator[str]:
    """Runs the emulator in a subprocess for the duration of the block.

    Args:
        timeout_seconds: how long to wait for the server to answer.

    Yields:
        The REST endpoint, ``http://127.0.0.1:PORT`` (use it as the client's
        ``api_endpoint``).

    Raises:
        EmulatorUnavailable: ``bqemulator`` is not installed, exited, or did not
            answer in time; the message holds the emulator's last output.
    """
    try:
        import bqemulator  # noqa: F401
    except ImportError as exc:
        raise EmulatorUnavailable(
            "the bqemulator package is not installed (pip install bqemulator)"
        ) from exc
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + timeout_seconds
        url = None
        while url is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise EmulatorUnavailable(
                    f"bqemulator did not start in {timeout_seconds:.0f} s: " + "".join(output[-20:])
                ) from None
            if line is None:
                raise EmulatorUnavailable(
                    f"bqemulator exited with code {proc.wait()}: " + "".join(output[-20:])
                )
            if line.startswith(READY_PREFIX):
                url = line[len(READY_PREFIX) :].strip()
            else:
                output.append(line)
        _wait_for_http(url, deadline)
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def emulator_or_skip() -> Iterator[str]:
    """:func:`running_emulator`, skipping (or failing, see above) when it cannot start."""
    from tests.servers import cannot_start

    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(running_emulator())
        except EmulatorUnavailable as exc:
            cannot_start(f"BigQuery emulator unavailable: {exc}")
        yield url


if __name__ == "__main__":
    _serve("--exit-on-stdin-eof" in sys.argv[1:])
