"""How the CLI shows a task's queue policy, its earlier runs and the queue itself (beside
cli/render.py, which calls these)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.table import Table
from rich.text import Text

from cloudai.core.models import Task
from cloudai.core.policy import PRIORITY_DEFAULT, Attempt, failure_reason, format_duration

__all__ = ["attempts_table", "is_queue", "policy_rows", "queue_json", "queue_table"]


def _iso(ts: float | None) -> str | None:
    """As cli/render.py's `iso`: UTC, to the millisecond."""
    if not ts:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def attempt_json(a: Attempt) -> dict[str, Any]:
    return {
        "attempt": a.number,
        "worker_id": a.worker_id,
        "status": a.status,
        "exit_code": a.exit_code,
        "reason": a.reason,
        "oom_killed": a.oom_killed,
        "gpus": list(a.gpu_ids),
        "started_at": _iso(a.started_at),
        "ended_at": _iso(a.ended_at),
    }


def _end_reason(t: Task) -> str:
    """Why the current run ended, worded as an earlier run's attempt record words it."""
    if t.status.value == "failed" and t.exit_code is not None:
        return failure_reason(t.reason, t.oom_killed)
    return t.reason


def _current(t: Task) -> dict[str, Any]:
    """The current run, as an attempt: where it runs or ran, and how it ended if it has."""
    ended = t.status.value in ("completed", "failed", "cancelled")
    return {
        "attempt": t.attempt,
        "worker_id": t.worker_id,
        "status": t.status.value,
        "exit_code": t.exit_code,
        "reason": _end_reason(t) if ended else "",
        "oom_killed": t.oom_killed,
        "gpus": list(t.gpu_ids),
        "started_at": _iso(t.started_at),
        "ended_at": _iso(t.completed_at) if ended else None,
    }


def queue_json(t: Task) -> dict[str, Any]:
    """A task's policy, its runs (`attempts`: the earlier ones, then the current one once it
    was placed) and, pending in a queue listing, its `position` and `waiting_reason`."""
    runs = [attempt_json(a) for a in t.attempts]
    if t.worker_id or t.attempts:
        runs.append(_current(t))
    return {
        "priority": t.spec.priority,
        "preemptible": t.spec.preemptible,
        "timeout_seconds": t.spec.timeout_seconds,
        "retries": t.spec.retries,
        "retry_on": ["failure", "timeout"] if t.spec.retry_on_timeout else ["failure"],
        "attempt": t.attempt,
        "attempts": runs,
        "position": t.position or None,
        "waiting_reason": t.waiting_reason or None,
    }


def policy_rows(t: Task) -> list[tuple[str, str]]:
    rows = []
    if t.spec.priority != PRIORITY_DEFAULT or t.spec.preemptible:
        rows.append(
            ("Priority", f"{t.spec.priority}" + (", preemptible" if t.spec.preemptible else ""))
        )
    if t.spec.timeout_seconds is not None:
        rows.append(("Time limit", format_duration(t.spec.timeout_seconds)))
    if t.spec.retries:
        on = " (also after a timeout)" if t.spec.retry_on_timeout else ""
        rows.append(("Retries", f"{t.spec.retries}{on}; this is run {t.attempt}"))
    return rows


def attempts_table(t: Task) -> Table:
    table = Table(title="Attempts", show_edge=False, header_style="bold")
    for col in ("#", "Worker", "Status", "Exit", "Started", "Ended", "Reason"):
        table.add_column(col)
    for a in [attempt_json(a) for a in t.attempts] + [_current(t)]:
        table.add_row(
            str(a["attempt"]),
            a["worker_id"] or "-",
            a["status"],
            "-" if a["exit_code"] is None else str(a["exit_code"]),
            a["started_at"] or "-",
            a["ended_at"] or "-",
            a["reason"] or "-",
        )
    return table


def is_queue(tasks: list[Task]) -> bool:
    return bool(tasks) and all(t.status.value == "pending" and t.position for t in tasks)


def queue_table(tasks: list[Task]) -> Table:
    table = Table(title="Queue (placed in this order)", header_style="bold")
    for col in ("POS", "TASK ID", "OWNER", "PRIORITY", "REQUEST", "RUN", "WAITING BECAUSE"):
        table.add_column(col, no_wrap=col == "TASK ID")
    for t in tasks:
        table.add_row(
            str(t.position),
            t.task_id,
            t.spec.owner or "-",
            str(t.spec.priority) + (" (p)" if t.spec.preemptible else ""),
            str(t.spec.resources),
            str(t.attempt),
            Text(t.waiting_reason or "-"),
        )
    return table
