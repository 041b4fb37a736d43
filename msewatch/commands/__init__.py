"""The commands around the pipeline: what ``msewatch generate``, ``query``, ``report``,
``slo``, ``gameday``, ``serve``, ``compare`` and ``local`` do, one module (or package)
each, with their helpers. ``msewatch/cli.py`` parses argv and calls them; ``msewatch run``
itself is ``runners/launch.py``. Nothing below ``runners/`` imports from here."""
