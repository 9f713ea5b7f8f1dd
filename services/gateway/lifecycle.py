"""Stopping background tasks for certain (issue 7's drain: "nothing left behind").

The mechanism lives in ``shared.aio`` (every service needs it); see its docstring for why a
cancellation can be swallowed on Python 3.11 with redis-py 8.
"""

from __future__ import annotations

from shared.aio import TaskSet, cancel_and_wait, check_cancelled

__all__ = ["cancel_and_wait", "check_cancelled", "stop_taskset"]


async def stop_taskset(tasks: TaskSet, timeout: float) -> bool:
    """Cancel every task of the set and wait for all of them (re-cancelling stragglers);
    True when none is left."""
    return await tasks.close(timeout)
