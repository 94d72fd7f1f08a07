"""The worker's link to the master over mutual TLS, against a stand-in master that holds a
call open.

A reconnect (the heartbeat loop's, after failures) must not cancel a report in flight. It did:
grpc.aio cancels the calls of a channel closed without grace, and the report's task then ended
as if cancelled itself, its spooled result told to no one until a restart. Stop updates that
queue while a call is out go together in the next one (UpdateStops)."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from cloudai.api.v1 import master_pb2, master_pb2_grpc, types_pb2
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskResult
from cloudai.core.resources import Resources
from cloudai.core.stop import StopStage
from cloudai.errors import Unavailable
from cloudai.security.pki import Pki
from cloudai.security.tls import Tls
from cloudai.worker.link import MasterLink


class HeldMaster(master_pb2_grpc.MasterServicer):
    """Answers where to call it; holds each report and stop update until `release` is set;
    refuses a batch of stop updates when told to (as one refused update refuses its call)."""

    def __init__(self, refuse_batches: bool = False) -> None:
        self.beats = []
        self.reports = 0
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.refuse_batches = refuse_batches
        self.stops: list[list[str]] = []  # the stages of each stop call, as they came

    streams = 0  # heartbeat streams opened
    beats: list[str] = []  # "stream" or "call", per heartbeat
    break_after = 0  # end each stream (UNAVAILABLE) after this many heartbeats; 0: never

    async def Heartbeats(self, requests: Any, context: Any) -> Any:
        self.streams += 1
        n = 0
        async for _ in requests:
            self.beats.append("stream")
            yield master_pb2.HeartbeatResponse(known=True)
            n += 1
            if n == self.break_after:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "going away")

    async def SendHeartbeat(self, request: Any, context: Any) -> object:
        self.beats.append("call")
        return master_pb2.HeartbeatResponse(known=True)

    async def UpdateStop(self, request: Any, context: Any) -> object:
        self.stops.append([request.stage])
        self.holding.set()
        await self.release.wait()
        if request.stage == "killed":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such stage here")
        return types_pb2.TaskAck(success=True, message="recorded")

    async def UpdateStops(self, request: Any, context: Any) -> object:
        self.stops.append([u.stage for u in request.updates])
        if self.refuse_batches:
            await context.abort(grpc.StatusCode.NOT_FOUND, "one of them is unknown")
        return types_pb2.TaskAck(success=True, message="recorded")

    async def GetClusterInfo(self, request: object, context: object) -> object:
        return master_pb2.ClusterInfo(tls=True)

    async def ReportTaskCompletion(self, request: object, context: object) -> object:
        self.reports += 1
        self.holding.set()
        await self.release.wait()
        return types_pb2.TaskAck(success=True, message="stored")


@contextlib.asynccontextmanager
async def linked(pki: Pki, master: HeldMaster) -> AsyncIterator[MasterLink]:
    server = grpc.aio.server()
    master_pb2_grpc.add_MasterServicer_to_server(master, server)
    port = server.add_secure_port("127.0.0.1:0", Tls.for_master(pki).server_credentials(True))
    await server.start()
    link = MasterLink(
        f"127.0.0.1:{port}",
        "w1",
        "127.0.0.1:1",
        Resources(cpu=1, mem_gb=1),
        "process",
        tls=Tls.for_worker(pki, "w1"),
    )
    try:
        yield link
    finally:
        await link.close()
        await server.stop(None)


@pytest.fixture
def pki(tmp_path: pathlib.Path) -> Pki:
    pki = Pki(tmp_path / "pki")
    pki.init([])
    pki.issue_worker("w1")
    return pki


async def test_a_reconnect_lets_a_report_in_flight_finish(pki: Pki) -> None:
    master = HeldMaster()
    result = TaskResult("t1", "w1", TaskStatus.COMPLETED, "done\n", 0, time.time())
    async with linked(pki, master) as link:
        report = asyncio.create_task(link.report(result))
        await asyncio.wait_for(master.holding.wait(), 10)
        await link._reconnect()  # as the heartbeat loop does after three failed beats
        (closing,) = [t for t in link._background if t.get_name() == "close-old-channel"]
        done, _ = await asyncio.wait({closing}, timeout=0.5)
        assert not done and not report.done()  # the old channel waits for the call in flight
        master.release.set()
        await asyncio.wait_for(report, 10)  # answered, not cancelled
        assert master.reports == 1
        assert link.report_attempts == {}


async def test_stop_updates_that_queue_behind_a_call_go_together(pki: Pki) -> None:
    master = HeldMaster()
    async with linked(pki, master) as link:
        link.update("t1", StopStage.DELIVERED)
        await asyncio.wait_for(master.holding.wait(), 10)
        link.update("t1", StopStage.SIGNALLED, "SIGTERM")
        link.update("t1", StopStage.EXITED)
        last = link.update("t1", StopStage.REMOVED)
        master.release.set()
        await asyncio.wait_for(last, 10)
        assert master.stops == [["delivered"], ["signalled", "exited", "removed"]]
        later = link.update("t1", StopStage.REMOVED)  # a later one: a call of its own
        other = link.update("t2", StopStage.REMOVED)  # another task's: its own too
        await asyncio.wait_for(asyncio.gather(later, other), 10)
        assert sorted(master.stops[2:]) == [["removed"], ["removed"]]


async def test_a_refused_batch_is_sent_again_one_update_at_a_time(pki: Pki) -> None:
    """One refused stage costs only itself: the others are sent alone, in order."""
    master = HeldMaster(refuse_batches=True)
    async with linked(pki, master) as link:
        link.update("t1", StopStage.DELIVERED)
        await asyncio.wait_for(master.holding.wait(), 10)
        link.update("t1", StopStage.KILLED)  # the stand-in refuses this one
        last = link.update("t1", StopStage.EXITED)
        master.release.set()
        await asyncio.wait_for(last, 10)
        assert master.stops == [["delivered"], ["killed", "exited"], ["killed"], ["exited"]]


class OlderMaster(HeldMaster):
    """A master from before UpdateStops: gRPC's UNIMPLEMENTED."""

    async def UpdateStops(self, request: Any, context: Any) -> object:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")


async def test_an_older_master_gets_one_update_per_call(pki: Pki) -> None:
    master = OlderMaster()
    async with linked(pki, master) as link:
        link.update("t1", StopStage.DELIVERED)
        await asyncio.wait_for(master.holding.wait(), 10)
        link.update("t1", StopStage.SIGNALLED)
        last = link.update("t1", StopStage.EXITED)
        master.release.set()
        await asyncio.wait_for(last, 10)
        assert master.stops == [["delivered"], ["signalled"], ["exited"]]
        link.update("t2", StopStage.DELIVERED)
        link.update("t2", StopStage.SIGNALLED)
        await asyncio.wait_for(link.update("t2", StopStage.EXITED), 10)  # no batch tried
        assert master.stops[3:] == [["delivered"], ["signalled"], ["exited"]]


async def test_a_long_queue_goes_in_calls_of_at_most_16(pki: Pki) -> None:
    master = HeldMaster()
    async with linked(pki, master) as link:
        link.update("t1", StopStage.DELIVERED)
        await asyncio.wait_for(master.holding.wait(), 10)
        queued = [link.update("t1", StopStage.SIGNALLED, str(i)) for i in range(20)]
        master.release.set()
        await asyncio.wait_for(asyncio.gather(*queued), 10)
        assert [len(c) for c in master.stops] == [1, 16, 4]


async def test_updates_left_unsent_at_close_are_cancelled_not_lost_silently(pki: Pki) -> None:
    master = HeldMaster()
    async with linked(pki, master) as link:
        first = link.update("t1", StopStage.DELIVERED)
        await asyncio.wait_for(master.holding.wait(), 10)
        queued = link.update("t1", StopStage.SIGNALLED)
        never_ran = link.update("t2", StopStage.REMOVED)  # its sender has not started yet
        await link.close()
        for f in (first, queued, never_ran):
            await asyncio.wait_for(asyncio.wait({f}), 10)
            assert f.cancelled()
        master.release.set()


async def test_heartbeats_go_on_one_stream_reopened_when_it_breaks(pki: Pki) -> None:
    master = HeldMaster()
    master.break_after = 3
    async with linked(pki, master) as link:
        for _ in range(3):
            assert (await link.heartbeat([], []))[0] is True
        assert master.streams == 1 and master.beats == ["stream"] * 3
        # The master ended the stream after the third reply: the next heartbeat opens a new
        # one (the status arrives just after the reply: wait for it, not for luck).
        ended = link._stream
        await asyncio.wait_for(ended.code(), 10)
        assert (await link.heartbeat([], []))[0] is True
        assert master.streams == 2 and master.beats == ["stream"] * 4
        # Broken while a heartbeat is out: that heartbeat fails as a call would (UNAVAILABLE).
        master.break_after = 1
        await link._reconnect()  # a new channel: the next heartbeat opens a new stream
        assert (await link.heartbeat([], []))[0] is True
        await asyncio.wait_for(link._stream.code(), 10)
        link._stream.done = lambda: False  # as if the end had not arrived yet
        with pytest.raises(Unavailable):
            await link.heartbeat([], [])
        assert (await link.heartbeat([], []))[0] is True


class StreamlessMaster(HeldMaster):
    """A master from before the heartbeat stream."""

    async def Heartbeats(self, requests: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        yield  # a generator, as a stream handler is


async def test_a_master_without_the_stream_gets_one_call_per_heartbeat(pki: Pki) -> None:
    master = StreamlessMaster()
    async with linked(pki, master) as link:
        for _ in range(3):
            assert (await link.heartbeat([], []))[0] is True
        assert master.beats == ["call"] * 3


class HeldCall:
    """A heartbeat stream whose answer the test gives: to cancel the heartbeat just as it
    arrives (the race is too narrow to meet by chance over a real stream)."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.reading = asyncio.Event()

    async def write(self, request: Any) -> None:
        pass

    async def read(self) -> Any:
        self.reading.set()
        return await self.answer

    def done(self) -> bool:
        return False

    def cancel(self) -> bool:
        return True


async def test_a_heartbeat_cancelled_as_its_answer_arrives_ends_cancelled(pki: Pki) -> None:
    """A worker's shutdown cancels its heartbeat loop. Python 3.11's wait_for lost a cancel
    that came as the awaited read completed: the loop beat on, and the shutdown waited for ever
    (30 s teardowns in CI). The heartbeat now ends cancelled."""
    async with linked(pki, HeldMaster()) as link:
        call = HeldCall()
        link._stream, link._stream_stub = call, await link._stub()
        beat = asyncio.create_task(link.heartbeat([], []))
        await asyncio.wait_for(call.reading.wait(), 10)
        call.answer.set_result(master_pb2.HeartbeatResponse(known=True))
        beat.cancel()
        with pytest.raises(asyncio.CancelledError):
            await beat
