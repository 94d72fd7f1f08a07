"""Stop orders as the worker receives them: by CancelTask, or in a heartbeat or registration
reply. Validated here, at the edge, whichever way they came."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cloudai.api.v1 import types_pb2
from cloudai.core.limits import (
    ACTOR_MAX,
    GRACE_MAX,
    REASON_MAX,
    bounded_text,
    number_problem,
    quote,
)
from cloudai.core.models import DEFAULT_GRACE_SECONDS, STOP_SIGNALS, TaskSpec, validate_task_id
from cloudai.errors import InvalidArgument, check

__all__ = ["CancelOrder", "order_from_pb"]


@dataclass
class CancelOrder:
    signal: str = ""  # empty: the task's own
    grace: float | None = None  # None: the task's own
    force: bool = False
    reason: str = ""
    requested_by: str = ""
    received_at: float = field(default_factory=time.time)
    attempt: int = 0  # the run it stops (a retry reuses the task ID); 0: every run

    def signal_for(self, spec: TaskSpec | None) -> str:
        """The signal it sends to a task of `spec` (None: re-adopted, its spec unknown)."""
        if self.force:
            return "SIGKILL"
        return self.signal or (spec.signal if spec else "SIGTERM")

    def grace_for(self, spec: TaskSpec | None) -> float:
        if self.grace is not None:
            return self.grace
        return spec.grace if spec else DEFAULT_GRACE_SECONDS


def order_from_pb(m: types_pb2.CancelTaskRequest) -> tuple[str, CancelOrder]:
    check(validate_task_id(m.task_id))
    if m.stop_signal and m.stop_signal not in STOP_SIGNALS:
        raise InvalidArgument(f"unknown stop signal {quote(m.stop_signal)}")
    grace = m.grace_seconds if m.HasField("grace_seconds") else None
    if grace is not None and number_problem("grace", grace, 0.0, GRACE_MAX) is not None:
        raise InvalidArgument(f"grace must be between 0 and {GRACE_MAX:g} seconds, got {grace:g}")
    order = CancelOrder(
        signal=m.stop_signal,
        grace=grace,
        force=m.force,
        reason=bounded_text(m.reason, REASON_MAX),
        requested_by=bounded_text(m.requested_by, ACTOR_MAX),
        attempt=max(m.attempt, 0),
    )
    return m.task_id, order
