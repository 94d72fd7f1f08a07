"""Protobuf <-> core.models for a task's cancellation (what was decided, how far the stop
has got); used by rpc/convert.py."""

from __future__ import annotations

from typing import Any

from cloudai.api.v1 import types_pb2 as pb
from cloudai.core.models import Cancellation

__all__ = ["cancellation_from_pb", "cancellation_to_pb"]

_CANCEL_TIMES = (
    "requested_at",
    "delivered_at",
    "signal_at",
    "killed_at",
    "exited_at",
    "removed_at",
)


def cancellation_to_pb(c: Cancellation) -> pb.Cancellation:
    # Any: mypy checks a ** argument against every keyword, exit_code (an int) included.
    times: dict[str, Any] = {name: getattr(c, name) or 0.0 for name in _CANCEL_TIMES}
    m = pb.Cancellation(
        requested_by=c.requested_by,
        reason=c.reason,
        force=c.force,
        grace_seconds=c.grace_seconds,
        stop_signal=c.stop_signal,
        delivery_attempts=c.delivery_attempts,
        last_error=c.last_error,
        forced=c.forced,
        stop_error=c.stop_error,
        state=c.state,
        **times,
    )
    if c.exit_code is not None:
        m.exit_code = c.exit_code
    return m


def cancellation_from_pb(task_id: str, worker_id: str, m: pb.Cancellation) -> Cancellation:
    return Cancellation(
        task_id=task_id,
        worker_id=None if m.state == "not_started" else worker_id or None,
        requested_by=m.requested_by,
        reason=m.reason,
        force=m.force,
        grace_seconds=m.grace_seconds,
        stop_signal=m.stop_signal,
        delivery_attempts=m.delivery_attempts,
        last_error=m.last_error,
        exit_code=m.exit_code if m.HasField("exit_code") else None,
        forced=m.forced,
        stop_error=m.stop_error,
        **{name: getattr(m, name) or None for name in _CANCEL_TIMES},  # type: ignore[arg-type]
    )
