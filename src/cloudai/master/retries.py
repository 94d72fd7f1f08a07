"""Retries: a run that failed goes back to the queue while the task has retries left.

A retried run's end is never a terminal status of the task: the task moves running -> pending
(core/lifecycle.py), the run's outcome (worker, exit code, times, reason) is kept as an
attempt (store/attempts.py), and only the last run's outcome becomes the task's result. The
next run waits its backoff (core/policy.py), then is placed on any worker with room.

Which ends are retried: a non-zero exit, an OOM kill, a start that failed, a lost worker, and
a preemption. Never a cancel; a time limit only with `--retry-on timeout`."""

from __future__ import annotations

from sqlalchemy import Connection

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import Task, TaskResult
from cloudai.core.policy import DEADLINE_EXCEEDED, Attempt, backoff, failure_reason
from cloudai.store import assignments, attempts, cancellations, events, tasks

__all__ = ["after_report_tx", "requeue_unstarted_tx", "retries_left", "requeue_tx"]


def retries_left(task: Task) -> int:
    """Runs still allowed after the current one."""
    return max(task.spec.retries - (task.attempt - 1), 0)


def requeue_tx(
    conn: Connection, task: Task, ended: Attempt, now: float, *, stopped: bool = False
) -> bool:
    """Send a running task back to the queue, its current run kept as `ended`; True when
    done. False (nothing written) when it has no retries left, or is not running any more.
    `stopped`: the run ended by an order of the scheduler's, which decided the retry."""
    if task.status is not TaskStatus.RUNNING or (not stopped and retries_left(task) <= 0):
        return False
    wait = backoff(task.attempt)
    if not tasks.transition(
        conn,
        task.task_id,
        TaskStatus.PENDING,
        attempt=task.attempt + 1,
        not_before=now + wait,
        exit_code=None,
        reason="",
        oom_killed=False,
        started_at=None,
        completed_at=None,
        cpu_percent=None,
        mem_used_gb=None,
        usage_at=None,
    ):
        return False
    attempts.record(conn, task.task_id, ended)
    assignments.remove(conn, task.task_id)
    cancellations.forget(conn, task.task_id)
    code = "none" if ended.exit_code is None else str(ended.exit_code)
    left = retries_left(task) - (0 if stopped else 1)
    events.add(
        conn,
        task.task_id,
        "retry",
        "master",
        f"run {ended.number} on {ended.worker_id} ended {ended.status} (exit code {code}: "
        f"{ended.reason or 'no reason given'}); run {task.attempt + 1} queued, placed in "
        f"{wait:g}s at the earliest ({left} retr{'y' if left == 1 else 'ies'} left after it)",
        now,
    )
    return True


def after_report_tx(conn: Connection, task: Task, result: TaskResult, now: float) -> str:
    """A worker's report of a running task's run: when the run goes back to the queue, the
    answer for the worker ("" when the report is the task's end, stored as usual)."""
    stop = cancellations.get(conn, task.task_id)
    if stop is not None and result.status is not TaskStatus.COMPLETED:
        # The scheduler stopped it to run it again (a preemption, a time limit): whatever
        # the run's own exit, the stop decided.
        status, reason, stopped = TaskStatus.CANCELLED, stop.reason, True
        if stop.reason == DEADLINE_EXCEEDED:
            status = TaskStatus.FAILED
    elif result.status is TaskStatus.FAILED:
        status, stopped = TaskStatus.FAILED, False
        reason = failure_reason(result.error, result.oom_killed)
    else:
        return ""
    ended = Attempt(
        number=task.attempt,
        worker_id=result.worker_id,
        status=status.value,
        exit_code=result.exit_code,
        reason=reason,
        started_at=result.started_at or task.started_at,
        ended_at=result.completed_at or now,
        oom_killed=result.oom_killed,
        gpu_ids=task.gpu_ids,
    )
    if not requeue_tx(conn, task, ended, now, stopped=stopped):
        return ""
    return f"run {task.attempt} stored as an attempt; the task is queued again"


def requeue_unstarted_tx(conn: Connection, task_id: str, worker_id: str, now: float) -> int:
    """A scheduler's stop-to-requeue reached the run before it started on its worker (no
    report will come): the run goes back to the queue; returns its number (the one run the
    worker must never start). 0 when the task was not kept running for that (a cancel, a time
    limit: the caller stores its unrun result)."""
    task = tasks.get(conn, task_id)
    stop = cancellations.get(conn, task_id)
    if task is None or stop is None:
        return 0
    ended = Attempt(task.attempt, worker_id, "cancelled", None, stop.reason, None, now)
    return task.attempt if requeue_tx(conn, task, ended, now, stopped=True) else 0
