"""Poller fixtures: the Kaltura emulator, the poller's Celery app and a real Celery worker
(celery.contrib.testing's in-process worker thread, threads pool) on the embedded Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from services.poller.app import make_app
from shared import commands
from shared.settings import PollerSettings
from tests.kaltura.support import Admin, running_emulator, settings_for

MEDIA_URL = "rtmp://ingest.example.com:1935/live"
CAPTION_URL = "wss://captions.example.com/v1/captions"
# REACHLIVE_POLLER_ENCRYPTION_KEYS of the tests' workers (a Fernet key: 32 bytes, url-safe base64).
ENCRYPTION_KEY = "dGVzdHMtcG9sbGVyLWVuY3J5cHRpb24ta2V5LTMyYiE="


@pytest.fixture
def emulator() -> Iterator[Any]:
    with running_emulator() as emu:
        yield emu


@pytest.fixture
def admin(emulator: Any) -> Admin:
    return Admin(emulator.url)


def build_app(redis_url: str, service_url: str, **poller: Any) -> Celery:
    opts: dict[str, Any] = {
        "retry_backoff_max_seconds": 1,
        "max_retries": 4,
        "feature_lock_retries": 2,
        "encryption_keys": ENCRYPTION_KEY,
    }
    opts.update(poller)
    app = make_app(
        redis_url, settings_for(service_url), PollerSettings(**opts), media_url=MEDIA_URL, caption_url=CAPTION_URL
    )
    # A test starts and stops a worker of its own, and the worker's consumer notices the stop only
    # when its BRPOP returns: after kombu's brpop_timeout, 1 s by default, so a second per test.
    # polling_interval sets that timeout (kombu's redis transport).
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "polling_interval": 0.1}
    return app


@pytest.fixture
def poller_options() -> dict[str, Any]:
    return {}


@pytest.fixture
def poller_app(redis_url: str, emulator: Any, poller_options: dict[str, Any]) -> Celery:
    return build_app(redis_url, emulator.url, **poller_options)


@pytest.fixture
def worker(poller_app: Celery) -> Iterator[Any]:
    with start_worker(
        poller_app, pool="threads", concurrency=4, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10
    ) as w:
        yield w


@pytest.fixture
def send(redis_url: str):
    """Send a command exactly as ingest/relay do (shared.commands, by name, broker only)."""

    def _send(name: str, *args: object) -> None:
        commands.send(redis_url, name, *args)

    return _send
