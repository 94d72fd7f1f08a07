"""GPU devices in the store, on SQLite and PostgreSQL: placement picks free device IDs in
the transaction that locks the worker, so no device ever goes to two active tasks."""

from __future__ import annotations

import threading

from cloudai.core.gpus import GpuDevice
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.core.stop import StopStage
from cloudai.master import planner
from cloudai.store import cancellations, holdings, tasks, workers
from cloudai.store.engine import Store

NOW = 1_000_000.0
INTERVAL = 5.0


def add_gpu_worker(store: Store, wid: str, gpu_ids: tuple[str, ...] | None) -> None:
    n = len(gpu_ids) if gpu_ids is not None else 2
    store.tx_sync(
        workers.register_self,
        wid,
        "127.0.0.1:50100",
        Resources(64.0, 64.0, gpu=n),
        "process",
        NOW,
        gpu_ids,
    )


def submit(store: Store, tid: str, gpus: int) -> None:
    spec = TaskSpec(image="busybox", resources=Resources(0.1, 0.1, gpu=gpus), owner="ann")
    store.tx_sync(planner.submit, tid, spec, NOW, INTERVAL)


def place(store: Store, tid: str, gpus: int, wid: str = "w1") -> bool:
    return bool(
        store.tx_sync(
            planner.commit_placement, tid, wid, Resources(0.1, 0.1, gpu=gpus), NOW, "test"
        )
    )


def devices(store: Store, tid: str) -> tuple[str, ...]:
    task = store.tx_sync(tasks.get, tid)
    assert task is not None
    return task.gpu_ids


def test_placement_picks_the_lowest_free_devices(store: Store) -> None:
    add_gpu_worker(store, "w1", ("0", "1", "2"))
    for tid, n in (("a", 1), ("b", 2), ("c", 1)):
        submit(store, tid, n)
    assert place(store, "a", 1) and devices(store, "a") == ("0",)
    assert place(store, "b", 2) and devices(store, "b") == ("1", "2")
    assert not place(store, "c", 1)  # none left
    store.tx_sync(tasks.transition, "a", TaskStatus.COMPLETED)
    assert place(store, "c", 1) and devices(store, "c") == ("0",)
    (w,) = store.tx_sync(planner.load_workers, NOW, INTERVAL)
    assert [(g.gpu_id, g.task_id) for g in w.gpus] == [("0", "c"), ("1", "b"), ("2", "b")]


def test_a_cancelled_task_holds_its_devices_until_its_container_exited(store: Store) -> None:
    add_gpu_worker(store, "w1", ("0",))
    submit(store, "a", 1)
    submit(store, "b", 1)
    assert place(store, "a", 1)
    store.tx_sync(tasks.transition, "a", TaskStatus.CANCELLED)
    store.tx_sync(cancellations.create, "a", "w1", "ann", "", False, 10.0, "SIGTERM", NOW)
    assert store.tx_sync(holdings.held_gpus_by_worker, "w1") == {"w1": {"0": "a"}}
    assert not place(store, "b", 1)  # its container still runs
    store.tx_sync(cancellations.advance, "a", StopStage.SIGNALLED, NOW + 1)
    assert not place(store, "b", 1)
    store.tx_sync(cancellations.advance, "a", StopStage.EXITED, NOW + 2)
    assert store.tx_sync(holdings.held_gpus_by_worker, "w1") == {}
    assert place(store, "b", 1) and devices(store, "b") == ("0",)


def test_busy_devices_are_not_handed_out(store: Store) -> None:
    add_gpu_worker(store, "w1", ("0", "1"))
    store.tx_sync(workers.touch, "w1", NOW, None, [GpuDevice("0", busy=True), GpuDevice("1")])
    submit(store, "a", 1)
    submit(store, "b", 1)
    assert place(store, "a", 1) and devices(store, "a") == ("1",)
    assert not place(store, "b", 1)
    (w,) = store.tx_sync(planner.load_workers, NOW, INTERVAL)
    assert w.gpus[0].busy and w.available.gpu == 0
    store.tx_sync(workers.touch, "w1", NOW, None, [GpuDevice("0"), GpuDevice("1")])
    assert place(store, "b", 1) and devices(store, "b") == ("0",)


def test_a_worker_without_device_ids_has_devices_by_index(store: Store) -> None:
    add_gpu_worker(store, "w1", None)  # an older worker: a count only
    submit(store, "a", 2)
    assert place(store, "a", 2) and devices(store, "a") == ("0", "1")


def test_concurrent_placements_never_share_a_device(store: Store) -> None:
    add_gpu_worker(store, "w1", ("0", "1", "2", "3"))
    ids = [f"t{i}" for i in range(12)]
    for tid in ids:
        submit(store, tid, 1)
    placed: list[str] = []
    barrier = threading.Barrier(len(ids))

    def go(tid: str) -> None:
        barrier.wait()
        if place(store, tid, 1):
            placed.append(tid)

    threads = [threading.Thread(target=go, args=(t,)) for t in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(placed) == 4
    assert sorted(d for tid in placed for d in devices(store, tid)) == ["0", "1", "2", "3"]
