"""Text that reaches a terminal: values from the tables, shown, never interpreted.

A slice value, an alert summary or a query result is data a model's callers chose:
an ANSI escape sequence in it (``\\x1b[2J`` clears the screen, ``\\x1b]8;;`` makes a
link) or a right-to-left override must be shown as text. :func:`escape` is used by
every line ``msewatch run`` (the summary), ``query`` (table format) and ``compare``
print. It is defined once, in ``transforms/shown.py``, beside the bounded values that
error messages show.
"""

from __future__ import annotations

from msewatch.transforms.shown import escape

__all__ = ["escape"]
