"""Simulated workers, for M1, M5 and the scaling curve: processes that speak the real gRPC
protocol to a real master, with a fake runtime (nothing ever runs).

Each load-generator process registers its share of the workers (RegisterWorker, each with its
own channel, as a real worker has), heartbeats each of them every `interval` seconds on a
fixed schedule with a random phase, from its registration on, as a real worker does (on its
heartbeat stream, listing the tasks it holds; only those in the measured window count), and
serves the Worker service on one port that every one of its workers gives as its address:
AssignTask and CancelTask are acknowledged at once; a task stays "running" until cancelled or
ordered stopped. A task is told apart by the worker named in its spec (M2's client,
bench/m2driver.py, names one).

When the master is secure, each worker has its own certificate and calls the master's worker
port with mutual TLS, and the Worker server serves TLS (bench/secure.py).

Processes are started with the `spawn` method and talk to the parent over a Pipe:
ready -> go(start, end) -> done(results)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

import grpc

from bench.secure import Peer, master_channel, worker_server_credentials
from cloudai.api.v1 import master_pb2, master_pb2_grpc, types_pb2, worker_pb2_grpc
from cloudai.rpc.server import CHANNEL_OPTIONS

__all__ = ["beat_on_schedule", "loadgen_main"]

CAPACITY = types_pb2.Resources(cpu=64, mem_gb=256, storage_gb=1000, gpu=0)
RPC_TIMEOUT = 60.0
# A heartbeat that failed without an answer (an AioRpcError is one with): no reply in time, the
# stream ended or broke, or its channel was replaced.
BEAT_FAILURES = (TimeoutError, EOFError, asyncio.InvalidStateError, grpc.aio.UsageError)


class _FakeWorkers(worker_pb2_grpc.WorkerServicer):
    """The Worker service of all of one process's simulated workers."""

    def __init__(self, ids: list[str]) -> None:
        self.held: dict[str, set[str]] = {w: set() for w in ids}
        self.owner: dict[str, str] = {}
        self.assigned = 0
        self.cancelled = 0
        self.stubs: dict[str, Any] = {}  # worker_id -> its Master stub, for its stop updates
        self.update_errors: list[str] = []
        self._updates: set[asyncio.Task[None]] = set()

    async def AssignTask(self, request: Any, context: Any) -> types_pb2.TaskAck:
        worker_id = request.spec.worker_id
        if worker_id in self.held:
            self.held[worker_id].add(request.task_id)
            self.owner[request.task_id] = worker_id
        self.assigned += 1
        return types_pb2.TaskAck(success=True, message="accepted", task_id=request.task_id)

    async def CancelTask(self, request: Any, context: Any) -> types_pb2.TaskAck:
        self.stop(request.task_id)
        self.cancelled += 1
        return types_pb2.TaskAck(success=True, message="stopping", task_id=request.task_id)

    def stop(self, task_id: str, ordered_to: str | None = None) -> None:
        """Stop a task (a CancelTask, or a heartbeat reply's order to `ordered_to`) and tell
        the master as a real worker does (`_stopped`)."""
        worker_id = self.owner.pop(task_id, None)
        if worker_id is not None:
            self.held[worker_id].discard(task_id)
        who = worker_id or ordered_to
        if who is None or who not in self.stubs:
            return
        t = asyncio.create_task(self._stopped(who, task_id, ran=worker_id is not None))
        self._updates.add(t)
        t.add_done_callback(self._updates.discard)

    async def settle(self, timeout: float) -> None:
        """Let the stop updates in flight finish (for `timeout` s), then cancel the rest, so
        none is left to find its channel closed."""
        if self._updates:
            _, late = await asyncio.wait(set(self._updates), timeout=timeout)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _stopped(self, worker_id: str, task_id: str, ran: bool) -> None:
        """A stop's updates, in order, as a real worker sends them: signalled, then exited
        (with the result) and removed together in one UpdateStops; for a task it does not
        hold, removed at once."""
        calls = (("signalled",), ("exited", "removed")) if ran else (("removed",),)
        for stages in calls:
            now = time.time()
            updates = [
                master_pb2.StopUpdate(task_id=task_id, worker_id=worker_id, stage=s, at=now)
                for s in stages
            ]
            for update in updates:
                if update.stage == "exited":
                    update.result.CopyFrom(
                        types_pb2.TaskResult(
                            task_id=task_id,
                            worker_id=worker_id,
                            status="cancelled",
                            exit_code=143,
                            completed_at=now,
                        )
                    )
            stub = self.stubs[worker_id]
            try:
                if len(updates) == 1:
                    await stub.UpdateStop(updates[0], timeout=RPC_TIMEOUT)
                else:
                    batch = master_pb2.StopUpdates(worker_id=worker_id, updates=updates)
                    await stub.UpdateStops(batch, timeout=RPC_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                self.update_errors.append(f"{exc.code().name}: {exc.details()}")
                return
            except grpc.aio.UsageError:  # the channel closed at the end of the window
                return

    async def StreamTaskLogs(self, request: Any, context: Any) -> AsyncIterator[Any]:
        return
        yield  # an empty stream

    async def Describe(self, request: Any, context: Any) -> types_pb2.WorkerInfo:
        return types_pb2.WorkerInfo(runtime="fake")


def loadgen_main(master: Peer, ids: list[str], interval: float, conn: Connection) -> None:
    asyncio.run(_loadgen(master, ids, interval, conn))


async def _loadgen(master: Peer, ids: list[str], interval: float, conn: Connection) -> None:
    fake = _FakeWorkers(ids)
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    worker_pb2_grpc.add_WorkerServicer_to_server(fake, server)
    if master.pki_dir is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", worker_server_credentials(master.pki_dir))
    await server.start()
    channels = {w: master_channel(master, w) for w in ids}
    stubs = {w: master_pb2_grpc.MasterStub(c) for w, c in channels.items()}
    fake.stubs = stubs
    loop = asyncio.get_running_loop()
    window: asyncio.Future[tuple[float, float]] = loop.create_future()  # (start, end), at go
    beats: list[tuple[float, float]] = []
    errors: list[str] = []
    beating: list[asyncio.Task[None]] = []

    def registered(w: str) -> None:  # it beats from now on, as a real worker does
        first = time.time() + random.uniform(0, interval)  # a phase of its own
        beat = _beat(stubs[w], w, fake, interval, first, window, beats, errors)
        beating.append(asyncio.create_task(beat))

    try:
        register_ms = await _register_all(stubs, f"127.0.0.1:{port}", registered)
        conn.send(("ready", {"register_ms": register_ms}))
        _, start, end = await loop.run_in_executor(None, conn.recv)
        window.set_result((start, end))
        await asyncio.gather(*beating)
        conn.send(
            (
                "done",
                {
                    "beats": beats,
                    "errors": errors[:20],
                    "error_count": len(errors),
                    "assigned": fake.assigned,
                    "cancelled": fake.cancelled,
                    "update_errors": fake.update_errors[:20],
                },
            )
        )
    finally:
        await fake.settle(5.0)
        for c in channels.values():
            await c.close()
        await server.stop(1.0)


async def _register_all(
    stubs: dict[str, Any], address: str, registered: Callable[[str], None]
) -> list[float]:
    took: list[float] = []
    gate = asyncio.Semaphore(16)

    async def one(worker_id: str) -> None:
        async with gate:
            p = time.perf_counter()
            await stubs[worker_id].RegisterWorker(
                master_pb2.RegisterWorkerRequest(
                    worker_id=worker_id, address=address, capacity=CAPACITY, runtime="fake"
                ),
                timeout=RPC_TIMEOUT,
                wait_for_ready=True,
            )
            took.append((time.perf_counter() - p) * 1000)
            registered(worker_id)

    await asyncio.gather(*(one(w) for w in stubs))
    return took


async def _beat(
    stub: Any,
    worker_id: str,
    fake: _FakeWorkers,
    interval: float,
    first: float,
    window: asyncio.Future[tuple[float, float]],
    beats: list[tuple[float, float]],
    errors: list[str],
) -> None:
    """Heartbeat one simulated worker on its heartbeat stream, as a real worker does (a new
    stream after one broke), listing the tasks it holds; obey the stop orders. It beats from
    `first` (within an interval of its registration) on; those before the window (known at
    go) are not measured."""
    rng = random.Random(worker_id)
    stream: list[Any] = []  # the open stream, if any

    async def send() -> None:
        request = master_pb2.HeartbeatRequest(
            worker_id=worker_id,
            running_task_ids=sorted(fake.held[worker_id]),
            cpu_percent=rng.uniform(5, 60),
            mem_used_gb=rng.uniform(1, 8),
            disk_free_gb=500.0,
        )
        if not stream or stream[0].done():
            stream[:] = [stub.Heartbeats()]
        call = stream[0]
        try:
            await call.write(request)
            async with asyncio.timeout(RPC_TIMEOUT):
                reply = await call.read()
            if reply is grpc.aio.EOF:
                raise EOFError("the master ended the heartbeat stream")
        except BaseException:
            call.cancel()
            stream.clear()
            raise
        for order in reply.stop_orders:
            fake.stop(order.task_id, worker_id)

    at = first
    while not window.done() or at < window.result()[0]:
        await asyncio.sleep(max(0.0, at - time.time()))
        if window.done() and at >= window.result()[0]:
            break  # the window began while it waited: this beat is measured
        await _quietly(send)
        at += interval
    _, end = window.result()
    await beat_on_schedule(send, interval, at, end, beats, errors, first=at)


async def _quietly(send: Callable[[], Awaitable[None]]) -> None:
    """A heartbeat before the window: its failure is the next one's to report."""
    with contextlib.suppress(grpc.aio.AioRpcError, *BEAT_FAILURES):
        await send()


async def beat_on_schedule(
    send: Callable[[], Awaitable[None]],
    interval: float,
    start: float,
    end: float,
    beats: list[tuple[float, float]],
    errors: list[str],
    first: float | None = None,
) -> None:
    """Call `send` on a fixed schedule from `first` (None: a random phase after `start`)
    until `end`: (sent at, ms) each."""
    at = start + random.uniform(0, interval) if first is None else first
    while at < end:
        await asyncio.sleep(max(0.0, at - time.time()))
        sent = time.time()
        p = time.perf_counter()
        try:
            await send()
        except grpc.aio.AioRpcError as exc:
            errors.append(f"{exc.code().name}: {exc.details()}")
        except BEAT_FAILURES as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        else:
            beats.append((sent, (time.perf_counter() - p) * 1000))
        at += interval
