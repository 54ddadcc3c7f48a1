"""MONAI Label's background tasks (training, scoring), bounded: its executor queues every submission and keeps
every task it ever ran in memory. Here at most ``MAX_WAITING`` wait behind the running one (429 beyond), and
the history keeps the last ``KEEP_FINISHED`` finished tasks of each kind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from monailabel.utils.async_tasks import utils as async_tasks

from breastlab.server.http import errors

MAX_WAITING = 4
KEEP_FINISHED = 50
WAITING = "SUBMITTED"  # MONAI Label's status of a task not started yet
_SUBMITTING = threading.Lock()


@contextmanager
def submitting(method: str) -> Iterator[None]:
    """Hold while submitting a ``method`` task: refuses one more when ``MAX_WAITING`` already wait."""
    with _SUBMITTING:
        history = async_tasks.tasks(method)  # MONAI Label's own list, trimmed in place
        if sum(task["status"] == WAITING for task in history) >= MAX_WAITING:
            raise errors.too_many(f"{MAX_WAITING} {method} tasks are already waiting: try again when one has run")
        finished = [task for task in history if task["status"] not in (WAITING, "RUNNING")]
        for task in finished[:-KEEP_FINISHED]:
            history.remove(task)
        yield
