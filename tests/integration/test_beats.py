"""Heartbeats answered from memory (master/beats.py), on a real store (SQLite, then PostgreSQL):
a heartbeat that says nothing new is written in the next batch, not at once, and yet every
answer the full pass would give still comes — a stop decided meanwhile, a task the worker
never lists, a worker that went silent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from cloudai.core.lease import Lease
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskSpec
from cloudai.core.requests import CancelRequest
from cloudai.core.resources import Resources
from cloudai.master import planner
from cloudai.master.cluster import Cluster, MasterConfig
from cloudai.store import assignments, tasks, workers
from cloudai.store.engine import Store

INTERVAL = 0.2
ADDRESS = "127.0.0.1:9"  # nothing answers: a nudge fails fast, the heartbeat carries the order


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def _cluster(store: Store, lost_after: float = 300.0, interval: float = INTERVAL) -> Cluster:
    config = MasterConfig(heartbeat_interval=interval, worker_lost_after=lost_after)
    return Cluster(store, config)


def _db_beat(store: Store, worker_id: str = "w1") -> float:
    row = store.tx_sync(workers.get, worker_id)
    assert row is not None
    return float(row["last_heartbeat"])


def _place(store: Store, task_id: str, delivered: bool = True) -> None:
    spec = TaskSpec(image="busybox", command=("sleep", "300"), worker_id="w1", owner="alice")
    store.tx_sync(planner.submit, task_id, spec, time.time(), INTERVAL)
    if delivered:
        store.tx_sync(assignments.mark_delivered, task_id, time.time())


def _status(store: Store, task_id: str) -> TaskStatus:
    task = store.tx_sync(tasks.get, task_id)
    assert task is not None
    return task.status


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_a_heartbeat_that_says_nothing_new_is_written_in_the_next_batch(store: Store) -> None:
    async def go() -> None:
        c = _cluster(store)
        await c.register_worker("w1", ADDRESS, Resources(2, 4), "docker")
        assert await c.heartbeat("w1", [], [], {"cpu_percent": 10.0}) == (True, [])
        first = _db_beat(store)
        await asyncio.sleep(0.01)
        assert await c.heartbeat("w1", [], [], {"cpu_percent": 55.0}) == (True, [])
        assert _db_beat(store) == first  # answered from memory: not written yet
        shown = await c.get_worker("w1")  # the view has it all the same
        assert shown.last_heartbeat is not None and shown.last_heartbeat > first
        assert shown.cpu_percent == 55.0
        await c.write_beats()  # the dispatch round's one batch
        assert _db_beat(store) == shown.last_heartbeat
        row = store.tx_sync(workers.get, "w1")
        assert row is not None and row["cpu_percent"] == 55.0

    run(go())


def test_a_stop_decided_between_two_same_heartbeats_is_ordered_at_the_next(store: Store) -> None:
    async def go() -> None:
        c = _cluster(store)
        await c.register_worker("w1", ADDRESS, Resources(2, 4), "docker")
        _place(store, "task-1")
        for _ in range(3):  # the first is the full pass; the next from memory
            assert await c.heartbeat("w1", ["task-1"], []) == (True, [])
        first = _db_beat(store)
        await c.canceller.cancel("task-1", CancelRequest("admin"))
        known, orders = await c.heartbeat("w1", ["task-1"], [])
        assert known and [o.task_id for o in orders] == ["task-1"]
        assert _db_beat(store) > first  # the full pass wrote at once
        known, orders = await c.heartbeat("w1", [], ["task-1"])  # until it says removed
        assert [o.task_id for o in orders] == ["task-1"]
        await c.canceller.close()
        await c.peers.close()

    run(go())


def test_a_delivered_task_never_listed_is_lost_though_the_heartbeats_never_change(
    store: Store,
) -> None:
    async def go() -> None:
        c = _cluster(store)
        await c.register_worker("w1", ADDRESS, Resources(2, 4), "docker")
        assert await c.heartbeat("w1", [], []) == (True, [])
        _place(store, "task-1")
        c.dispatcher.on_delivered("w1")  # what the dispatcher calls after a delivery
        deadline = time.monotonic() + 30
        while _status(store, "task-1") is TaskStatus.RUNNING:
            assert time.monotonic() < deadline, "the task was never judged lost"
            assert (await c.heartbeat("w1", [], []))[0]
            await asyncio.sleep(INTERVAL / 2)
        task = store.tx_sync(tasks.get, "task-1")
        assert task is not None and task.status is TaskStatus.FAILED
        assert task.reason.startswith("lost on worker w1")

    run(go())


def test_a_worker_heard_only_in_memory_is_not_lost_and_a_silent_one_is(store: Store) -> None:
    async def go() -> None:
        lost_after = 1.0
        c = _cluster(store, lost_after, interval=1.0)  # beats every 0.1 s: all from memory
        c.lease = Lease(lost_after, master_started=time.time() - 100)
        await c.register_worker("w1", ADDRESS, Resources(2, 4), "docker")
        _place(store, "task-1")
        assert await c.heartbeat("w1", ["task-1"], []) == (True, [])
        written = _db_beat(store)
        while time.time() < written + 2 * lost_after:  # heard, never written
            assert await c.heartbeat("w1", ["task-1"], []) == (True, [])
            await asyncio.sleep(INTERVAL / 2)
        assert _db_beat(store) == written
        await c._reap_lost_workers()
        assert _status(store, "task-1") is TaskStatus.RUNNING
        await asyncio.sleep(lost_after + 0.2)  # now silent
        await c._reap_lost_workers()
        assert _status(store, "task-1") is TaskStatus.FAILED
        known, orders = await c.heartbeat("w1", ["task-1"], [])  # back: told to stop it
        assert known and [o.task_id for o in orders] == ["task-1"]

    run(go())


def test_a_removed_worker_is_not_answered_from_memory(store: Store) -> None:
    async def go() -> None:
        c = _cluster(store)
        await c.register_worker("w1", ADDRESS, Resources(2, 4), "docker")
        assert await c.heartbeat("w1", [], []) == (True, [])
        assert await c.heartbeat("w1", [], []) == (True, [])
        await c.remove_worker("w1")
        assert await c.heartbeat("w1", [], []) == (False, [])  # it registers again

    run(go())


def test_a_quiet_registration_counts_as_the_full_pass_a_noisy_one_does_not(store: Store) -> None:
    """5,000 workers registering must not mean 5,000 full passes in the next interval: a
    registration is a full pass of its own (written, reconciled, its orders). When it was quiet
    the first heartbeat that says the same is answered from memory; when it sent an order,
    the heartbeats repeat it until the worker says `removed`."""

    async def go() -> None:
        c = _cluster(store)
        await c.register_worker("w1", ADDRESS, Resources(2, 4), "docker")
        registered = _db_beat(store)
        assert await c.heartbeat("w1", [], []) == (True, [])
        assert _db_beat(store) == registered  # from memory: written in the next batch
        _place(store, "task-1")
        await c.canceller.cancel("task-1", CancelRequest("admin"))
        orders = await c.register_worker("w1", ADDRESS, Resources(2, 4), "docker", ["task-1"])
        assert [o.task_id for o in orders] == ["task-1"]
        known, orders = await c.heartbeat("w1", ["task-1"], [])
        assert known and [o.task_id for o in orders] == ["task-1"]  # not answered from memory
        await c.canceller.close()
        await c.peers.close()

    run(go())
