"""pytest fixtures: ``emulator`` (fresh state per test) and ``emulator_api_key``.

Registered through the ``pytest11`` entry point, so any project with visionchat
installed can use them.  One server runs per session; ``reset()`` between tests
clears faults, records, uploads and conversations.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._server import Emulator

API_KEY = "test-key"


@pytest.fixture(scope="session")
def _visionchat_emulator_server() -> Iterator[Emulator]:
    with Emulator(api_key=API_KEY) as emu:
        yield emu


@pytest.fixture
def emulator_api_key() -> str:
    return API_KEY


@pytest.fixture
def emulator(_visionchat_emulator_server: Emulator) -> Iterator[Emulator]:
    emu = _visionchat_emulator_server
    emu.reset()
    emu.api_key = API_KEY
    emu.chunk_delay = 0.0
    emu.latency = 0.0
    emu.rate_limit = None
    emu.rate_window = 60.0
    emu.rate_limit_retry_after = True
    yield emu
    emu.reset()
