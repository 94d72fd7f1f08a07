"""Running a worker process: runtime, re-adoption, gRPC server, heartbeat-loop."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
from dataclasses import dataclass, field
from typing import Any

from cloudai import failpoints
from cloudai.api.v1 import worker_pb2_grpc
from cloudai.core.hardening import ContainerPolicy
from cloudai.core.models import validate_worker_id
from cloudai.core.resources import Resources
from cloudai.errors import InvalidArgument, check
from cloudai.loops import Loops
from cloudai.metrics import WorkerMetrics, start_metrics
from cloudai.rpc.server import Served, new_server
from cloudai.runtime import Runtime, open_runtime
from cloudai.security.tls import Tls
from cloudai.worker.gpus import Gpus
from cloudai.worker.identity import ClusterIdentity
from cloudai.worker.link import MasterLink
from cloudai.worker.service import WorkerService
from cloudai.worker.spool import Spool
from cloudai.worker.supervisor import STEP_DEADLINE, Supervisor
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
    capacity: Resources  # its `gpu` is the number of `gpu_ids`, whatever it says
    state_dir: str
    advertise: str = ""
    heartbeat_interval: float = 5.0
    metrics_listen: str = ""  # HOST:PORT for /metrics; empty: none
    metrics_required: bool = False  # False: a busy (default) address is only a warning
    tls: Tls | None = None  # None: --insecure
    policy: ContainerPolicy = field(default_factory=ContainerPolicy)  # the admin's choices
    gpu_ids: tuple[str, ...] | None = None  # --gpu-ids; None: what NVML finds
    engine_deadline: float = STEP_DEADLINE  # each engine call of a stop (--engine-deadline)

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
    loops: Loops  # heartbeat-loop, telemetry-loop
    sampler: Sampler
    metrics: WorkerMetrics
    metrics_server: Any = None
    gpus: Gpus = field(default_factory=lambda: Gpus(()))

    async def shutdown(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        await self.served.set_serving([SERVICE], serving=False)
        await self.loops.stop()
        await self.served.server.stop(grace=1.0)
        await self.supervisor.close()  # tasks keep running: a restart re-adopts them
        await self.link.close()
        await self.runtime.close()
        self.gpus.close()


def _advertised(listen: str, port: int, advertise: str) -> str:
    if advertise:
        return advertise
    host = listen.rpartition(":")[0].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"{host}:{port}"


def _log_isolation(cfg: WorkerConfig) -> None:
    """Say at start what isolation this worker's tasks get (docs/containers.md)."""
    p = cfg.policy
    if cfg.runtime == "process":
        log.warning(
            "⚠ runtime process: tasks run as this worker's user with NO isolation: no container, "
            "no capability, PIDs, CPU or memory limits, the host's network, files and processes"
        )
        return
    log.info(
        "containers: capabilities %s, pids limit at most %d, registries %s",
        ",".join(p.caps),
        p.max_pids_limit,
        ",".join(p.allowed_registries) or "any",
    )


async def serve_worker(cfg: WorkerConfig) -> RunningWorker:
    check(cfg.problems())  # before anything starts: a worker the master refuses never runs
    if problem := failpoints.check_armed():  # a test hook (docs/reliability.md)
        raise InvalidArgument(problem)
    runtime = open_runtime(cfg.runtime, cfg.worker_id, cfg.state_dir, cfg.policy)
    identity = ClusterIdentity(cfg.state_dir)
    runtime.cluster = lambda: identity.expected
    await runtime.ping()
    _log_isolation(cfg)
    gpus = await asyncio.to_thread(Gpus.open, cfg.gpu_ids)  # NVML calls block
    capacity = dataclasses.replace(cfg.capacity, gpu=len(gpus.ids))
    served = new_server(cfg.listen, cfg.tls, clients_need_cert=True)
    address = _advertised(cfg.listen, served.port, cfg.advertise)
    link = MasterLink(
        cfg.master,
        cfg.worker_id,
        address,
        capacity,
        cfg.runtime,
        cfg.heartbeat_interval,
        cfg.tls,
        gpus.ids,
        identity,
    )
    metrics = WorkerMetrics()
    link.metrics = metrics
    spool = Spool(cfg.state_dir)  # the ends the master has not answered for
    supervisor = Supervisor(runtime, link, cfg.worker_id, metrics, cfg.engine_deadline, spool)
    if gpus.measured and gpus.ids:

        async def check_released(gpu_ids: tuple[str, ...]) -> None:
            if busy := await gpus.settle(gpu_ids, supervisor.gpus_in_use):
                log.warning("⚠ GPU %s still in use after its task: held", ",".join(sorted(busy)))
            await link.beat_now()  # the master learns before the task's end is reported

        supervisor.on_gpus_released = check_released
    metrics.watch(lambda: len(supervisor.running_ids()))
    adopted = await supervisor.adopt()
    sampler = Sampler(runtime, supervisor.handles, cfg.state_dir, gpus, supervisor.gpus_in_use)
    loops = Loops(f"worker {cfg.worker_id}", metrics.loop_failures)
    loops.start("telemetry-loop", lambda: sampler.loop(cfg.heartbeat_interval))
    metrics_server = (
        start_metrics(metrics.registry, cfg.metrics_listen, cfg.metrics_required)
        if cfg.metrics_listen
        else None
    )
    worker_pb2_grpc.add_WorkerServicer_to_server(
        WorkerService(supervisor, link, metrics, cfg.policy, secure=cfg.tls is not None, gpus=gpus),
        served.server,
    )
    await served.server.start()
    await served.set_serving([SERVICE])
    loops.start(
        "heartbeat-loop",
        lambda: link.heartbeat_loop(
            supervisor.running_ids,
            supervisor.stopping_ids,
            supervisor.stop_orders,
            sampler.snapshot,
            gpus.snapshot,
        ),
    )
    if cfg.tls is None:
        log.warning(
            "⚠ INSECURE: plaintext gRPC; anyone who reaches port %d can run containers here "
            "(--insecure). For development only.",
            served.port,
        )
    log.info(
        "worker %s serving on %s (advertised %s), runtime %s, capacity %s, %d task(s) re-adopted "
        "or replayed from the spool",
        cfg.worker_id,
        cfg.listen,
        address,
        cfg.runtime,
        capacity,
        adopted,
    )
    return RunningWorker(
        served, link, supervisor, runtime, loops, sampler, metrics, metrics_server, gpus
    )


async def run_worker(cfg: WorkerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before serving: a stop while starting is clean
        loop.add_signal_handler(sig, stop.set)
    worker = await serve_worker(cfg)
    worker.loops.when_failed(lambda _: stop.set())
    await stop.wait()
    log.info("worker %s shutting down (its tasks keep running)", cfg.worker_id)
    await worker.shutdown()
    if worker.loops.failure is not None:
        raise worker.loops.failure  # the CLI says it in one line and exits non-zero
