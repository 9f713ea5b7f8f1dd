"""Small asyncio helpers: named background tasks whose failures are logged, never lost, and
that stop for certain.

Python 3.11's ``asyncio.wait_for`` returns the awaited result instead of raising when a
cancellation lands just as the awaited operation completes (cpython gh-86296, fixed in 3.12).
redis-py 8 wraps every command *write* in ``wait_for`` whenever the client has a
``socket_timeout``, so a cancelled task can carry on: its request stays counted in
``Task.cancelling()`` but no ``CancelledError`` is raised. Two defences, used together:
``check_cancelled`` in loops that retry on Redis errors turns a swallowed request back into
``CancelledError``, and ``cancel_and_wait`` / ``TaskSet.close`` cancel *again* whatever outlived
a first request, until everything has finished or the deadline passed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

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


class TaskSet:
    """Owns background tasks: keeps a reference, logs an exception, cancels all on close.

    Use it where a TaskGroup does not fit (tasks that outlive the block that started them,
    e.g. one per connection). ``spawn`` never returns a task nobody watches.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self, timeout: float = 10.0) -> bool:
        """Cancel every task, re-cancelling stragglers, and wait up to ``timeout`` for all of
        them (also for tasks spawned meanwhile); True when none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks:
            remaining = deadline - loop.time()
            if remaining <= 0 or await cancel_and_wait(list(self._tasks), remaining):
                log.error("background tasks of %s did not stop (%d left)", self.name, len(self._tasks))
                return False
            await asyncio.sleep(0)  # let done-callbacks drop finished tasks from the set
        return True
