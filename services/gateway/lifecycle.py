"""Stopping background tasks for certain (issue 7's drain: "nothing left behind").

Python 3.11's ``asyncio.wait_for`` returns the awaited result instead of raising when a
cancellation lands just as the awaited operation completes (cpython gh-86296, fixed in 3.12).
redis-py 8 wraps every command *write* in ``wait_for`` whenever the client has a
``socket_timeout`` (``Connection.send_packed_command``), so a cancelled task can carry on: its
request stays counted in ``Task.cancelling()`` but no ``CancelledError`` is ever raised. A loop
that retries on Redis errors (a task feed, the revocation listener) would then run until the
event loop is torn down. Two defences, used together:

* ``check_cancelled`` in such loops turns a swallowed request back into ``CancelledError``;
* ``stop_taskset`` / ``cancel_and_wait`` cancel *again* whatever outlived a first request, until
  everything has finished or the deadline passed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from shared.aio import TaskSet

log = logging.getLogger(__name__)

RECANCEL_SECONDS = 0.5  # how long a cancelled task gets to clean up before it is asked again


def check_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop and the request was
    swallowed below us. Only for tasks that never absorb a cancellation on purpose."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout: float) -> set[asyncio.Task[Any]]:
    """Cancel the tasks and wait for them, cancelling again those that outlive each round;
    returns those still running at ``timeout`` (logged)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = {t for t in tasks if not t.done()}
    while pending:
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.error("background tasks did not stop: %s", sorted(t.get_name() for t in pending))
            break
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=min(RECANCEL_SECONDS, remaining))
    return pending


async def stop_taskset(tasks: TaskSet, timeout: float) -> bool:
    """Cancel every task of the set and wait for all of them (re-cancelling stragglers);
    True when none is left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(tasks):
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.error("background tasks of %s did not stop (%d left)", tasks.name, len(tasks))
            return False
        await tasks.close(timeout=min(RECANCEL_SECONDS, remaining))  # cancels each time
    return True
