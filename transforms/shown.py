"""Values shown to a person: on one line, control characters escaped, bounded in size.

Two helpers, used by every error message that echoes what a user wrote (the SLO file's
``got ...``, ``transforms/slo/config.py``, ``transforms/slo/spec.py``,
``transforms/compare/spec.py``) and by every line a command prints
(``msewatch/commands/terminal.py``):

* :func:`escape`: a text with each control character written as an escape
  (``\\x1b``, ``\\n``, ``\\u202e``), so that it cannot clear a screen or split a line;
* :func:`shown`: any value as a short repr. A YAML file can make a list of lists
  that shares its items (an alias bomb: nine aliases of nine aliases ... are a few
  lines of text and billions of items), so a list or mapping is walked with a budget
  of characters and never expanded whole; a long text is cut; an integer of
  thousands of digits is described by its length (Python refuses to write one of
  more than 4,300 digits).
"""

from __future__ import annotations

import datetime
import math
import re

LIMIT = 60  # characters of a value shown in an error message
MAX_DEPTH = 3  # levels of nested lists and mappings shown
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BRACKETS = {list: "[]", tuple: "()", dict: "{}", set: "{}", frozenset: "{}"}


def _escaped(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text, limit: int | None = None):
    """``text`` with every control character written as an escape, other text (unicode
    included) unchanged; cut to ``limit`` characters (with ``...``) when given.
    Non-strings pass through."""
    if not isinstance(text, str):
        return text
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return _CONTROL.sub(_escaped, text)


def shown(value, limit: int = LIMIT) -> str:
    """``value`` for an error message: its repr when short (``'99%'``, ``True``,
    ``[1, 2]``), else the start of it and what it is (``[[[...], ...], ...] (a list of
    9 items)``, ``'aaa...' (a text of 10000 characters)``). Costs O(limit), whatever
    the value."""
    out: list[str] = []
    complete = _render(value, out, [limit], 0)
    text = "".join(out)
    return text if complete else f"{text} ({_kind(value)})"


def _render(value, out: list[str], budget: list[int], depth: int) -> bool:
    """Appends a bounded repr of ``value`` to ``out``; False when something was left out."""
    brackets = _BRACKETS.get(type(value))
    if brackets is None:
        text, complete = _scalar(value, max(budget[0], 8))
        out.append(text)
        budget[0] -= len(text)
        return complete
    if not value:
        out.append(repr(value) if isinstance(value, (set, frozenset)) else brackets)
        return True
    if depth >= MAX_DEPTH or budget[0] <= 0:
        out.append(f"{brackets[0]}...{brackets[1]}")
        budget[0] -= 5
        return False
    out.append(brackets[0])
    budget[0] -= 2
    complete = True
    items = value.items() if isinstance(value, dict) else value
    for i, item in enumerate(items):
        if i:
            out.append(", ")
            budget[0] -= 2
        if budget[0] <= 0:
            out.append("...")
            complete = False
            break
        if isinstance(value, dict):
            complete &= _render(item[0], out, budget, depth + 1)
            out.append(": ")
            complete &= _render(item[1], out, budget, depth + 1)
        else:
            complete &= _render(item, out, budget, depth + 1)
    out.append(brackets[1])
    return complete


def _scalar(value, limit: int) -> tuple[str, bool]:
    """``(text, complete)`` of a value that is not a list or mapping."""
    if isinstance(value, (str, bytes)):
        if len(value) <= limit:
            return repr(value), True
        return repr(value[:limit]) + "...", False
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {_digits(value)} digits", True
    if value is None or isinstance(value, (bool, int, float, datetime.date)):
        return repr(value), True
    text = escape(repr(value))  # an object built in code: its repr, on one line
    return (text, True) if len(text) <= limit else (text[:limit] + "...", False)


def _digits(n: int) -> int:
    """Decimal digits of ``abs(n)``, without writing it (which Python refuses beyond
    4,300 digits)."""
    n = abs(n)
    digits = int((n.bit_length() - 1) * math.log10(2)) + 1
    return digits + 1 if n >= 10**digits else digits


def _kind(value) -> str:
    if isinstance(value, str):
        return f"a text of {len(value)} characters"
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} keys"
    if isinstance(value, (list, tuple, set, frozenset)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"
