"""The worker's link to the master over mutual TLS, against a stand-in master that holds a
call open: a reconnect (the heartbeat loop's, after failures) must not cancel a report in
flight. It did: grpc.aio cancels the calls of a channel closed without grace, and the report's
task then ended as if cancelled itself, its spooled result told to no one until a restart."""

from __future__ import annotations

import asyncio
import pathlib
import time

import grpc
import pytest

from cloudai.api.v1 import master_pb2, master_pb2_grpc, types_pb2
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskResult
from cloudai.core.resources import Resources
from cloudai.security.pki import Pki
from cloudai.security.tls import Tls
from cloudai.worker.link import MasterLink


class HeldMaster(master_pb2_grpc.MasterServicer):
    """Answers where to call it; holds each report until `release` is set."""

    def __init__(self) -> None:
        self.reports = 0
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def GetClusterInfo(self, request: object, context: object) -> object:
        return master_pb2.ClusterInfo(tls=True)

    async def ReportTaskCompletion(self, request: object, context: object) -> object:
        self.reports += 1
        self.holding.set()
        await self.release.wait()
        return types_pb2.TaskAck(success=True, message="stored")


@pytest.fixture
def pki(tmp_path: pathlib.Path) -> Pki:
    pki = Pki(tmp_path / "pki")
    pki.init([])
    pki.issue_worker("w1")
    return pki


async def test_a_reconnect_lets_a_report_in_flight_finish(pki: Pki) -> None:
    master = HeldMaster()
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
    result = TaskResult("t1", "w1", TaskStatus.COMPLETED, "done\n", 0, time.time())
    try:
        report = asyncio.create_task(link.report(result))
        await asyncio.wait_for(master.holding.wait(), 10)
        await link._reconnect()  # as the heartbeat loop does after three failed beats
        await asyncio.sleep(0.2)  # the old channel's close has begun
        assert not report.done()
        master.release.set()
        await asyncio.wait_for(report, 10)  # answered, not cancelled
        assert master.reports == 1
        assert link.report_attempts == {}
    finally:
        await link.close()
        await server.stop(None)
