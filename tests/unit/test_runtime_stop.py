"""Runtime.stop, the one stop sequence, over a scripted engine: what it reports at each step,
and how a hung or refusing engine becomes a failure that names the step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from cloudai.core.models import TaskSpec
from cloudai.errors import RuntimeFailure
from cloudai.runtime.base import Exit, Handle, Runtime

HANDLE = Handle("t1", "ref", 0.0)


class Scripted(Runtime):
    """An engine whose task ignores or obeys signals as told; nothing runs."""

    name = "scripted"

    def __init__(self, obeys: set[str], hang: str = "", refuse: str = "") -> None:
        self.obeys, self.hang, self.refuse = obeys, hang, refuse
        self.running = True
        self.sent: list[str] = []

    async def signal(self, handle: Handle, signal: str) -> bool:
        if signal == self.hang:
            await asyncio.sleep(3600)
        if signal == self.refuse:
            raise RuntimeFailure("engine said no")
        if not self.running:
            return False
        self.sent.append(signal)
        if signal in self.obeys:
            self.running = False
        return True

    async def is_running(self, handle: Handle) -> bool:
        return self.running

    async def ping(self) -> None: ...
    async def prepare(self, task_id: str, spec: TaskSpec) -> None: ...
    async def start(self, task_id: str, spec: TaskSpec, gpu_ids: Sequence[str] = ()) -> Handle:
        return HANDLE

    async def wait(self, handle: Handle) -> Exit:
        return Exit(0)

    async def destroy(self, handle: Handle) -> None: ...
    async def list(self) -> list[Handle]:
        return []

    async def read_logs(self, handle: Handle, limit: int = 0) -> str:
        return ""

    async def follow_logs(self, handle: Handle, follow: bool) -> AsyncIterator[bytes]:
        yield b""


def stop(rt: Runtime, signal: str, grace: float, deadline: float = 5.0) -> tuple[str, list[str]]:
    steps: list[str] = []
    how = asyncio.run(
        rt.stop(
            HANDLE, signal, grace, on_step=lambda s, at: steps.append(s), step_deadline=deadline
        )
    )
    return how, steps


def test_a_task_that_obeys_exits_within_its_grace() -> None:
    rt = Scripted(obeys={"SIGTERM"})
    assert stop(rt, "SIGTERM", 5.0) == ("exited", ["signalled"])
    assert rt.sent == ["SIGTERM"]


def test_a_stubborn_task_is_killed_after_its_grace() -> None:
    rt = Scripted(obeys={"SIGKILL"})
    assert stop(rt, "SIGTERM", 0.1) == ("killed", ["signalled", "killed"])
    assert rt.sent == ["SIGTERM", "SIGKILL"]


def test_a_forced_stop_is_one_sigkill_told_as_the_signal() -> None:
    rt = Scripted(obeys={"SIGKILL"})
    assert stop(rt, "SIGKILL", 10.0) == ("killed", ["signalled"])


def test_a_task_already_gone_needs_nothing() -> None:
    rt = Scripted(obeys=set())
    rt.running = False
    assert stop(rt, "SIGTERM", 1.0) == ("not running", [])


@pytest.mark.parametrize(
    ("rt", "message"),
    [
        (Scripted(obeys=set(), hang="SIGTERM"), "SIGTERM failed: the engine did not answer"),
        (Scripted(obeys=set(), refuse="SIGKILL"), "kill failed: engine said no"),
        (Scripted(obeys=set()), "kill failed: still running 0.2s after SIGKILL"),
    ],
)
def test_an_engine_that_hangs_or_refuses_fails_the_stop_naming_the_step(
    rt: Scripted, message: str
) -> None:
    with pytest.raises(RuntimeFailure, match=message):
        stop(rt, "SIGTERM", 0.1, deadline=0.2)
