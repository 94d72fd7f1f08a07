"""Supervised loops in real servers (in-process, SQLite, real gRPC): a loop that fails is
restarted and does its work again."""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import LocalCluster
from tests.helpers import eventually


@pytest.fixture
def cluster(sqlite_url: str, tmp_path: pathlib.Path) -> Iterator[LocalCluster]:
    c = LocalCluster(sqlite_url, tmp_path)
    try:
        yield c
    finally:
        c.close()


def test_a_failed_heartbeat_loop_is_restarted_and_heartbeats_again(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = cluster.add_worker("w1")
    real = worker.link.heartbeat
    failed = threading.Event()

    async def fails_once(*args: Any, **kwargs: Any) -> Any:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("injected: a heartbeat that breaks the loop")
        return await real(*args, **kwargs)

    monkeypatch.setattr(worker.link, "heartbeat", fails_once)
    eventually(failed.is_set, what="the injected failure")
    after = time.time()

    def heartbeats_again() -> bool:
        (w1,) = cluster.client.list_workers()
        return w1.state == "healthy" and (w1.last_heartbeat or 0) > after

    eventually(heartbeats_again, timeout=15, what="a heartbeat from the restarted loop")
    assert worker.metrics.loop_failures.labels("heartbeat-loop")._value.get() == 1
    assert worker.loops.failure is None


def test_a_failed_dispatch_loop_is_restarted_and_runs_rounds_again(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    master, _ = cluster.master
    real = master.dispatcher.round
    rounds: list[int] = []

    async def fails_once() -> None:
        rounds.append(1)
        if len(rounds) == 1:
            raise RuntimeError("injected: a round that breaks the loop")
        await real()

    monkeypatch.setattr(master.dispatcher, "round", fails_once)
    eventually(lambda: len(rounds) >= 3, timeout=15, what="rounds after the restart")
    assert master.metrics.loop_failures.labels("dispatch-loop")._value.get() == 1
    assert master.loops.failure is None
