"""Facts a server-backed test observed (Flink's REST record of a job, the checkpoint a
job restored), printed in the ``evidence`` section of the test summary even when every
test passes: ``pytest -q`` hides a passing test's own output."""

from __future__ import annotations

_LINES: list[str] = []


def say(line: str) -> None:
    """Prints ``line`` now (``pytest -s``) and in the summary."""
    print(line)
    _LINES.append(line)


def lines() -> list[str]:
    return list(_LINES)
