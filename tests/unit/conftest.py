"""Tests in `tests/unit`: pure functions, kernels and CombineFns called directly; no pipeline runs.

Each gets the `unit` marker."""

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.unit)
