"""The queue's rules without a server: durations and backoff (core/policy.py), the order and the
plan (scheduler/queue.py), the choice of tasks to preempt (scheduler/preemption.py), the
shell's spec-form options, and the worker's memory of stopped runs."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from rich.console import Console

from cloudai.cli import shell
from cloudai.cli.main import _split_run, build_parser
from cloudai.cli.queue_options import run_policy
from cloudai.cli.render import Renderer
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import Task, TaskSpec, Worker
from cloudai.core.policy import (
    BACKOFF_MAX,
    PRIORITY_DEFAULT,
    backoff,
    format_duration,
    parse_duration,
    policy_problems,
)
from cloudai.core.resources import Resources
from cloudai.errors import Conflict, InvalidArgument
from cloudai.scheduler.preemption import choose_victims
from cloudai.scheduler.queue import plan, queue_order, why_waiting
from tests.unit.test_cli_parse import FakeClient

ONE = Resources(cpu=1, mem_gb=0.5)


def task(
    task_id: str,
    owner: str = "alice",
    priority: int = PRIORITY_DEFAULT,
    created: float = 0.0,
    *,
    resources: Resources = ONE,
    preemptible: bool = False,
    worker_id: str | None = None,
    status: TaskStatus = TaskStatus.PENDING,
) -> Task:
    spec = TaskSpec(
        image="img", resources=resources, owner=owner, priority=priority, preemptible=preemptible
    )
    return Task(task_id, spec, status, worker_id=worker_id, created_at=created)


def worker(worker_id: str, cpu: float = 1, used: float = 0, gpu: int = 0) -> Worker:
    return Worker(
        worker_id=worker_id,
        address=f"{worker_id}:1",
        capacity=Resources(cpu=cpu, mem_gb=8, storage_gb=10, gpu=gpu),
        allocated=Resources(cpu=used, mem_gb=0.5 * used),
        state="healthy",
    )


# ---- core/policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("90", 90), ("1.5m", 90), ("2h", 7200), ("1h30m", 5400), ("1d", 86400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "-5s", "2x", "h", "1h 30m", "s30", "1e9h"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (2, 90, 3600, 5400, 86400 + 60):
        assert parse_duration(format_duration(seconds)) == seconds


def test_backoff_doubles_then_stops_growing() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff(100) == BACKOFF_MAX


def test_policy_bounds() -> None:
    assert policy_problems(None, 0, 0) == []
    assert policy_problems(3600, 100, 1000) == []
    problems = policy_problems(0, 101, 1001)
    assert len(problems) == 3 and "priority must be between 0 and 1000" in problems[2]


# ---- scheduler/queue ---------------------------------------------------------------------------


def test_priority_first_then_fewest_running_then_oldest() -> None:
    pending = [
        task("a1", "alice", created=1),
        task("a2", "alice", created=2),
        task("b1", "bob", created=3),
        task("b2", "bob", created=4),
        task("low", "carol", priority=100, created=0),
        task("high", "carol", priority=900, created=5),
    ]
    order = [t.task_id for t in queue_order(pending, {"alice": 1})]
    assert order == ["high", "b1", "a1", "b2", "a2", "low"]


def test_without_running_tasks_equals_take_turns_oldest_first() -> None:
    pending = [task("a1", "alice", created=1), task("a2", "alice", created=2)]
    pending.append(task("b1", "bob", created=3))
    assert [t.task_id for t in queue_order(pending, {})] == ["a1", "b1", "a2"]


def test_the_plan_gives_room_in_queue_order_and_says_why_the_rest_wait() -> None:
    ordered = [task("first"), task("second"), task("big", resources=Resources(cpu=4))]
    slots = plan(ordered, [worker("w1", cpu=1)], now=0.0)
    assert [(s.task.task_id, s.position, s.worker_id) for s in slots] == [
        ("first", 1, "w1"),
        ("second", 2, None),
        ("big", 3, None),
    ]
    assert slots[1].waiting_reason == "no worker with 1 free CPU core"
    assert slots[2].waiting_reason == "no worker with 4 free CPU cores"


def test_a_retry_in_its_backoff_waits_and_says_so() -> None:
    (slot,) = plan([task("r")], [worker("w1")], now=100.0, backing_off={"r": 104.0})
    assert slot.worker_id is None and slot.waiting_reason.startswith("retry backoff")


def test_a_worker_kept_for_a_preemptor_takes_no_lower_priority_task() -> None:
    slots = plan(
        [task("low", priority=100)], [worker("w1")], now=0.0, reserved={"w1": ("high", 900)}
    )
    assert slots[0].worker_id is None
    assert "higher-priority" in slots[0].waiting_reason
    (mine,) = plan(
        [task("high", priority=900)], [worker("w1")], 0.0, reserved={"w1": ("high", 900)}
    )
    assert mine.worker_id == "w1"


def test_why_waiting_names_the_gpus() -> None:
    t = task("g", resources=Resources(cpu=1, mem_gb=0.5, gpu=2))
    assert why_waiting(t, [worker("w1", cpu=4, gpu=1)]) == "no worker with 2 free GPUs"
    assert why_waiting(t, []) == "no healthy worker"


# ---- scheduler/preemption ----------------------------------------------------------------------


def running(task_id: str, priority: int, cpu: float = 1, preemptible: bool = True) -> Task:
    return task(
        task_id,
        priority=priority,
        resources=Resources(cpu=cpu, mem_gb=0.5),
        preemptible=preemptible,
        worker_id="w1",
        status=TaskStatus.RUNNING,
    )


def test_the_fewest_lower_priority_preemptible_tasks_are_chosen() -> None:
    w = worker("w1", cpu=3, used=3)
    on_w1 = [running("small-a", 100), running("small-b", 50), running("big", 200, cpu=2)]
    high = task("high", priority=900, resources=Resources(cpu=2, mem_gb=0.5))
    assert choose_victims(high, [w], {"w1": on_w1}) == ("w1", [on_w1[2]])
    one = task("one", priority=900)
    assert choose_victims(one, [w], {"w1": on_w1}) == ("w1", [on_w1[1]])  # lowest priority


def test_never_a_non_preemptible_or_an_equal_or_higher_priority_task() -> None:
    w = worker("w1", cpu=1, used=1)
    high = task("high", priority=900)
    assert choose_victims(high, [w], {"w1": [running("pinned", 100, preemptible=False)]}) is None
    assert choose_victims(high, [w], {"w1": [running("peer", 900)]}) is None


def test_no_preemption_where_room_is_freeing_up_already() -> None:
    w = Worker(
        worker_id="w1",
        address="w1:1",
        capacity=Resources(cpu=1, mem_gb=8, storage_gb=10),
        allocated=Resources(cpu=1, mem_gb=0.5),
        releasing=Resources(cpu=1, mem_gb=0.5),
        state="healthy",
    )
    assert choose_victims(task("high", priority=900), [w], {"w1": [running("v", 1)]}) is None


# ---- the shell's spec form and `task run` --------------------------------------------------


def _no_dispatch(tokens: list[str]) -> int:
    raise AssertionError(f"should not reach the CLI dispatcher: {tokens}")


def test_shell_spec_form_takes_the_policy_options() -> None:
    client, out = FakeClient(), Renderer("text", Console(file=io.StringIO()))
    line = "task auto img train -gpu 1 -timeout 1h30m -retries 2 -retry_on timeout"
    line += " -priority 900 -preemptible"
    assert shell.execute(line, client, out, _no_dispatch) == 0  # type: ignore[arg-type]
    (spec,) = client.submitted
    assert spec.command == ("train",)
    assert (spec.timeout_seconds, spec.retries, spec.retry_on_timeout) == (5400, 2, True)
    assert (spec.priority, spec.preemptible) == (900, True)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("task auto img -timeout soon", "-timeout: invalid duration"),
        ("task auto img -priority 2000", "priority must be between 0 and 1000"),
        ("task auto img -retries 1.5", "-retries must be a whole number"),
        ("task auto img -retry_on crash", "-retry_on must be failure or timeout"),
        ("task auto img -priorty 5", "did you mean -priority"),
    ],
)
def test_shell_spec_form_refuses_bad_policy_values(line: str, message: str) -> None:
    client, out = FakeClient(), Renderer("text", Console(file=io.StringIO()))
    with pytest.raises(InvalidArgument, match=message):
        shell.execute(line, client, out, _no_dispatch)  # type: ignore[arg-type]
    assert client.submitted == []


def test_task_run_parses_the_policy_options() -> None:
    args: Any = build_parser().parse_args(
        _split_run(
            ["task", "run", "img", "sh", "--timeout", "90s", "--retries", "3", "--priority"]
            + ["0", "--preemptible", "--retry-on", "timeout"]
        )
    )
    assert args.cmd == ["sh"]
    p = run_policy(args)
    assert (p.timeout_seconds, p.retries, p.priority, p.preemptible, p.retry_on_timeout) == (
        90,
        3,
        0,
        True,
        True,
    )
    default = run_policy(build_parser().parse_args(_split_run(["task", "run", "img"])))
    assert (default.timeout_seconds, default.retries, default.priority) == (None, 0, 500)


# ---- the worker remembers which run it stopped ------------------------------------------------


class _IdleRuntime:
    """Never gets past `prepare`: enough for the supervisor's bookkeeping."""

    async def prepare(self, task_id: str, spec: TaskSpec) -> None:
        await asyncio.Event().wait()


class _QuietLink:
    """A master link that takes the worker's stop updates and sends nothing."""

    def update(self, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_a_stopped_run_never_starts_but_a_later_retry_may() -> None:
    from cloudai.worker.orders import CancelOrder
    from cloudai.worker.supervisor import Supervisor

    async def scenario() -> None:
        sup = Supervisor(_IdleRuntime(), link=_QuietLink(), worker_id="w1")  # type: ignore[arg-type]
        img = TaskSpec(image="img")
        # An order for a run this worker does not hold (yet): that run is refused...
        sup.stop_orders([("task-1-aa", CancelOrder(attempt=1))])
        with pytest.raises(Conflict, match="was cancelled"):
            sup.assign("task-1-aa", img, attempt=1)
        # ...the next run of the same task, decided after the stop, is not.
        assert "accepted" in sup.assign("task-1-aa", img, attempt=2)
        # While run 2 is still on this worker, run 3 waits for it to be cleaned up.
        with pytest.raises(Conflict, match="still being removed"):
            sup.assign("task-1-aa", img, attempt=3)
        assert "already on" in sup.assign("task-1-aa", img, attempt=2)
        # A late order for run 1 (built before the master requeued it) leaves run 2 alone.
        assert "run 1 is not here" in sup.cancel("task-1-aa", CancelOrder(attempt=1))
        assert sup._tasks["task-1-aa"].cancel is None
        # An order naming no run (an older master) stops every run.
        sup.stop_orders([("task-2-bb", CancelOrder())])
        with pytest.raises(Conflict):
            sup.assign("task-2-bb", img, attempt=5)
        await sup.close()

    asyncio.run(scenario())
