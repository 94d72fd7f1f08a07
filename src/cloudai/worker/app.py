"""Running a worker process: runtime, re-adoption, gRPC server, heartbeat-loop."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from dataclasses import dataclass
from typing import Any

from cloudai.api.v1 import worker_pb2_grpc
from cloudai.core.models import validate_worker_id
from cloudai.core.resources import Resources
from cloudai.errors import RuntimeFailure, check
from cloudai.metrics import WorkerMetrics, start_metrics
from cloudai.rpc.server import Served, new_server
from cloudai.runtime import Runtime, open_runtime
from cloudai.worker.link import MasterLink
from cloudai.worker.service import WorkerService
from cloudai.worker.supervisor import Supervisor
from cloudai.worker.telemetry import Sampler

__all__ = ["RunningWorker", "WorkerConfig", "run_worker", "serve_worker"]

log = logging.getLogger("cloudai.worker")
SERVICE = "cloudai.api.v1.Worker"


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: str
    master: str
    listen: str
    runtime: str
    capacity: Resources
    state_dir: str
    advertise: str = ""
    heartbeat_interval: float = 5.0
    metrics_listen: str = ""  # HOST:PORT for /metrics; empty: none
    metrics_required: bool = False  # False: a busy (default) address is only a warning

    def problems(self) -> list[str]:
        """What makes this configuration unusable (the master would refuse it)."""
        return [
            *([p] if (p := validate_worker_id(self.worker_id)) else []),
            *(f"invalid capacity: {p}" for p in self.capacity.validate_capacity()),
        ]


@dataclass
class RunningWorker:
    served: Served
    link: MasterLink
    supervisor: Supervisor
    runtime: Runtime
    beat: asyncio.Task[None]
    sampling: asyncio.Task[None]
    sampler: Sampler
    metrics: WorkerMetrics
    metrics_server: Any = None

    async def shutdown(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        await self.served.set_serving([SERVICE], serving=False)
        for loop in (self.beat, self.sampling):
            loop.cancel()
        await asyncio.gather(self.beat, self.sampling, return_exceptions=True)
        await self.served.server.stop(grace=1.0)
        await self.supervisor.close()  # tasks keep running: a restart re-adopts them
        await self.link.close()
        await self.runtime.close()


def _advertised(listen: str, port: int, advertise: str) -> str:
    if advertise:
        return advertise
    host = listen.rpartition(":")[0].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"{host}:{port}"


async def serve_worker(cfg: WorkerConfig) -> RunningWorker:
    check(cfg.problems())  # before anything starts: a worker the master refuses never runs
    runtime = open_runtime(cfg.runtime, cfg.worker_id, cfg.state_dir)
    await runtime.ping()
    served = new_server(cfg.listen)
    address = _advertised(cfg.listen, served.port, cfg.advertise)
    link = MasterLink(
        cfg.master, cfg.worker_id, address, cfg.capacity, cfg.runtime, cfg.heartbeat_interval
    )
    metrics = WorkerMetrics()
    link.metrics = metrics
    supervisor = Supervisor(runtime, link, cfg.worker_id, metrics)
    metrics.watch(lambda: len(supervisor.running_ids()))
    adopted = await supervisor.adopt()
    sampler = Sampler(runtime, supervisor.handles, cfg.state_dir)
    sampling = asyncio.create_task(sampler.loop(cfg.heartbeat_interval), name="telemetry-loop")
    metrics_server = (
        start_metrics(metrics.registry, cfg.metrics_listen, cfg.metrics_required)
        if cfg.metrics_listen
        else None
    )
    worker_pb2_grpc.add_WorkerServicer_to_server(
        WorkerService(supervisor, link, metrics), served.server
    )
    await served.server.start()
    await served.set_serving([SERVICE])
    beat = asyncio.create_task(
        link.heartbeat_loop(
            supervisor.running_ids,
            supervisor.stopping_ids,
            supervisor.stop_orders,
            sampler.snapshot,
        ),
        name="heartbeat-loop",
    )
    log.info(
        "worker %s serving on %s (advertised %s), runtime %s, capacity %s, %d task(s) re-adopted",
        cfg.worker_id,
        cfg.listen,
        address,
        cfg.runtime,
        cfg.capacity,
        adopted,
    )
    return RunningWorker(
        served, link, supervisor, runtime, beat, sampling, sampler, metrics, metrics_server
    )


async def run_worker(cfg: WorkerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before serving: a stop while starting is clean
        loop.add_signal_handler(sig, stop.set)
    worker = await serve_worker(cfg)
    stopping = asyncio.create_task(stop.wait(), name="wait-for-stop")
    await asyncio.wait({stopping, worker.beat}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    failed = worker.beat.done() and not worker.beat.cancelled() and worker.beat.exception()
    if failed:  # a worker that cannot reach the master in its own way does not run on
        log.error("✗ heartbeat-loop failed: %s", failed, exc_info=failed)
    log.info("worker %s shutting down (its tasks keep running)", cfg.worker_id)
    await worker.shutdown()
    if failed:
        raise RuntimeFailure(f"the worker stopped: its heartbeat-loop failed ({failed})")
