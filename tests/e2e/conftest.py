"""Tests in `tests/e2e`: the msewatch commands and the runners, end to end on real files.

Each gets the `e2e` marker."""

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
