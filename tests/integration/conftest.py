"""Tests in `tests/integration`: real servers and browsers on 127.0.0.1 (emulators, Chromium).

Each gets the `integration` marker."""

import pytest

from tests import pubsub_emulator as emu
from tests.layers import mark_folder


def pytest_collection_modifyitems(items):
    mark_folder(__file__, items)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """A Pub/Sub emulator on 127.0.0.1 for the module; skips with the reason when it
    cannot start, except under ``MSEWATCH_REQUIRE_SERVERS=1`` (CI), where it fails."""
    with emu.running_emulator(tmp_path_factory.mktemp("pubsub") / "emulator.log") as running:
        yield running
