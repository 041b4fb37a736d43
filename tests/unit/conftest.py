"""Tests in `tests/unit`: pure functions, kernels and CombineFns called directly; no pipeline runs.

Each gets the `unit` marker."""

from tests.layers import mark_folder


def pytest_collection_modifyitems(items):
    mark_folder(__file__, items)
