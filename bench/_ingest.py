"""A real ``reachlive ingest`` process for the ingest benches (bench/ingest.py, bench/publishers.py):
the same settings for both, so their figures compare."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.child import free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]


def start_ingest(redis_url: str, **settings: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start the ingest on a free loopback port and wait until it listens; ``settings`` are extra
    REACHLIVE_* variables. The caller terminates the process."""
    port = free_port()
    env = {
        **os.environ,
        "REACHLIVE_REDIS_URL": redis_url,
        "REACHLIVE_INGEST_LISTEN": f"127.0.0.1:{port}",
        "REACHLIVE_METRICS_PORT": "0",
        "REACHLIVE_LOG_LEVEL": "WARNING",
        "REACHLIVE_INGEST_MAX_PENDING_PER_ADDRESS": "100000",  # every publisher is 127.0.0.1
        **settings,
    }
    proc = subprocess.Popen([sys.executable, "-m", "services.ingest"], cwd=ROOT, env=env)
    try:
        wait_port(port)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, port
