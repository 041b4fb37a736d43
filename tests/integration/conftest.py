"""Tests in `tests/integration`: real servers and browsers on 127.0.0.1 (emulators, Chromium).

Each gets the `integration` marker."""

import contextlib

import pytest

from tests import pubsub_emulator as emu
from tests.layers import mark_folder
from tests.servers import cannot_start


def pytest_collection_modifyitems(items):
    mark_folder(__file__, items)


@pytest.fixture(scope="module")
def emulator():
    """A Pub/Sub emulator on 127.0.0.1 for the module; skips with the reason when it
    cannot start, except under ``MSEWATCH_REQUIRE_SERVERS=1`` (CI), where it fails."""
    with contextlib.ExitStack() as stack:
        try:
            running = stack.enter_context(emu.running_emulator())
        except emu.EmulatorUnavailable as err:
            cannot_start(f"Pub/Sub emulator unavailable: {err}")
        yield running
