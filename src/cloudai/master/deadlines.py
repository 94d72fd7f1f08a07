"""Time limits: a running task whose `--timeout` (or the master's `--max-task-time`) has run
out, counted from its start, is stopped the way a cancel stops it (its signal, its grace,
SIGKILL, removal: master/canceller.py) and ends `failed`, reason `deadline exceeded`. With
`--retry-on timeout` and retries left it goes back to the queue instead (master/retries.py).
Run by the dispatch-loop at each round; the deadline lives in the store (start + timeout), so a
restarted master enforces it too."""

from __future__ import annotations

import dataclasses
import logging
import time

from sqlalchemy import Connection

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import Task, TaskSpec
from cloudai.core.policy import DEADLINE_EXCEEDED, format_duration
from cloudai.core.requests import CancelRequest
from cloudai.errors import CloudAIError, InvalidArgument
from cloudai.master.canceller import Canceller
from cloudai.master.retries import retries_left
from cloudai.store import Store, queue, tasks

__all__ = ["Deadlines", "with_time_limit"]

log = logging.getLogger("cloudai.master.deadline")


def with_time_limit(spec: TaskSpec, max_task_time: float) -> TaskSpec:
    """The spec with the master's `--max-task-time` (0: none) as its time limit when it names
    none; a longer one is refused."""
    if not max_task_time:
        return spec
    if spec.timeout_seconds is None:
        return dataclasses.replace(spec, timeout_seconds=max_task_time)
    if spec.timeout_seconds > max_task_time:
        raise InvalidArgument(
            f"timeout {format_duration(spec.timeout_seconds)} is longer than this master's "
            f"--max-task-time {format_duration(max_task_time)}"
        )
    return spec


def _expired_tx(conn: Connection, now: float) -> list[Task]:
    found = [tasks.get(conn, t) for t in queue.expired(conn, now)]
    return [t for t in found if t is not None]


class Deadlines:
    def __init__(self, store: Store, canceller: Canceller) -> None:
        self.store = store
        self.canceller = canceller

    async def enforce(self) -> None:
        for task in await self.store.tx(_expired_tx, time.time()):
            retry = task.spec.retry_on_timeout and retries_left(task) > 0
            final = None if retry else TaskStatus.FAILED
            log.warning(
                "⏱ task %s ran past its %gs time limit: stopping it%s",
                task.task_id,
                task.spec.timeout_seconds or 0,
                " (it will run again)" if retry else "",
            )
            try:
                req = CancelRequest("master", DEADLINE_EXCEEDED)
                await self.canceller.cancel(task.task_id, req, final=final)
            except CloudAIError as exc:  # it ended meanwhile
                log.info("time limit of %s: %s", task.task_id, exc)
