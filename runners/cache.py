"""What msewatch fetches once and keeps: ``$MSEWATCH_CACHE`` (default ``~/.cache/msewatch``).

The runners' Java services (``beam-java/``, :mod:`msewatch.runners.java_services`) and
the local clusters' software (``flink/``, ``kafka/``, ``prism/``,
:mod:`msewatch.commands.local.downloads`) are installed through their usual clients (Maven,
pip, go) into a temporary folder beside their place and renamed into it when complete,
so an interrupted download leaves nothing that looks installed. After the first run
nothing is fetched again: the cache works offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


class DownloadError(RuntimeError):
    """A download or build failed; the message says what to install or check."""


def cache_dir() -> Path:
    """``$MSEWATCH_CACHE``, or ``~/.cache/msewatch``."""
    return Path(os.environ.get("MSEWATCH_CACHE") or Path.home() / ".cache" / "msewatch")


def require_tool(name: str, what: str) -> str:
    """The path of ``name`` on PATH.

    Raises:
        DownloadError: missing; ``what`` says what needs it and how to get it.
    """
    path = shutil.which(name)
    if path is None:
        raise DownloadError(f"`{name}` is not on PATH: {what}")
    return path


def run_step(cmd: list[str], what: str, cwd: Path | None = None, env: dict | None = None) -> None:
    """Runs one download or build command, saying ``what`` on stderr first.

    Raises:
        DownloadError: it failed; the message ends with its last output lines.
    """
    print(f"msewatch: {what} ...", file=sys.stderr)
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise DownloadError(f"{what} failed ({' | '.join(last)})")


def install_into(final: Path, fill: Callable[[Path], None]) -> Path:
    """``final``, filled once: calls ``fill(tmp)`` on a fresh folder, then renames it."""
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        fill(tmp)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
