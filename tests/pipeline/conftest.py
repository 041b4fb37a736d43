"""Tests in `tests/pipeline`: one TestPipeline / TestStream run per composite transform.

Each gets the `pipeline` marker."""

from tests.layers import mark_folder


def pytest_collection_modifyitems(items):
    mark_folder(__file__, items)
