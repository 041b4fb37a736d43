"""Sending alerts under one deadline: batches, concurrency, retries (Beam-free).

:func:`deliver` sends a list of payloads in batches of ``batch_size``, ``concurrency``
batches at a time, and returns the payloads that were not delivered with the reason.
Everything happens before one :class:`Deadline` (monotonic clock):

* each try of a batch waits at most ``min(timeout_seconds, time left)`` for an answer;
* a failed try is retried after a backoff (``backoff_seconds``, doubling) up to
  ``attempts`` tries, unless the wait would pass the deadline;
* a permanent refusal (an HTTP 4xx other than 408 Request Timeout and 429 Too Many
  Requests) is not retried. A batch refused so is split in halves and each half sent
  again, down to single payloads, so that only the payloads the server refuses are
  reported (Alertmanager stores the valid alerts of a list and answers 400 for the
  others);
* a batch without an answer when the deadline passes is reported as such: :func:`deliver`
  returns at most :data:`GRACE_SECONDS` after the deadline even if a request is still
  hanging in its thread (the thread ends at its own timeout, itself within the deadline).
"""

from __future__ import annotations

import concurrent.futures
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Sequence

RETRIED_4XX = (408, 429)
GRACE_SECONDS = 0.25
"""How long past the deadline :func:`deliver` waits for a try that timed out at it to
report its own reason."""


def check_http_url(url: str, option: str) -> None:
    """Raises ValueError unless ``url`` is an ``http://`` or ``https://`` URL with a host.

    Args:
        url: the value given.
        option: the option's name, for the message (``--alertmanager``).
    """
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number 0-65535)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{option} must be an http:// or https:// URL with a host, e.g. "
            f"http://127.0.0.1:9093, got {url[:200]!r}"
        )


class Deadline:
    """A point in time ``seconds`` from now on ``clock`` (monotonic by default)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        """Seconds left, 0 once passed."""
        return max(0.0, self._end - self._clock())


def is_permanent(error: BaseException) -> bool:
    """True for an answer that a retry cannot change: HTTP 4xx but 408 and 429."""
    code = getattr(error, "code", None)
    return (
        isinstance(error, urllib.error.HTTPError)
        and isinstance(code, int)
        and 400 <= code < 500
        and code not in RETRIED_4XX
    )


def describe(error: BaseException) -> str:
    """One line: the error's type and message, and an HTTP answer's body (its reason)."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, urllib.error.HTTPError):
        try:
            body = error.read(300).decode("utf-8", "replace").strip()
        except Exception:  # noqa: BLE001 (the body is only a detail of the message)
            body = ""
        if body:
            text += f": {body}"
    return " ".join(text.split())


def with_retries(
    send: Callable[[float], None],
    attempts: int,
    backoff_seconds: float,
    timeout_seconds: float,
    deadline: Deadline,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str | None, bool]:
    """Calls ``send(timeout)`` until it returns, at most ``attempts`` times.

    Returns:
        ``(None, False)`` when sent, else ``(the last error, permanent)``; no try starts
        and no backoff passes beyond ``deadline``.
    """
    wait = backoff_seconds
    error = None
    for attempt in range(attempts):
        left = deadline.remaining()
        if left <= 0:
            return error or f"not sent before the {deadline.seconds:g}s delivery deadline", False
        try:
            send(min(timeout_seconds, left))
            return None, False
        except Exception as e:  # noqa: BLE001 (any failure is retried, then dead-lettered)
            error = describe(e)
            if is_permanent(e):
                return f"{error} (a permanent refusal: not retried)", True
        if attempt + 1 < attempts:
            if wait >= deadline.remaining():
                return f"{error} (gave up at the {deadline.seconds:g}s delivery deadline)", False
            sleep(wait)
            wait *= 2
    return error, False


def deliver(
    post: Callable[[list, float], None],
    payloads: Sequence,
    *,
    batch_size: int,
    concurrency: int,
    attempts: int,
    backoff_seconds: float,
    timeout_seconds: float,
    deadline: Deadline,
) -> list[tuple[int, str]]:
    """Sends ``payloads`` with ``post(batch, timeout)`` (raises on failure).

    Returns:
        ``(index in payloads, reason)`` for every payload not delivered, sorted.
    """

    def send(indices: list[int]) -> list[tuple[int, str]]:
        batch = [payloads[i] for i in indices]
        error, permanent = with_retries(
            lambda timeout: post(batch, timeout), attempts, backoff_seconds, timeout_seconds,
            deadline,
        )  # fmt: skip
        if error is None:
            return []
        if permanent and len(indices) > 1:  # find the payloads the server refuses
            half = len(indices) // 2
            return send(indices[:half]) + send(indices[half:])
        return [(i, error) for i in indices]

    batches = [
        list(range(start, min(start + batch_size, len(payloads))))
        for start in range(0, len(payloads), batch_size)
    ]
    if not batches:
        return []
    pool = concurrent.futures.ThreadPoolExecutor(min(concurrency, len(batches)))
    try:
        futures = {pool.submit(send, batch): batch for batch in batches}
        done, _ = concurrent.futures.wait(futures, deadline.remaining() + GRACE_SECONDS)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    failed = []
    late = f"no answer before the {deadline.seconds:g}s delivery deadline"
    for future, batch in futures.items():
        if future in done and future.exception() is None:
            failed.extend(future.result())
        elif future in done:
            failed.extend((i, describe(future.exception())) for i in batch)
        else:
            failed.extend((i, late) for i in batch)
    return sorted(failed)
