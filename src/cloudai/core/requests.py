"""Two values that travel whole from the edge to the store: what a cancel asks for
(`CancelRequest`), and which tasks a listing means (`TaskFilter`). Pure: no I/O.

Each knows its own rules (`problems()`), kept once here: the RPC edge checks them before
anything is written, and the CLI before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.limits import (
    ACTOR_MAX,
    GRACE_MAX,
    OWNER_MAX,
    REASON_MAX,
    number_problem,
    quote,
    text_problem,
)
from cloudai.core.models import STOP_SIGNALS, validate_worker_id

__all__ = ["LIMIT_MAX", "CancelRequest", "TaskFilter"]

LIMIT_MAX = 1_000_000  # tasks in one listing


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Who cancels, why, and how the worker is to stop the task."""

    actor: str  # who asked (a user's name); the audit trail's actor
    reason: str = ""
    force: bool = False  # SIGKILL at once, no grace
    grace: float | None = None  # seconds between the stop signal and SIGKILL; None: the task's
    stop_signal: str = ""  # one of STOP_SIGNALS (normalised); "": the task's own

    def problems(self) -> list[str]:
        out = [
            text_problem("actor", self.actor, ACTOR_MAX, required=True),
            text_problem("reason", self.reason, REASON_MAX, multiline=True),
            None
            if self.grace is None
            else number_problem("grace", self.grace, 0.0, GRACE_MAX, " s"),
        ]
        if self.stop_signal and self.stop_signal not in STOP_SIGNALS:
            out.append(
                f"unknown stop signal {quote(self.stop_signal)}: use one of "
                + ", ".join(sorted(STOP_SIGNALS))
            )
        return [p for p in out if p]

    def signal_for(self, task_signal: str) -> str:
        """The signal sent first to a task whose own is `task_signal`."""
        return "SIGKILL" if self.force else (self.stop_signal or task_signal)

    def grace_for(self, task_grace: float) -> float:
        """The grace for a task whose own is `task_grace` (none when forced)."""
        if self.force:
            return 0.0
        return task_grace if self.grace is None else self.grace


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Which tasks a listing means; empty fields match everything."""

    status: str = ""  # a TaskStatus value
    worker_id: str = ""
    owner: str = ""
    cancelled_by: str = ""
    limit: int = 0  # 0: no limit
    newest: bool = False  # with limit: the newest `limit` (still listed oldest first)

    def problems(self) -> list[str]:
        out: list[str | None] = []
        if self.status and self.status not in TaskStatus.__members__.values():
            out.append(
                f"unknown status {quote(self.status)}: use one of "
                + ", ".join(s.value for s in TaskStatus)
            )
        out += [
            validate_worker_id(self.worker_id) if self.worker_id else None,
            text_problem("owner", self.owner, OWNER_MAX),
            text_problem("cancelled_by", self.cancelled_by, ACTOR_MAX),
            number_problem("limit", self.limit, 0, LIMIT_MAX),
        ]
        return [p for p in out if p]
