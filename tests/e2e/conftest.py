"""Tests in `tests/e2e`: the msewatch commands and the runners, end to end on real files.

Each gets the `e2e` marker."""

from tests.layers import mark_folder


def pytest_collection_modifyitems(items):
    mark_folder(__file__, items)
