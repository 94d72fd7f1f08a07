"""The worker's link to the master: registration, heartbeat-loop, result reports with retry."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import grpc

from cloudai.api.v1 import master_pb2, master_pb2_grpc, types_pb2
from cloudai.core.gpus import GpuDevice
from cloudai.core.limits import STOP_UPDATES_MAX
from cloudai.core.models import TaskResult
from cloudai.core.resources import Resources
from cloudai.core.stop import StopStage
from cloudai.core.stop_update import StopUpdate
from cloudai.errors import (
    CloudAIError,
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
    WrongCluster,
)
from cloudai.metrics import WorkerMetrics
from cloudai.rpc.convert import gpu_to_pb, resources_to_pb, result_to_pb, stop_update_to_pb
from cloudai.rpc.errors import from_rpc_error
from cloudai.rpc.server import CHANNEL_OPTIONS
from cloudai.security.tls import Tls, master_target_options
from cloudai.worker.identity import ClusterIdentity
from cloudai.worker.orders import CancelOrder, order_from_pb

__all__ = ["MasterLink"]

log = logging.getLogger("cloudai.worker.link")
RPC_DEADLINE = 10.0
Telemetry = Callable[[], tuple[dict[str, float], list[tuple[str, float, float]]]]
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED
_Queued = tuple[master_pb2.StopUpdate, "asyncio.Future[None]"]  # an update, answered when sent
REFUSED_LOG_EVERY = 12  # heartbeats refused between two ERROR lines (a minute at 5 s)


def _channel_options(interval: float) -> list[tuple[str, int]]:
    """CHANNEL_OPTIONS, reconnecting at least once per heartbeat interval. gRPC's own backoff
    grows to two minutes while the master is down, so after a long outage a worker could miss
    the deadline a restarted master gives it (`--worker-lost-after`, counted from its start)."""
    backoff_ms = max(int(interval * 1000), 100)
    return [
        *CHANNEL_OPTIONS,
        ("grpc.initial_reconnect_backoff_ms", min(backoff_ms, 1000)),
        ("grpc.max_reconnect_backoff_ms", backoff_ms),
    ]


class _NoStream(Exception):
    """The master has no heartbeat stream (UNIMPLEMENTED)."""


class MasterLink:
    def __init__(
        self,
        master: str,
        worker_id: str,
        address: str,
        capacity: Resources,
        runtime: str,
        heartbeat_interval: float = 5.0,
        tls: Tls | None = None,
        gpu_ids: Sequence[str] = (),
        identity: ClusterIdentity | None = None,
    ) -> None:
        self.master = master
        self.gpu_ids = tuple(gpu_ids)
        self.tls = tls
        self.identity = identity  # None: no cluster checks (tests of the link alone)
        self.worker_id = worker_id
        self.address = address
        self.capacity = capacity
        self.runtime = runtime
        self.interval = heartbeat_interval
        self._channel: grpc.aio.Channel | None = None
        self._stub_cache: master_pb2_grpc.MasterStub | None = None
        self._connecting = asyncio.Lock()
        self._retired: set[grpc.aio.Channel] = set()  # replaced, closing once their calls end
        self.registered = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        # Stop updates not yet sent, and each task's sender (link.update).
        self._queued: dict[str, list[_Queued]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._sending: dict[str, list[_Queued]] = {}
        self._batches = True  # False: the master has no UpdateStops (an older one)
        self._streams = True  # False: the master has no heartbeat stream (an older one)
        self._stream: Any = None  # the heartbeat stream (a grpc.aio StreamStreamCall)
        self._stream_stub: master_pb2_grpc.MasterStub | None = None  # the stub it is on
        self._beating = asyncio.Lock()
        self.metrics: WorkerMetrics = WorkerMetrics()  # replaced by the worker's own
        self.report_attempts: dict[str, int] = {}  # task_id -> failed attempts, while retrying
        self._beat: Callable[[], Awaitable[bool]] | None = None  # set by heartbeat_loop

    async def _stub(self) -> master_pb2_grpc.MasterStub:
        """The channel to the master's port for workers: with TLS, the master tells which
        (GetClusterInfo, over TLS checked against the cluster CA), and the channel there
        presents this worker's certificate and checks the master's."""
        if self._stub_cache is not None:
            return self._stub_cache
        async with self._connecting:
            if self._stub_cache is None:
                self._channel = await self._open()
                self._stub_cache = master_pb2_grpc.MasterStub(self._channel)
            return self._stub_cache

    async def _open(self) -> grpc.aio.Channel:
        channel_options = _channel_options(self.interval)
        if self.tls is None:
            return grpc.aio.insecure_channel(self.master, options=channel_options)
        options = [*channel_options, *master_target_options()]
        creds = self.tls.channel_credentials()
        async with grpc.aio.secure_channel(self.master, creds, options=options) as probe:
            try:
                info = await master_pb2_grpc.MasterStub(probe).GetClusterInfo(
                    master_pb2.ClusterInfoRequest(), timeout=RPC_DEADLINE
                )
            except grpc.aio.AioRpcError as exc:
                raise from_rpc_error(exc, f"master at {self.master}") from exc
        if not info.tls:
            raise Conflict(f"the master at {self.master} runs --insecure; this worker uses TLS")
        host = self.master.rpartition(":")[0]
        target = f"{host}:{info.worker_port}" if info.worker_port else self.master
        log.info("master %s takes worker calls at %s (mutual TLS)", self.master, target)
        return grpc.aio.secure_channel(target, creds, options=options)

    async def _reconnect(self) -> None:
        """Forget the channel: the next call asks the master again where to call it. The old
        channel closes in the background once its calls are done (each has its deadline):
        closing it at once would cancel a report in flight, and the caller would see its own
        task cancelled, not a failed call to retry."""
        if self.tls is None:
            return  # one plaintext port: nothing to ask
        async with self._connecting:
            channel, self._channel, self._stub_cache = self._channel, None, None
        if channel is not None:
            self._retired.add(channel)
            self._spawn(self._retire(channel), "close-old-channel")

    async def _retire(self, channel: grpc.aio.Channel) -> None:
        await channel.close(grace=RPC_DEADLINE)
        self._retired.discard(channel)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        t = asyncio.create_task(coro, name=name)
        self._background.add(t)
        t.add_done_callback(self._background.discard)
        return t

    async def _call(self, method: str, request: Any) -> Any:
        """One call to the master, failing as a CloudAIError. A stub whose channel a reconnect
        closed meanwhile (grpc's UsageError) fails as Unavailable: the next call opens anew."""
        stub = await self._stub()
        try:
            return await getattr(stub, method)(request, timeout=RPC_DEADLINE)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, f"master at {self.master}") from exc
        except grpc.aio.UsageError as exc:
            raise Unavailable(f"master at {self.master}: the channel was replaced") from exc

    @property
    def cluster_id(self) -> str:
        """The cluster this worker belongs to, sent with each call; "": none yet."""
        return self.identity.expected if self.identity is not None else ""

    def _check_cluster(self, answered: str) -> None:
        """Raise WrongCluster for an answer from a master of another cluster (nothing in it
        is acted on); learn the cluster from the first master."""
        if self.identity is not None:
            self.identity.check(answered, self.master)

    async def register(self, running: list[str]) -> list[tuple[str, CancelOrder]]:
        """Register; returns the stop orders the master queued for this worker."""
        reply = await self._call(
            "RegisterWorker",
            master_pb2.RegisterWorkerRequest(
                worker_id=self.worker_id,
                address=self.address,
                capacity=resources_to_pb(self.capacity),
                runtime=self.runtime,
                running_task_ids=running,
                gpu_ids=list(self.gpu_ids),
                cluster_id=self.cluster_id,
            ),
        )
        self._check_cluster(reply.cluster_id)
        self.registered.set()
        log.info(
            "✓ registered with master %s as %s (%s)", self.master, self.worker_id, self.capacity
        )
        return [order_from_pb(o) for o in reply.stop_orders]

    async def heartbeat(
        self,
        running: list[str],
        stopping: list[str],
        node: dict[str, float] | None = None,
        usage: list[tuple[str, float, float]] | None = None,
        gpus: list[GpuDevice] | None = None,
    ) -> tuple[bool, list[tuple[str, CancelOrder]]]:
        """One heartbeat with telemetry (the GPUs' too, busy flags included); returns whether
        the master knows this worker, and its stop orders."""
        request = master_pb2.HeartbeatRequest(
            worker_id=self.worker_id,
            running_task_ids=running,
            stopping_task_ids=stopping,
            usage=[
                master_pb2.TaskUsage(task_id=t, cpu_percent=c, mem_used_gb=m)
                for t, c, m in usage or []
            ],
            gpus=[gpu_to_pb(g) for g in gpus or []],
            cluster_id=self.cluster_id,
        )
        for key, value in (node or {}).items():
            setattr(request, key, value)
        reply = await self._send_beat(request)
        self._check_cluster(reply.cluster_id)
        return bool(reply.known), [order_from_pb(o) for o in reply.stop_orders]

    async def _send_beat(self, request: master_pb2.HeartbeatRequest) -> Any:
        """A heartbeat on this worker's stream to the master (opened at first use, and again
        after it broke); by SendHeartbeat to a master without the stream (an older one)."""
        if self._streams:
            async with self._beating:  # one heartbeat on the stream at a time
                try:
                    return await self._on_stream(request)
                except _NoStream:
                    self._streams = False
                    log.info(
                        "master %s has no heartbeat stream: one call per heartbeat", self.master
                    )
        return await self._call("SendHeartbeat", request)

    async def _on_stream(self, request: master_pb2.HeartbeatRequest) -> Any:
        stub = await self._stub()
        if self._stream is None or self._stream_stub is not stub or self._stream.done():
            self._drop_stream()  # none yet, on a replaced channel, or ended by the master
            self._stream, self._stream_stub = stub.Heartbeats(), stub
        call = self._stream
        try:
            async with asyncio.timeout(RPC_DEADLINE):  # a beat's deadline, as a call has
                await call.write(request)
                reply = await call.read()
        except grpc.aio.AioRpcError as exc:
            self._drop_stream()
            if exc.code() is UNIMPLEMENTED:
                raise _NoStream from exc
            if exc.code() is not grpc.StatusCode.INTERNAL:
                raise from_rpc_error(exc, f"master at {self.master}") from exc
            broke: BaseException = exc  # a write on a stream that ended meanwhile
        except (TimeoutError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
            self._drop_stream()
            broke = exc
        else:
            if reply is not grpc.aio.EOF:
                return reply
            self._drop_stream()
            broke = EOFError("the master ended it")
        text = broke.details() if isinstance(broke, grpc.aio.AioRpcError) else str(broke)
        why = text or f"no answer within {RPC_DEADLINE:g}s"
        raise Unavailable(f"master at {self.master}: heartbeat stream broke: {why}") from broke

    def _drop_stream(self) -> None:
        call, self._stream, self._stream_stub = self._stream, None, None
        if call is not None:
            call.cancel()

    async def heartbeat_loop(
        self,
        running: Callable[[], list[str]],
        stopping: Callable[[], list[str]],
        on_stop_orders: Callable[[list[tuple[str, CancelOrder]]], None],
        telemetry: Telemetry = lambda: ({}, []),
        gpus: Callable[[], list[GpuDevice]] = list,
    ) -> None:
        """heartbeat-loop: (re-)register when needed, beat every interval, carry out orders.
        A master that cannot be reached is its normal weather: it keeps trying. So is a master
        of another cluster, refused loudly: its tasks run on, and the right master may come
        back. Anything else fails the loop, which the worker's Loops logs and restarts."""

        async def beat() -> bool:
            """One heartbeat; False when the master does not know this worker."""
            node, usage = telemetry()
            known, orders = await self.heartbeat(running(), stopping(), node, usage, gpus())
            if not known:
                log.warning("⚠ master does not know this worker: registering again")
                self.registered.clear()
            elif orders:
                on_stop_orders(orders)
            return known

        self._beat = beat
        failures = refused = 0
        while True:
            try:
                if not self.registered.is_set():
                    on_stop_orders(await self.register(running()))
                if not await beat():
                    continue
                self.metrics.heartbeats.labels("ok").inc()
                if failures:
                    log.info("✓ master %s reachable again", self.master)
                if refused:
                    log.info("✓ master %s is cluster %s: accepted", self.master, self.cluster_id)
                failures = refused = 0
            except WrongCluster as exc:
                self.metrics.heartbeats.labels("refused").inc()
                self.metrics.masters_refused.inc()
                self.registered.clear()  # register again with the right master
                refused += 1
                if refused % REFUSED_LOG_EVERY == 1:
                    self._log_refused(exc, len(running()), refused)
                if refused % 3 == 0:
                    await self._reconnect()
            except CloudAIError as exc:
                self.metrics.heartbeats.labels("failed").inc()
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("⚠ heartbeat to %s failed (%d): %s", self.master, failures, exc)
                if failures % 3 == 0:
                    await self._reconnect()  # a restarted master may take workers elsewhere
            await asyncio.sleep(self.interval)

    async def beat_now(self) -> None:
        """One heartbeat now, outside the loop's pace (e.g. the GPU check after a task's exit,
        before its end is reported). A failure is only logged: the loop's next beat carries
        the same state."""
        if self._beat is None or not self.registered.is_set():
            return
        try:
            await self._beat()
        except CloudAIError as exc:
            log.warning("⚠ heartbeat to %s failed: %s", self.master, exc)

    def _log_refused(self, exc: WrongCluster, tasks: int, times: int) -> None:
        where = self.identity.path if self.identity is not None else "cluster_id"
        log.error(
            "✗ REFUSED master %s (%d time(s)): %s. This worker's %d task(s) keep running and "
            "their results wait; retrying every %gs, the right master may come back. To join "
            "that master's cluster on purpose, stop this worker and remove %s",
            self.master,
            times,
            exc,
            tasks,
            self.interval,
            where,
        )

    async def report(self, result: TaskResult) -> None:
        """Send a result until the master acknowledges it (it stores each task's result once)."""
        message = result_to_pb(result)
        message.cluster_id = self.cluster_id  # a master of another cluster refuses it
        answered = await self._until_answered(
            result.task_id, "result", lambda: self._call("ReportTaskCompletion", message)
        )
        if answered is not None:
            log.info("[Task %s] ✓ result reported to master: %s", result.task_id, answered)

    def update(
        self,
        task_id: str,
        stage: StopStage,
        detail: str = "",
        result: TaskResult | None = None,
        *,
        at: float | None = None,
    ) -> asyncio.Future[None]:
        """Tell the master a stop reached `stage` (with the exit: the task's result): the one
        channel for a stop's stages. Updates of one task go in order, each sent until the
        master answers (it applies each once: a repeat changes nothing); a refusal ends it.
        Those that queue while a call is out go together in the next (UpdateStops: the exit
        and the removal of a stop are one call). Await the returned future to know the master
        has it. `at`: when it happened (now)."""
        u = StopUpdate(task_id, self.worker_id, stage, at or time.time(), detail, result)
        message = stop_update_to_pb(u)
        message.cluster_id = self.cluster_id
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(task_id, []).append((message, answered))
        if task_id not in self._senders:
            sender = self._spawn(self._send_updates(task_id), f"stop-{task_id}")
            self._senders[task_id] = sender
            # A sender cancelled before it ran never reaches its own `finally`.
            sender.add_done_callback(lambda t: self._end_sender(task_id, t, None))
        return answered

    async def _send_updates(self, task_id: str) -> None:
        """Send the task's queued updates, those queued together in one call (at most
        STOP_UPDATES_MAX), until none is left."""
        error: Exception | None = None
        try:
            while queued := self._queued.pop(task_id, []):
                batch, rest = queued[:STOP_UPDATES_MAX], queued[STOP_UPDATES_MAX:]
                if rest:
                    self._queued[task_id] = rest
                self._sending[task_id] = batch
                await self._send_batch(task_id, [m for m, _ in batch])
                del self._sending[task_id]
                for _, answered in batch:
                    if not answered.done():  # its awaiter may have been cancelled
                        answered.set_result(None)
        except Exception as exc:  # a bug: its callers get it, not a cancellation
            log.error("[Task %s] ✗ stop updates not sent: %s", task_id, exc, exc_info=exc)
            error = exc
        finally:
            self._end_sender(task_id, asyncio.current_task(), error)

    def _end_sender(self, task_id: str, sender: object, error: Exception | None) -> None:
        """The task's sender ended (once: later calls are no-ops). What it left unsent is
        cancelled (the link is closing) or failed with its error."""
        if self._senders.get(task_id) is not sender:
            return
        del self._senders[task_id]
        for _, answered in [*self._sending.pop(task_id, []), *self._queued.pop(task_id, [])]:
            if answered.done():
                continue
            if error is None:
                answered.cancel()
            else:
                answered.set_exception(error)

    async def _send_batch(self, task_id: str, messages: list[master_pb2.StopUpdate]) -> None:
        if len(messages) > 1 and self._batches:
            request = master_pb2.StopUpdates(
                worker_id=self.worker_id, updates=messages, cluster_id=self.cluster_id
            )

            async def send() -> Any:
                try:
                    return await self._call("UpdateStops", request)
                except CloudAIError as exc:
                    cause = exc.__cause__
                    if isinstance(cause, grpc.aio.AioRpcError) and cause.code() is UNIMPLEMENTED:
                        self._batches = False  # an older master: one update per call from now
                        raise InvalidArgument(f"master at {self.master}: no UpdateStops") from exc
                    raise

            stages = "+".join(m.stage for m in messages)
            if await self._until_answered(task_id, f"stop stages {stages}", send) is not None:
                return
            # Refused together (one transaction): each alone, so that one refusal costs
            # only its own stage, as before they were batched.
        for m in messages:
            await self._until_answered(
                task_id, f"stop stage {m.stage}", functools.partial(self._call, "UpdateStop", m)
            )

    async def _until_answered(
        self, task_id: str, what: str, send: Callable[[], Awaitable[types_pb2.TaskAck]]
    ) -> str | None:
        """Retry `send` with backoff until the master answers; its message, or None when the
        master refused it (NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT, PERMISSION_DENIED:
        a retry would be refused too)."""
        delay = 0.2
        attempt = 0
        while True:
            attempt += 1
            try:
                ack = await send()
                self.report_attempts.pop(task_id, None)
                return ack.message
            except CloudAIError as err:
                if isinstance(err, (NotFound, Conflict, InvalidArgument, PermissionDenied)):
                    log.warning("[Task %s] ✗ master refused the %s: %s", task_id, what, err)
                    self.report_attempts.pop(task_id, None)
                    return None
                self.report_attempts[task_id] = attempt
                self.metrics.report_retries.inc()
                if attempt in (1, 10) or attempt % 100 == 0:
                    log.warning(
                        "[Task %s] ⚠ %s report failed (attempt %d), retrying: %s",
                        task_id,
                        what,
                        attempt,
                        err,
                    )
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        self._drop_stream()
        for t in list(self._background):
            t.cancel()
        for channel in [*self._retired, self._channel]:
            if channel is not None:
                await channel.close()
