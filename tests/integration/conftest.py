"""Tests in `tests/integration`: real servers and browsers on 127.0.0.1 (emulators, Chromium).

Each gets the `integration` marker."""

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
