"""Fail-points: a test hook that kills this process at a named step (docs/reliability.md).

`CLOUDAI_FAILPOINTS=name[,name...]` in a process's environment arms those points; it is read
once, when this module is first imported. A process that reaches an armed point kills itself
with SIGKILL, as an operator's `kill -9` at that exact moment would: no cleanup, no flush, no
reply to a call in flight. The fault tests use it to kill the master (or a worker) between two
steps that no signal from outside could land between reliably (tests/e2e/test_faults_injected.py).

Unarmed (the default: nothing in production sets the variable) a point costs one check of an
empty set. Each point is named in `POINTS`, where it is placed and what has happened by then;
a name that is not there is refused when the process starts (`check_armed`)."""

from __future__ import annotations

import logging
import os
import signal

__all__ = ["ENV", "POINTS", "armed", "check_armed", "failpoint"]

log = logging.getLogger("cloudai.failpoints")
ENV = "CLOUDAI_FAILPOINTS"

POINTS: dict[str, str] = {
    "cancel.after_status_write": "the master: a cancel's decision is committed (status "
    "'cancelled', the cancellation row); no stop order sent yet",
    "cancel.before_worker_call": "the master: the stop order is about to be sent to the worker",
    "cancel.after_worker_ack": "the master: the worker acknowledged the stop order (its "
    "`delivered` stop update records it)",
    "report.before_result_write": "the master: a worker's result (a report, or the stop update "
    "of a cancelled task's exit) has arrived and been checked; nothing of it is stored yet",
    "worker.after_spool": "a worker: a task run's end (its result, logs included) is written "
    "to its spool; its container is not removed yet, the master not told",
    "worker.after_remove": "a worker: a task run's end is spooled and its container removed; "
    "for a stop, the master not told yet (its `exited` and `removed` updates have not left); "
    "for a run that ended by itself, its report may be on its way",
}

_ARMED: frozenset[str] = frozenset(
    name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip()
)


def armed() -> frozenset[str]:
    return _ARMED


def check_armed() -> str | None:
    """At start: a problem with the armed points (an unknown name), else None. Armed points
    are logged, loudly: this process will kill itself when it reaches them."""
    if unknown := sorted(_ARMED - POINTS.keys()):
        return f"{ENV}: unknown fail-point(s) {', '.join(unknown)}; known: {', '.join(POINTS)}"
    if _ARMED:
        log.warning(
            "⚠ fail-points armed (%s, a test hook): this process kills itself at %s",
            ENV,
            ", ".join(sorted(_ARMED)),
        )
    return None


def failpoint(name: str) -> None:
    """Kill this process (SIGKILL) here if `name` is armed; otherwise nothing."""
    if _ARMED and name in _ARMED:
        log.critical("fail-point %s reached: SIGKILL", name)
        os.kill(os.getpid(), signal.SIGKILL)
