"""``reachlive worker``: the Celery worker that runs poll, provision, reconcile, processing and
finalize against Kaltura (DESIGN section 2). Threads pool: the work is Kaltura HTTP calls.
SIGTERM is Celery's warm shutdown: running tasks finish, unacknowledged ones go back to the queue.
"""

from __future__ import annotations

import argparse
import logging

from services.poller.app import make_app
from shared import commands
from shared.embedded_redis import redis_url_or_embedded
from shared.metrics import start_metrics_server
from shared.runtime import prepare
from shared.settings import KalturaSettings, PollerSettings, load

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reachlive worker", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=None, help="threads (default REACHLIVE_POLLER_CONCURRENCY)")
    parser.add_argument("--hostname", default=None, help="Celery node name")
    args = parser.parse_args(argv)
    common = prepare("worker")
    kaltura, poller = load(KalturaSettings), load(PollerSettings)
    start_metrics_server(common.metrics_port, common.metrics_host)
    with redis_url_or_embedded(common.redis_url, common.data_dir) as redis_url:
        app = make_app(redis_url, kaltura, poller)
        app.log.already_setup = True  # keep reachlive's structured logging
        log.info("worker starting")
        worker = app.Worker(
            pool="threads",
            concurrency=args.concurrency or poller.concurrency,
            queues=[commands.QUEUE],
            hostname=args.hostname,
            loglevel=common.log_level,
            quiet=True,
            redirect_stdouts=False,
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
        )
        worker.start()
        code = int(getattr(worker, "exitcode", 0) or 0)
    log.info("worker stopped")
    return code
