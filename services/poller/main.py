"""``reachlive poller``: Celery beat with the redbeat scheduler (docs/design.md section 2, item 1).

Several replicas are safe: redbeat's lock in Redis (``keys.BEAT_PREFIX``) lets one lead; the
others wait on the lock and take over within ``REACHLIVE_POLLER_BEAT_LOCK_SECONDS`` of a
leader's death (a clean stop releases it at once). Redis outages are ridden through in process
(services/poller/beat.py says how the lock stays safe across one).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import Any

from services.poller.app import make_app
from shared import probes
from shared.cli import plain
from shared.runtime import prepare, require_redis
from shared.settings import KalturaSettings, PollerSettings, load

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reachlive poller", description=plain(__doc__, 1))
    parser.parse_args(argv)
    common = prepare("poller")
    kaltura, poller = load(KalturaSettings), load(PollerSettings)
    redis_url = require_redis(common)
    # The beat ticks at most every max interval (or its outage backoff): its loop is "turning"
    # while a tick came within two of those.
    probe = probes.install("poller", ready_stale=2 * max(poller.beat_max_interval_seconds, 5.0) + 2.0)
    probes.serve(probe, common.metrics_port, common.metrics_host)
    probes.start_pinger(probe, redis_url)
    app = make_app(redis_url, kaltura, poller)
    app.log.already_setup = True  # keep reachlive's structured logging
    log.info("poller (beat) starting", extra={"poll_seconds": kaltura.poll_seconds})
    beat = app.Beat(
        quiet=True,
        redirect_stdouts=False,
        loglevel=common.log_level,
        max_interval=poller.beat_max_interval_seconds,
    )
    _bounded_stop(beat)
    try:
        beat.run()
    except SystemExit:
        pass  # SIGTERM/SIGINT: beat synced and released its lock
    log.info("poller (beat) stopped")
    return 0


# A stop that has to reach an unreachable Redis (the lock release, the schedule sync) is given
# this long, then the process exits anyway: the lock expires by itself, and the parent (``all``,
# or the kubelet's grace period) must not wait on a beat riding through an outage.
STOP_DEADLINE_SECONDS = 10.0


def _bounded_stop(beat: Any) -> None:
    """Celery's SIGTERM/SIGINT handler syncs the schedule with Redis before exiting; arm a
    deadline first (seen: a beat SIGTERMed with its Redis gone stayed over 40 s)."""
    install = beat.install_sync_handler

    def install_bounded(service: Any) -> None:
        install(service)
        for sig in (signal.SIGTERM, signal.SIGINT):
            celery_handler = signal.getsignal(sig)

            def on_signal(signum: int, frame: Any, celery_handler: Any = celery_handler) -> None:
                timer = threading.Timer(STOP_DEADLINE_SECONDS, os._exit, args=(0,))
                timer.daemon = True
                timer.start()
                celery_handler(signum, frame)

            signal.signal(sig, on_signal)

    beat.install_sync_handler = install_bounded
