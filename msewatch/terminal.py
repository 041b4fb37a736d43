"""Text that reaches a terminal: values from the tables, shown, never interpreted.

A slice value, an alert summary or a query result is data a model's callers chose:
an ANSI escape sequence in it (``\\x1b[2J`` clears the screen, ``\\x1b]8;;`` makes a
link) or a right-to-left override must be shown as text. :func:`escape` is used by
every line ``msewatch run`` (the summary), ``query`` (table format) and ``compare``
print.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\n``,
    ``\\u202e``); other text, unicode included, unchanged. Non-strings pass through."""
    if not isinstance(text, str):
        return text
    return _CONTROL.sub(_escaped, text)
