"""``reachlive worker``: the Celery worker that runs poll, provision, reconcile, processing and
finalize against Kaltura (docs/design.md section 2). Threads pool: the work is Kaltura HTTP calls.
SIGTERM is Celery's warm shutdown: running tasks finish, unacknowledged ones go back to the queue.
"""

from __future__ import annotations

import argparse
import logging
import warnings

from celery.exceptions import CPendingDeprecationWarning

from services.poller import broker
from services.poller.app import make_app
from services.poller.sealing import require_keys
from shared import commands, probes
from shared.cli import plain
from shared.runtime import prepare, require_redis
from shared.settings import KalturaSettings, PollerSettings, load

log = logging.getLogger(__name__)

# Celery warns at every broker connection loss that acks_late tasks are not cancelled on it
# (a Celery 6 change); ours are idempotent and redelivered, and the outage has its own line.
warnings.filterwarnings("ignore", category=CPendingDeprecationWarning)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reachlive worker", description=plain(__doc__, 1))
    parser.add_argument("--concurrency", type=int, default=None, help="threads (default REACHLIVE_POLLER_CONCURRENCY)")
    parser.add_argument("--hostname", default=None, help="Celery node name")
    args = parser.parse_args(argv)
    common = prepare("worker")
    kaltura, poller = load(KalturaSettings), load(PollerSettings)
    redis_url = require_redis(common)
    require_keys(poller)  # the accessKeys it stores must open in every worker, and after a restart
    # Ready: the consumer's loop turns, Redis answers, and the broker consumer is connected.
    probe = probes.install("worker", ready_stale=5.0)
    probe.add_check("broker consumer connected", lambda: broker.Consumer.connected)
    probes.serve(probe, common.metrics_port, common.metrics_host)
    probes.start_pinger(probe, redis_url)
    app = make_app(redis_url, kaltura, poller)
    broker.install(app)
    app.log.already_setup = True  # keep reachlive's structured logging
    # Each reconnect would log "Connected to redis://…": the outage's back line says it once.
    logging.getLogger("celery.worker.consumer.connection").setLevel(logging.WARNING)
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
