"""The test layers: each folder's ``conftest.py`` marks its tests with the folder's name."""

from __future__ import annotations

from pathlib import Path

import pytest


def mark_folder(conftest_file: str, items) -> None:
    """Adds the marker named like the conftest's folder to the tests in that folder."""
    folder = Path(conftest_file).parent
    marker = getattr(pytest.mark, folder.name)
    for item in items:
        if folder in Path(str(item.fspath)).parents:
            item.add_marker(marker)
