"""The cluster's tasks: submit, show, list (one TaskFilter), results, logs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import cast

from sqlalchemy import Connection

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import (
    Task,
    TaskResult,
    TaskSpec,
    new_task_id,
    normalize_signal,
)
from cloudai.core.requests import TaskFilter
from cloudai.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    check,
)
from cloudai.failpoints import failpoint
from cloudai.master import planner
from cloudai.master.auth import Caller
from cloudai.master.beats import Beats
from cloudai.master.canceller import Canceller
from cloudai.master.config import MasterConfig
from cloudai.master.deadlines import with_time_limit
from cloudai.master.dispatcher import Dispatcher
from cloudai.master.peers import WorkerPeers
from cloudai.master.queue import in_queue_order, queue_tx
from cloudai.metrics import MasterMetrics
from cloudai.store import Store, assignments, events, results, tasks, workers

__all__ = ["TaskDesk", "deny_tx"]

log = logging.getLogger("cloudai.master")


def _summaries(found: list[Task]) -> list[Task]:
    return [dataclasses.replace(t, spec=t.spec.summary()) for t in found]


def _page_tx(conn: Connection, f: TaskFilter) -> tuple[list[Task], int]:
    """A page of tasks, and how many match in all (counted only when the page is full)."""
    found = tasks.list_tasks(conn, f)
    if not f.limit or len(found) < f.limit:
        return found, len(found)
    return found, tasks.count_tasks(conn, f)


def deny_tx(conn: Connection, caller: Caller, task_ids: list[str], action: str, now: float) -> None:
    """A refusal of `action` on other users' tasks, as an audit event on each."""
    for task_id in task_ids:
        events.add(conn, task_id, "denied", caller.name, f"{action} refused: not the owner", now)
    log.warning("⛔ %s may not %s %s: not the owner", caller.name, action, ", ".join(task_ids))


class TaskDesk:
    """Tasks in and out (part of Cluster)."""

    # Set by Cluster.__init__.
    store: Store
    config: MasterConfig
    metrics: MasterMetrics
    dispatcher: Dispatcher
    peers: WorkerPeers
    canceller: Canceller
    beats: Beats

    async def submit(self, spec: TaskSpec, caller: Caller) -> Task:
        """Submit as `caller`, who owns the task (whatever the spec says)."""
        try:
            stop_signal = normalize_signal(spec.stop_signal)  # TERM, term, 15 -> SIGTERM
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        spec = dataclasses.replace(spec, owner=caller.name, stop_signal=stop_signal)
        spec = with_time_limit(spec, self.config.max_task_time)
        problems = spec.problems()
        if problems:
            raise InvalidArgument("; ".join(problems))
        task, address = await self.store.tx(self._submit_tx, new_task_id(), spec, time.time())
        log.info("task %s submitted (%s, %s)", task.task_id, spec.image, spec.resources)
        self.metrics.submitted.inc()
        if task.worker_id and address:  # placed: delivered now, with what the store said
            self.metrics.placements.labels(task.worker_id).inc()
            self.dispatcher.deliver_soon(task.task_id, task.worker_id, (task, address))
        # Place it now if it fits, so the reply already says where it runs.
        if task.status is TaskStatus.PENDING and await self.dispatcher.place_pending():
            task = await self.get_task(task.task_id)
        return task

    def _submit_tx(
        self, conn: Connection, task_id: str, spec: TaskSpec, now: float
    ) -> tuple[Task, str]:
        """The task stored (and placed, when it names its worker), and its worker's address
        ("": not placed)."""
        placed_at_once = bool(spec.worker_id)  # or refused: never pending
        if (
            not placed_at_once
            and tasks.pending_of(conn, spec.owner) >= self.config.max_pending_per_user
        ):
            raise RateLimited(
                f"{spec.owner} has {self.config.max_pending_per_user} pending tasks already: "
                "wait for some to start, or cancel some",
                retry_after=self.config.heartbeat_interval,
            )
        heard = self.beats.last(spec.worker_id) if spec.worker_id else None
        return planner.submit(conn, task_id, spec, now, self.config.heartbeat_interval, heard)

    async def get_task(self, task_id: str, caller: Caller | None = None) -> Task:
        """A task with its events; with `caller`, only its owner or an admin may see it."""
        task = await self.store.tx(planner.task_detail, task_id)
        if task is None:
            raise NotFound(f"task {task_id!r} not found")
        if caller is not None and not caller.may_touch(task.spec.owner):
            await self.deny(caller, [task_id], "show")
        return task

    async def deny(self, caller: Caller, task_ids: list[str], action: str) -> None:
        """Refuse `action` on other users' tasks: an audit event on each, then PERMISSION_DENIED."""
        await self.store.tx(deny_tx, caller, task_ids, action, time.time())
        raise PermissionDenied(f"{caller.name} may not {action} task {task_ids[0]}: not the owner")

    async def list_tasks(
        self, f: TaskFilter, caller: Caller | None = None
    ) -> tuple[list[Task], int, int]:
        """The tasks `f` matches that the caller may see (admins: all) — the first `f.limit`,
        or with `f.newest` the newest — how many it may not see, and how many it may."""
        check(f.problems())
        # Each task as a summary (the command and env cut to LIST_FIELD_MAX): a list of
        # thousands of tasks stays well within a reply. `get_task` has them whole.
        if caller is None or caller.admin:
            found, total = await self.store.tx(_page_tx, f)
            return await self._queued(f.status, _summaries(found)), 0, total
        others = dataclasses.replace(f, cancelled_by="", limit=0)  # counted, not listed
        if f.owner and f.owner != caller.name:
            hidden = await self.store.tx(tasks.count_tasks, others, caller.name)
            return [], hidden, 0
        found, total = await self.store.tx(_page_tx, dataclasses.replace(f, owner=caller.name))
        # Asked for its own tasks (or by canceller): nothing of others matched to hide.
        hidden = (
            0
            if f.cancelled_by or f.owner
            else await self.store.tx(tasks.count_tasks, others, caller.name)
        )
        return await self._queued(f.status, _summaries(found)), hidden, total

    async def _queued(self, status: str, found: list[Task]) -> list[Task]:
        """Pending tasks in queue order, each with its position and why it waits."""
        if status != TaskStatus.PENDING.value or not found:
            return found
        slots, _ = await self.store.tx(
            queue_tx, time.time(), self.config.heartbeat_interval, self.beats.heard()
        )
        return in_queue_order(found, slots)

    async def report(self, result: TaskResult) -> str:
        check(result.problems())
        result = result.bounded()  # the logs' tail, short texts: what the store keeps
        await self.canceller.outage.replay()  # a stop journaled without the store goes first
        placed_on = await self.store.tx(assignments.worker_of, result.task_id)
        if placed_on is not None and placed_on != result.worker_id:
            raise PermissionDenied(
                f"task {result.task_id} is not assigned to worker {result.worker_id[:64]!r}"
            )
        failpoint("report.before_result_write")
        outcome, message = await self.store.tx(planner.record_result, result, time.time())
        log.info(
            "task %s reported %s by %s (exit %s): %s",
            result.task_id,
            result.status.value,
            result.worker_id,
            result.exit_code,
            outcome,
        )
        self.dispatcher.wake()  # room may have freed
        return message

    async def stream_logs(
        self, task_id: str, follow: bool, caller: Caller | None = None
    ) -> AsyncIterator[bytes]:
        """Live from the worker while it holds the task (also a cancelled one still
        stopping); from the stored result once there is one."""
        task = await self.get_task(task_id)
        if caller is not None and not caller.may_touch(task.spec.owner):
            await self.deny(caller, [task_id], "read the logs of")
        while follow and task.status is TaskStatus.PENDING:
            await asyncio.sleep(0.5)
            task = await self.get_task(task_id)
        while task.worker_id and task.result is None:
            # Not None: a task's worker_id comes from its assignment, whose worker row (a
            # foreign key) is never deleted.
            worker = cast(workers.WorkerRow, await self.store.tx(workers.get, task.worker_id))
            try:
                async for chunk in self.peers.logs(
                    task.worker_id, worker["address"], task_id, follow
                ):
                    yield chunk
            except NotFound:
                # Not accepted by the worker yet, or already reported and removed.
                task = await self.get_task(task_id)
                if task.result is None and task.status is TaskStatus.RUNNING:
                    if not follow:
                        return  # no output yet
                    await asyncio.sleep(0.25)
                    continue
                break
            if follow:  # the stream ended with the task: wait briefly for its result
                for _ in range(20):
                    if (await self.get_task(task_id)).result is not None:
                        break
                    await asyncio.sleep(0.25)
            return
        row = await self.store.tx(results.get, task_id)
        if row is not None and row["logs"]:
            yield row["logs"].encode()

    async def assignment_worker(self, task_id: str) -> str | None:
        return await self.store.tx(assignments.worker_of, task_id)
