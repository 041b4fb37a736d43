"""A small launcher that runs one command and writes its wall time and peak RSS as JSON.

Why a launcher: Linux counts in a child's ``ru_maxrss`` the memory of the process it
was spawned from (the pre-``exec`` address space), so a child spawned straight from
the benchmark process (which has pandas, DuckDB and Beam loaded) would report at
least the benchmark's own RSS. This launcher runs with ``python -S`` and imports only
the standard library it needs (about 10 MiB), spawns the command, waits for it with
``os.wait4`` and writes ``{"wall_s", "peak_rss_bytes", "user_s", "system_s",
"returncode"}`` to the JSON file.

Usage::

    python -S benchmarks/_spawn.py RESULT.json COMMAND [ARG...]
"""

import json
import os
import sys
import time


def main(argv):
    """Runs ``argv[1:]`` and writes its measurement to ``argv[0]``; returns its status."""
    result_path, command = argv[0], argv[1:]
    start = time.perf_counter()
    pid = os.posix_spawnp(command[0], command, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    returncode = os.waitstatus_to_exitcode(status)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "wall_s": wall,
                "peak_rss_bytes": usage.ru_maxrss * scale,
                "user_s": usage.ru_utime,
                "system_s": usage.ru_stime,
                "returncode": returncode,
            },
            f,
        )
    return 0 if returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
