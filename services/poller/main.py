"""``reachlive poller``: Celery beat with the redbeat scheduler (DESIGN section 2, item 1).

Several replicas are safe: redbeat's lock in Redis (``keys.BEAT_PREFIX``) lets one lead; the
others wait on the lock and take over within ``REACHLIVE_POLLER_BEAT_LOCK_SECONDS`` of a
leader's death (a clean stop releases it at once).
"""

from __future__ import annotations

import argparse
import logging

from services.poller.app import make_app
from shared.embedded_redis import redis_url_or_embedded
from shared.metrics import start_metrics_server
from shared.runtime import prepare
from shared.settings import KalturaSettings, PollerSettings, load

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reachlive poller", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    common = prepare("poller")
    kaltura, poller = load(KalturaSettings), load(PollerSettings)
    start_metrics_server(common.metrics_port, common.metrics_host)
    with redis_url_or_embedded(common.redis_url, common.data_dir) as redis_url:
        app = make_app(redis_url, kaltura, poller)
        app.log.already_setup = True  # keep reachlive's structured logging
        log.info("poller (beat) starting", extra={"poll_seconds": kaltura.poll_seconds})
        beat = app.Beat(
            quiet=True,
            redirect_stdouts=False,
            loglevel=common.log_level,
            max_interval=poller.beat_max_interval_seconds,
        )
        try:
            beat.run()
        except SystemExit:
            pass  # SIGTERM/SIGINT: beat synced and released its lock
    log.info("poller (beat) stopped")
    return 0
