"""Ending a task we own without swallowing our own cancellation.

``task.cancel(); await task`` raises CancelledError in the awaiting task; suppressing
it blindly (``suppress(CancelledError)`` or worse ``suppress(BaseException)``) would
also swallow a cancellation aimed at *us* that arrives while we wait, and the caller
would run on after being told to stop. ``Task.cancelling()`` (Python 3.11) tells the
two apart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("petra.io")


async def cancel_and_wait(task: asyncio.Task[Any] | None, what: str = "task") -> None:
    """Cancel ``task`` and wait for it to end; re-raise only our own cancellation.
    An exception the task ended with is logged (it is ending at our request)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception as exc:
        log.debug("event=task_ended what=%s error=%s: %s", what, type(exc).__name__, exc)
