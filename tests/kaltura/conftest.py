from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.kaltura.support import Admin, running_emulator


@pytest.fixture
def emulator() -> Iterator[Any]:
    with running_emulator() as emu:
        yield emu


@pytest.fixture
def admin(emulator: Any) -> Admin:
    return Admin(emulator.url)
