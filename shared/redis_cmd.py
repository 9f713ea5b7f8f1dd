"""``reachlive redis``: the embedded Redis in the foreground, for running services by hand."""

from __future__ import annotations

import argparse
import signal
import threading

from shared.cli import plain
from shared.embedded_redis import EmbeddedRedis
from shared.runtime import prepare


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reachlive redis", description=plain(__doc__))
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    args = parser.parse_args(argv)
    common = prepare("redis")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with EmbeddedRedis(common.data_dir, args.port) as server:
        print(f"REACHLIVE_REDIS_URL={server.url}", flush=True)
        stop.wait()
    return 0
