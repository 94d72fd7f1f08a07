"""The loop supervisor: a failed loop is logged, counted and restarted with backoff; one that
keeps failing, or cannot be retried, is given up and its process told to stop."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry, Counter

from cloudai.errors import LoopFailed
from cloudai.loops import Loops, RestartPolicy
from tests.helpers import aeventually

FAST = RestartPolicy(first_backoff=0.001, max_backoff=0.01, give_up_after=3, healthy_run=60)


def counter() -> Counter:
    return Counter("loop_failures", "test", ["loop"], registry=CollectorRegistry())


def failures(c: Counter, loop: str) -> float:
    return c.labels(loop)._value.get()


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(first_backoff=1, max_backoff=30)
    assert [policy.backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


async def test_a_failed_loop_is_logged_counted_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []
    back = asyncio.Event()

    async def body() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("injected")
        back.set()
        await asyncio.Event().wait()

    c = counter()
    loops = Loops("worker w1", c, FAST)
    caplog.set_level(logging.INFO, "cloudai.loops")
    loops.start("heartbeat-loop", body)
    await asyncio.wait_for(back.wait(), 10)
    await loops.stop()
    assert failures(c, "heartbeat-loop") == 1 and loops.failure is None
    (failed,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "heartbeat-loop failed (1 in a row): RuntimeError: injected" in failed.getMessage()
    assert failed.exc_info is not None  # the traceback is in the log
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("heartbeat-loop started") == 2
    assert messages[-1] == "heartbeat-loop stopped"


async def test_a_loop_that_keeps_failing_is_given_up_and_stops_its_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body() -> None:
        raise OSError("disk gone")

    told: list[LoopFailed] = []
    c = counter()
    loops = Loops("worker w1", c, FAST)
    loops.when_failed(told.append)
    loops.start("telemetry-loop", body)
    await aeventually(lambda: _true(told), what="the process to be told to stop")
    assert failures(c, "telemetry-loop") == FAST.give_up_after
    assert told == [loops.failure]
    assert told[0].exit_code != 0
    assert told[0].message == (
        "telemetry-loop failed 3 time(s) in a row (last: OSError: disk gone); failed too often: "
        "the worker w1 stops"
    )
    (critical,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert told[0].message in critical.getMessage()
    late: list[LoopFailed] = []
    loops.when_failed(late.append)  # registered after the fact: called at once
    assert late == told
    await loops.stop()


async def test_an_error_no_restart_can_mend_gives_up_at_once() -> None:
    async def body() -> None:
        raise MemoryError

    loops = Loops("master", policy=FAST)
    loops.start("dispatch-loop", body)
    await aeventually(lambda: _true(loops.failure), what="the loop given up")
    assert loops.failure is not None and "1 time(s)" in loops.failure.message
    assert "cannot be retried" in loops.failure.message


async def test_a_loop_that_returns_has_failed() -> None:
    async def body() -> None:
        return None

    loops = Loops("master", policy=FAST)
    loops.start("dispatch-loop", body)
    await aeventually(lambda: _true(loops.failure), what="the loop given up")
    assert loops.failure is not None and "the loop returned" in loops.failure.message


async def test_failures_apart_by_healthy_runs_are_not_in_a_row() -> None:
    runs: list[int] = []
    done = asyncio.Event()

    async def body() -> None:
        runs.append(1)
        if len(runs) <= 5:
            raise RuntimeError(f"failure {len(runs)}")
        done.set()
        await asyncio.Event().wait()

    every_run_healthy = RestartPolicy(first_backoff=0.001, give_up_after=2, healthy_run=0)
    loops = Loops("master", policy=every_run_healthy)
    loops.start("dispatch-loop", body)
    await asyncio.wait_for(done.wait(), 10)
    assert loops.failure is None
    await loops.stop()


async def _true(value: object) -> bool:
    return bool(value)
