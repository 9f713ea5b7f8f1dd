"""Every read-only console command reports Redis the same way: not configured or unreachable is
exit status 2 with one line naming the URL without its password; an unknown id is 1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.child import free_port

COMMANDS = [["event", "42"], ["captions", "42"], ["usage"]]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_redis_unreachable_is_exit_2_without_the_password(args: list[str]) -> None:
    url = f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0"  # nothing listens there
    out = subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        env={"PATH": "/usr/bin:/bin", "REACHLIVE_REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "unreachable" in out.stderr and "s3cret-pass" not in out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_redis_not_configured_is_exit_2(args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "REACHLIVE_REDIS_URL is not set" in out.stderr, out.stderr
