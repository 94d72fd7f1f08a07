"""M2's client: submits and cancels offered at a fixed rate (open loop), in a process of its own.

Every planned submit goes out on its schedule (`submit` of them, evenly over [begin, end)),
whatever the master's pace: up to `MAX_IN_FLIGHT` calls wait on it at once, over 8 channels
(8 clients; TLS and the admin token when the master is secure), so a master that falls
behind shows as a growing backlog (latency) and, past the calls' deadline, as submits not
accepted, never as fewer offers; each answer's time is kept, so the bench can tell the calls
answered within the window from the backlog. Every other
submitted task is cancelled a second after its submit was offered (or at once when its submit
took longer), up to `cancel` of them; a cancel is offered even when it falls after `end`.
Started with the `spawn` method; the results go back over a Pipe: done(results)."""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection
from typing import Any

import grpc

from bench.secure import Peer, admin_channel
from cloudai.api.v1 import master_pb2, master_pb2_grpc, types_pb2

__all__ = ["driver_main"]

RPC_TIMEOUT = 60.0
CLIENTS = 8
MAX_IN_FLIGHT = 1024  # beyond this the schedule slips (counted as late offers)
LATE_S = 0.1  # an offer this far behind its schedule counts as late


def driver_main(
    master: Peer,
    worker_ids: list[str],
    image: str,
    submit: int,
    cancel: int,
    begin: float,
    end: float,
    conn: Connection,
) -> None:
    conn.send(("done", asyncio.run(_drive(master, worker_ids, image, begin, end, submit, cancel))))


async def _drive(
    master: Peer,
    worker_ids: list[str],
    image: str,
    begin: float,
    end: float,
    submit: int,
    cancel: int,
) -> dict[str, Any]:
    channels = [admin_channel(master) for _ in range(CLIENTS)]
    stubs = [master_pb2_grpc.MasterStub(c) for c in channels]
    meta = (("cloudai-user", "bench-m2"),)
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    out: dict[str, Any] = {
        "submit_ms": [],
        "cancel_ms": [],
        "errors": [],
        "error_count": 0,
        "late_offers": 0,
        "submit_done": [],  # when each accepted call was answered (time.time())
        "cancel_done": [],
        "max_in_flight": 0,
    }
    calls: list[asyncio.Task[None]] = []
    in_flight = 0
    pace = (end - begin) / max(submit, 1)

    def failed(what: str, exc: grpc.aio.AioRpcError) -> None:
        out["error_count"] += 1
        if len(out["errors"]) < 20:
            out["errors"].append(f"{what}: {exc.code().name}: {exc.details()}")

    async def call(i: int, what: str, request: Any) -> Any:
        nonlocal in_flight
        async with gate:
            in_flight += 1
            out["max_in_flight"] = max(out["max_in_flight"], in_flight)
            p = time.perf_counter()
            try:
                stub = stubs[i % CLIENTS]
                method = stub.SubmitTask if what == "submit" else stub.CancelTasks
                reply = await method(request, timeout=RPC_TIMEOUT, metadata=meta)
            except grpc.aio.AioRpcError as exc:
                failed(what, exc)
                return None
            finally:
                in_flight -= 1
            out[f"{what}_ms"].append((time.perf_counter() - p) * 1000)
            out[f"{what}_done"].append(time.time())
            return reply

    async def submit_then_cancel(i: int, offered: float, cancels: bool) -> None:
        spec = types_pb2.TaskSpec(
            image=image,
            command=["sleep", "3600"],
            resources=types_pb2.Resources(cpu=0.1, mem_gb=0.1),
            worker_id=worker_ids[i % len(worker_ids)],
            owner="bench-m2",
        )
        task = await call(i, "submit", master_pb2.SubmitTaskRequest(spec=spec))
        if not cancels or task is None:
            return
        await asyncio.sleep(max(0.0, offered + 1.0 - time.time()))
        await call(i, "cancel", master_pb2.CancelRequest(task_ids=[task.task_id]))

    await asyncio.sleep(max(0.0, begin - time.time()))
    planned_cancels = 0
    for i in range(submit):
        at = begin + i * pace
        await asyncio.sleep(max(0.0, at - time.time()))
        if time.time() - at > LATE_S:
            out["late_offers"] += 1
        cancels = i % 2 == 0 and planned_cancels < cancel
        planned_cancels += cancels
        calls.append(asyncio.create_task(submit_then_cancel(i, time.time(), cancels)))
    out["last_offer_at"] = time.time()
    if calls:
        await asyncio.wait(calls, timeout=2 * RPC_TIMEOUT + 5)
    out["offered"] = len(calls)
    out["cancels_planned"] = planned_cancels
    out["finished_at"] = time.time()
    for c in channels:
        await c.close()
    return out
