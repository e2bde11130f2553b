"""Fixtures of the firmware tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.firmware.manager_harness import Harness, open_harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A firmware manager rig (see ``manager_harness``)."""
    async with open_harness(tmp_path) as h:
        yield h
