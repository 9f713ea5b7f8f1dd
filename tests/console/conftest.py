"""One running stack (every service, the emulators, the embedded Redis) for the console's tests:
the commands are checked against real services, never against hand-written Redis contents."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.demo.stack import Stack

CONSOLE_TOKEN = "console-test-token-0123456789"


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("console")
    # A small window margin so that moving an event's end to "now" ends its media at once.
    # The operator's page on the gateways' metrics ports (tests/console/test_page.py).
    env = {"REACHLIVE_INGEST_WINDOW_MARGIN_SECONDS": "1", "REACHLIVE_GATEWAY_CONSOLE_TOKEN": CONSOLE_TOKEN}
    with Stack(data_dir=base / "data", log_dir=base / "logs", env=env) as s:
        yield s


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/console/" in str(item.path):
            item.add_marker(pytest.mark.timeout(300))
