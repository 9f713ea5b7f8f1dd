"""``reachlive all``: every service in one process tree on one machine (DESIGN section 6).

One embedded Redis (unless REACHLIVE_REDIS_URL is set) shared by a Celery worker, the beat,
ingest, relay and gateway, each a child process with its own metrics port (METRICS_PORT + i
when METRICS_PORT is set, so one scrape config covers them).
"""

from __future__ import annotations

import argparse
import signal

from services.all.supervisor import Child, Supervisor
from shared.embedded_redis import redis_url_or_embedded
from shared.runtime import prepare

SERVICES = ("worker", "poller", "ingest", "relay", "gateway")


def build_children(redis_url: str, metrics_port: int, only: tuple[str, ...] = SERVICES) -> list[Child]:
    children = []
    for i, name in enumerate(only):
        port = metrics_port + i if metrics_port else 0
        env = {"REACHLIVE_REDIS_URL": redis_url, "REACHLIVE_METRICS_PORT": str(port)}
        children.append(Child(name=name, args=[name], env=env))
    return children


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reachlive all", description=__doc__)
    parser.add_argument("--only", default=",".join(SERVICES), help="comma list of services to run")
    args = parser.parse_args(argv)
    only = tuple(s for s in args.only.split(",") if s)
    unknown = set(only) - set(SERVICES)
    if unknown:
        parser.error(f"unknown services: {', '.join(sorted(unknown))}")
    common = prepare("all")
    with redis_url_or_embedded(common.redis_url, common.data_dir) as redis_url:
        supervisor = Supervisor(build_children(redis_url, common.metrics_port, only))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: supervisor.stopping.set())
        return supervisor.run()
