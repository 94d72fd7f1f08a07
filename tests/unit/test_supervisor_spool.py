"""The supervisor removes a stopped task's container without waiting for the master, from the
run's end spooled first; it drops the spool entry only once the master answered, and a new
supervisor on the same state directory tells the master again (worker/supervisor.py,
worker/ending.py, worker/spool.py). A runtime and a master link in memory, no network."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from cloudai.core.models import TaskSpec
from cloudai.core.stop import StopStage
from cloudai.runtime.base import LOG_LIMIT, Exit, Handle, Runtime
from cloudai.worker.orders import CancelOrder
from cloudai.worker.spool import Spool
from cloudai.worker.supervisor import Supervisor


class _Runtime(Runtime):
    """One container at a time: it exits on its signal, says goodbye, and records each call."""

    name = "memory"

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.exited = asyncio.Event()
        self.containers: set[str] = set()

    async def ping(self) -> None:
        return None

    async def prepare(self, task_id: str, spec: TaskSpec) -> None:
        return None

    async def start(self, task_id: str, spec: TaskSpec, gpu_ids: Sequence[str] = ()) -> Handle:
        self.containers.add(task_id)
        return Handle(task_id, f"ref-{task_id}", time.time())

    async def wait(self, handle: Handle) -> Exit:
        await self.exited.wait()
        return Exit(0)

    async def is_running(self, handle: Handle) -> bool:
        return not self.exited.is_set()

    async def signal(self, handle: Handle, signal: str) -> bool:
        self.calls.append(f"signal {signal}")
        self.exited.set()
        return True

    async def destroy(self, handle: Handle) -> None:
        self.calls.append("destroy")
        self.containers.discard(handle.task_id)

    async def list(self) -> list[Handle]:
        return [Handle(t, f"ref-{t}", 0.0) for t in sorted(self.containers)]

    async def read_logs(self, handle: Handle, limit: int = LOG_LIMIT) -> str:
        return "ready\nbye-on-term\n"

    async def follow_logs(self, handle: Handle, follow: bool) -> AsyncIterator[bytes]:
        yield b""


class _Link:
    """A master that has not answered yet: each update is recorded and pending until `answer`."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.pending: list[asyncio.Future[None]] = []
        self.results: list[Any] = []

    def update(
        self, task_id: str, stage: StopStage, detail: str = "", result: Any = None, **_: Any
    ) -> asyncio.Future[None]:
        self.calls.append(f"update {stage.value}")
        if result is not None:
            self.results.append(result)
        f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(f)
        return f

    def answer(self) -> None:
        for f in self.pending:
            if not f.done():
                f.set_result(None)


async def _until(check: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_the_container_is_removed_before_the_master_answers_and_the_end_replayed(
    tmp_path: pathlib.Path,
) -> None:
    async def scenario() -> None:
        calls: list[str] = []
        runtime, link = _Runtime(calls), _Link(calls)
        sup = Supervisor(runtime, link, "w1", spool=Spool(tmp_path))  # type: ignore[arg-type]
        sup.assign("t-1", TaskSpec(image="img"), attempt=1)
        await _until(lambda: "t-1" in runtime.containers, "the start")
        sup.cancel("t-1", CancelOrder(attempt=1))
        await _until(lambda: "update removed" in calls, "the removal to be told")
        # The container went before the master heard of the exit, and the master has
        # answered nothing yet.
        assert calls == [
            "update delivered",
            "signal SIGTERM",
            "update signalled",
            "destroy",
            "update exited",
            "update removed",
        ]
        (result,) = link.results
        assert result.status.value == "cancelled" and "bye-on-term" in result.logs
        spool = tmp_path / "spool"
        (kept,) = spool.glob("t-1@1.json")
        assert "bye-on-term" in kept.read_text()
        assert sup.running_ids() == ["t-1"]  # the master still counts it here
        await sup.close()  # the worker dies before the master answered

        # A new supervisor on the same state directory tells the master again.
        calls.clear()
        link2 = _Link(calls)
        again = Supervisor(_Runtime(calls), link2, "w1", spool=Spool(tmp_path))  # type: ignore[arg-type]
        assert await again.adopt() == 1
        await _until(lambda: "update removed" in calls, "the replay")
        assert calls == ["update exited", "update removed"]  # nothing left to remove
        assert link2.results == [result]
        assert list(spool.glob("*.json")) != []  # kept until the master answers
        again.stop_orders([("t-1", CancelOrder(attempt=1))])  # the order, repeated meanwhile
        assert "update removed" not in calls[2:]  # not "not here": the replay answers it
        link2.answer()
        await _until(lambda: not list(spool.glob("*.json")), "the entry to be dropped")
        await _until(lambda: again.running_ids() == [], "the task to be forgotten")
        await again.close()

    asyncio.run(scenario())


def test_without_a_spool_the_master_hears_before_the_removal(tmp_path: pathlib.Path) -> None:
    """A spool that cannot be written (here its directory is a file): the run's end is not
    lost for it. The master hears of the exit first and the container goes after, as
    before the spool."""

    async def scenario() -> None:
        (tmp_path / "spool").write_text("not a directory")
        calls: list[str] = []
        runtime, link = _Runtime(calls), _Link(calls)
        sup = Supervisor(runtime, link, "w1", spool=Spool(tmp_path))  # type: ignore[arg-type]
        sup.assign("t-2", TaskSpec(image="img"), attempt=1)
        await _until(lambda: "t-2" in runtime.containers, "the start")
        sup.cancel("t-2", CancelOrder(attempt=1))
        await _until(lambda: "update exited" in calls, "the exit to be told")
        for _ in range(50):  # let every ready step run: the removal waits for the answer
            await asyncio.sleep(0)
        assert "destroy" not in calls
        link.answer()
        await _until(lambda: "update removed" in calls, "the removal")
        assert calls[-2:] == ["destroy", "update removed"]
        link.answer()
        await _until(lambda: sup.running_ids() == [], "the task to be forgotten")
        await sup.close()

    asyncio.run(scenario())
