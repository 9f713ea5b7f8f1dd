"""``reachlive all``: every service in one process tree on one machine (docs/design.md section 6).

One embedded Redis (unless REACHLIVE_REDIS_URL is set) shared by a Celery worker, the beat,
ingest, relay and gateway, each a child process with its own metrics port (METRICS_PORT + i
when METRICS_PORT is set, so one scrape config covers them); ``--replicas`` runs more than one
process of a service.
"""

from __future__ import annotations

import argparse
import os
import signal

from services.all.supervisor import Child, Supervisor
from services.poller import sealing
from shared.cli import plain
from shared.embedded_redis import redis_url_or_embedded
from shared.runtime import prepare
from shared.settings import PollerSettings, load

SERVICES = ("worker", "poller", "ingest", "relay", "gateway")
# The beat schedules every poll: two would send each one twice. The others scale by replicas on
# one host too: ingest and gateway processes share their port (SO_REUSEPORT, the kernel spreads
# the connections), relays and workers share their Redis consumer group and Celery queue.
SINGLETONS = ("poller",)


def parse_replicas(text: str) -> dict[str, int]:
    """``"ingest=2,relay=3"`` → ``{"ingest": 2, "relay": 3}``; ValueError with the reason."""
    out: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, count = item.partition("=")
        name = name.strip()
        if not sep or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"{item!r}: expected service=count, count ≥ 1")
        if name not in SERVICES:
            raise ValueError(f"unknown service {name!r}")
        if name in SINGLETONS and int(count) > 1:
            raise ValueError(f"{name} runs once: a second beat would send every poll twice")
        out[name] = int(count)
    return out


def build_children(
    redis_url: str, metrics_port: int, only: tuple[str, ...] = SERVICES, replicas: dict[str, int] | None = None
) -> list[Child]:
    children = []
    for name in only:
        count = (replicas or {}).get(name, 1)
        for i in range(count):
            port = metrics_port + len(children) if metrics_port else 0
            env = {"REACHLIVE_REDIS_URL": redis_url, "REACHLIVE_METRICS_PORT": str(port)}
            args = [name]
            if name == "worker" and count > 1:
                args += ["--hostname", f"worker{i}@%h"]  # Celery node names must differ
            children.append(Child(name=name if count == 1 else f"{name}-{i}", args=args, env=env))
    return children


def encryption_keys(redis_url: str) -> None:
    """The workers seal each task's accessKey in Redis (issue 19; docs/operating.md "Secrets"). On the
    embedded Redis, which keeps nothing past this run, a key made for the run and handed to every
    child serves; an external Redis outlives the run, so its keys must be set (SettingsError)."""
    poller = load(PollerSettings)
    if sealing.split_keys(poller.encryption_keys.get_secret_value()):
        return
    if redis_url:
        sealing.require_keys(poller)
    os.environ[sealing.VARIABLE] = sealing.new_key()  # the children inherit the environment


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reachlive all", description=plain(__doc__))
    parser.add_argument("--only", default=",".join(SERVICES), help="comma list of services to run")
    parser.add_argument(
        "--replicas",
        default="",
        help="processes per service, e.g. ingest=2,relay=2 (one each otherwise; the poller runs once)",
    )
    args = parser.parse_args(argv)
    only = tuple(s for s in args.only.split(",") if s)
    unknown = set(only) - set(SERVICES)
    if unknown:
        parser.error(f"unknown services: {', '.join(sorted(unknown))}")
    try:
        replicas = parse_replicas(args.replicas)
    except ValueError as exc:
        parser.error(f"--replicas: {exc}")
    common = prepare("all")
    if "worker" in only:
        encryption_keys(common.redis_url)
    with redis_url_or_embedded(common.redis_url, common.data_dir) as redis_url:
        supervisor = Supervisor(build_children(redis_url, common.metrics_port, only, replicas))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: supervisor.stopping.set())
        return supervisor.run()
