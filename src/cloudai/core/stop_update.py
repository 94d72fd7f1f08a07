"""The one message a worker sends about a stop: task, stage, time, and (with the exit) the
task's result. Pure: no I/O.

It is idempotent by construction: the master records each stage at most once, and never a
stage the stop has already passed (core/stop.py's table), so a repeated or late update
changes nothing (master/stop_updates.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cloudai.core.limits import DETAIL_MAX, TIME_MAX, bounded_text, number_problem, quote
from cloudai.core.models import TaskResult, validate_task_id, validate_worker_id
from cloudai.core.stop import StopStage

__all__ = ["WORKER_STAGES", "StopUpdate", "parse_stage"]

# The stages a worker reports; `requested` is the master's own (the decision).
WORKER_STAGES = frozenset(StopStage) - {StopStage.REQUESTED}
# The stages an update may carry the task's result with: the exit, or the end of a task
# that never started (nothing to remove).
_WITH_RESULT = frozenset({StopStage.EXITED, StopStage.REMOVED})


def parse_stage(value: str) -> StopStage:
    """A stage a worker may report; ValueError names the accepted ones."""
    try:
        stage = StopStage(value)
    except ValueError:
        stage = None
    if stage is None or stage not in WORKER_STAGES:
        names = ", ".join(s.value for s in StopStage if s in WORKER_STAGES)
        raise ValueError(f"unknown stop stage {quote(value)}: use one of {names}")
    return stage


@dataclass(frozen=True, slots=True)
class StopUpdate:
    task_id: str
    worker_id: str
    stage: StopStage
    at: float
    detail: str = ""
    result: TaskResult | None = None

    def problems(self) -> list[str]:
        """Reasons the master cannot apply this update (empty when it can)."""
        out = [p for p in (validate_task_id(self.task_id), validate_worker_id(self.worker_id)) if p]
        if self.stage not in WORKER_STAGES:
            out.append(f"a worker does not report the stage {self.stage.value}")
        if (p := number_problem("at", self.at, 0.0, TIME_MAX)) is not None:
            out.append(p)
        r = self.result
        if r is not None:
            if self.stage not in _WITH_RESULT:
                out.append(f"a result comes with exited or removed, not {self.stage.value}")
            if (r.task_id, r.worker_id) != (self.task_id, self.worker_id):
                out.append("the result is of another task or worker than the update")
            out.extend(r.problems())
        return out

    def bounded(self) -> StopUpdate:
        """As the master stores it: the detail cut, the result's logs and error too."""
        return dataclasses.replace(
            self,
            detail=bounded_text(self.detail, DETAIL_MAX),
            result=self.result.bounded() if self.result is not None else None,
        )
