"""The values that travel whole from the edge to the store: CancelRequest, TaskFilter, and
the worker's StopUpdate. Each knows its own rules."""

from __future__ import annotations

import math
from typing import Any

import pytest

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskResult
from cloudai.core.requests import CancelRequest, TaskFilter
from cloudai.core.stop import StopStage
from cloudai.core.stop_update import StopUpdate, parse_stage


def test_a_plain_cancel_request_is_valid() -> None:
    assert CancelRequest("alice").problems() == []
    assert CancelRequest("alice", "why", True, 0.0, "SIGINT").problems() == []


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"actor": ""}, "actor is required"),
        ({"reason": "r" * 5000}, "reason is longer than"),
        ({"reason": "a\x00b"}, "reason must not contain control characters"),
        ({"grace": -1.0}, "grace must be a non-negative number"),
        ({"grace": 3601.0}, "grace must be at most 3600 s"),
        ({"grace": math.nan}, "grace must be a finite number"),
        ({"stop_signal": "TERM"}, "unknown stop signal"),  # not normalised: the edge's job
    ],
)
def test_a_cancel_request_names_what_is_wrong(kw: dict[str, Any], fragment: str) -> None:
    req = CancelRequest(**{"actor": "alice", **kw})
    assert any(fragment in p for p in req.problems()), req.problems()


def test_a_cancel_request_resolves_the_signal_and_grace_per_task() -> None:
    assert CancelRequest("a").signal_for("SIGINT") == "SIGINT"
    assert CancelRequest("a", stop_signal="SIGHUP").signal_for("SIGINT") == "SIGHUP"
    assert CancelRequest("a", force=True, stop_signal="SIGHUP").signal_for("SIGINT") == "SIGKILL"
    assert CancelRequest("a").grace_for(7.0) == 7.0
    assert CancelRequest("a", grace=0.0).grace_for(7.0) == 0.0  # 0 means 0
    assert CancelRequest("a", force=True, grace=5.0).grace_for(7.0) == 0.0


def test_an_empty_filter_is_valid() -> None:
    assert TaskFilter().problems() == []
    assert TaskFilter("running", "w1", "bob", "alice", 50, True).problems() == []


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"status": "sleeping"}, "unknown status 'sleeping'"),
        ({"worker_id": "-bad id"}, "worker"),
        ({"owner": "o" * 100}, "owner is longer than"),
        ({"cancelled_by": "x\ny"}, "cancelled_by must not contain control characters"),
        ({"limit": -1}, "limit must be a non-negative number"),
    ],
)
def test_a_filter_names_what_is_wrong(kw: dict[str, Any], fragment: str) -> None:
    problems = TaskFilter(**kw).problems()
    assert any(fragment in p for p in problems), problems


def test_a_worker_reports_only_its_own_stages() -> None:
    assert parse_stage("signalled") is StopStage.SIGNALLED
    for bad in ("requested", "signal_sent", ""):
        with pytest.raises(ValueError, match="use one of delivered"):
            parse_stage(bad)


def _result(**kw: Any) -> TaskResult:
    return TaskResult(**{"task_id": "t1", "worker_id": "w1", "status": TaskStatus.CANCELLED, **kw})


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"task_id": "/etc"}, "invalid task id"),
        ({"at": math.nan}, "at must be a finite number"),
        ({"at": 1e300}, "at must be at most"),
        ({"stage": StopStage.REQUESTED}, "does not report the stage requested"),
        ({"stage": StopStage.SIGNALLED, "result": _result()}, "comes with exited or removed"),
        ({"result": _result(task_id="t2")}, "another task or worker"),
        ({"result": _result(completed_at=-1.0)}, "completed_at must be a non-negative"),
    ],
)
def test_a_stop_update_names_what_is_wrong(kw: dict[str, Any], fragment: str) -> None:
    base: dict[str, Any] = {
        "task_id": "t1",
        "worker_id": "w1",
        "stage": StopStage.EXITED,
        "at": 1.0,
    }
    problems = StopUpdate(**{**base, **kw}).problems()
    assert any(fragment in p for p in problems), problems
    assert StopUpdate(**base).problems() == []
