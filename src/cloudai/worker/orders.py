"""Stop orders as the worker receives them: by CancelTask, or in a heartbeat or registration
reply. Validated here, at the edge, whichever way they came."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from cloudai.api.v1 import types_pb2
from cloudai.core.models import STOP_SIGNALS
from cloudai.errors import InvalidArgument

__all__ = ["CancelOrder", "order_from_pb"]


@dataclass
class CancelOrder:
    signal: str = ""  # empty: the task's own
    grace: float | None = None  # None: the task's own
    force: bool = False
    reason: str = ""
    requested_by: str = ""
    received_at: float = field(default_factory=time.time)


def order_from_pb(m: types_pb2.CancelTaskRequest) -> tuple[str, CancelOrder]:
    if not m.task_id:
        raise InvalidArgument("task_id is required")
    if m.stop_signal and m.stop_signal not in STOP_SIGNALS:
        raise InvalidArgument(f"unknown stop signal {m.stop_signal!r}")
    grace = m.grace_seconds if m.HasField("grace_seconds") else None
    if grace is not None and not (math.isfinite(grace) and 0 <= grace <= 3600):
        raise InvalidArgument(f"grace must be between 0 and 3600 seconds, got {grace!r}")
    order = CancelOrder(
        signal=m.stop_signal,
        grace=grace,
        force=m.force,
        reason=m.reason[:1000],
        requested_by=m.requested_by[:128],
    )
    return m.task_id, order
