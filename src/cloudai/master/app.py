"""Running the master process: store, Cluster, gRPC server with health, clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass

from cloudai import failpoints
from cloudai.api.v1 import master_pb2, master_pb2_grpc
from cloudai.errors import CloudAIError, InvalidArgument, Unavailable
from cloudai.master.accounts import Accounts
from cloudai.master.auth import Auth, RateLimit
from cloudai.master.cluster import Cluster
from cloudai.master.config import MasterConfig
from cloudai.master.service import MasterService
from cloudai.metrics import start_metrics
from cloudai.rpc.server import Served, new_server
from cloudai.security.pki import Pki
from cloudai.security.tls import Tls
from cloudai.store import Store, identity
from cloudai.store.engine import masked_url

__all__ = ["MasterSecurity", "run_master", "serve_master"]

log = logging.getLogger("cloudai.master")
SERVICE = "cloudai.api.v1.Master"
SHUTDOWN_DEADLINE = 10.0


@dataclass(frozen=True)
class MasterSecurity:
    """The cluster PKI, and where workers call (mutual TLS). None: `--insecure`."""

    pki: Pki
    worker_listen: str


async def serve_master(
    listen: str,
    db_url: str,
    config: MasterConfig | None = None,
    security: MasterSecurity | None = None,
) -> tuple[Cluster, Served, int]:
    """Start a master; returns (cluster, served, port). Used by `run_master` and by tests."""
    if problem := failpoints.check_armed():  # a test hook (docs/reliability.md)
        raise InvalidArgument(problem)
    store = await asyncio.to_thread(Store, db_url)
    tls = Tls.for_master(security.pki) if security else None
    # Before serving: a worker is never admitted by a master that does not know its cluster.
    cluster_id = await store.tx(identity.ensure, time.time())
    cluster = Cluster(store, config, tls, cluster_id)
    cfg = cluster.config
    auth = Auth(
        store,
        secure=security is not None,
        submit_limit=RateLimit(cfg.submit_rate, 2 * cfg.submit_rate),
        cancel_limit=RateLimit(cfg.cancel_rate, 2 * cfg.cancel_rate),
    )
    accounts = Accounts(store, auth, security.pki if security else None)
    await accounts.bootstrap()
    store.observe = cluster.metrics.store_seconds.observe
    if cluster.config.metrics_listen:
        cluster.metrics_server = start_metrics(
            cluster.metrics.registry, cluster.config.metrics_listen, cluster.config.metrics_required
        )
    served = new_server(
        listen, tls, clients_need_cert=False, peer_listen=security.worker_listen if security else ""
    )
    info = master_pb2.ClusterInfo(
        tls=security is not None,
        worker_port=served.peer_port,
        ca_fingerprint=security.pki.ca_fingerprint() if security else "",
    )
    master_pb2_grpc.add_MasterServicer_to_server(
        MasterService(cluster, accounts, info), served.server
    )
    await served.server.start()
    await cluster.start()
    await served.set_serving([SERVICE])
    if cfg.http_listen:
        from cloudai.web import start_web

        try:
            cluster.web_server = await start_web(
                cluster, auth, cfg.http_listen, security.pki if security else None
            )
        except CloudAIError as exc:
            if cfg.http_required or not isinstance(exc, Unavailable):
                await shutdown_master(cluster, served)
                raise
            log.warning("⚠ %s: no web console (--http-listen to pick another address)", exc)
    if security is None:
        log.warning(
            "⚠ INSECURE: plaintext gRPC and no authentication (--insecure). Anyone who reaches "
            "port %d can run containers on every worker. For development only.",
            served.port,
        )
        log.info(
            "master serving on %s (port %d), store %s, cluster %s",
            listen,
            served.port,
            masked_url(db_url),
            cluster_id,
        )
    else:
        log.info(
            "master serving on %s (port %d, TLS and tokens); workers on port %d (mutual TLS); "
            "store %s, cluster %s",
            listen,
            served.port,
            served.peer_port,
            masked_url(db_url),
            cluster_id,
        )
    return cluster, served, served.port


async def shutdown_master(cluster: Cluster, served: Served) -> None:
    if cluster.web_server is not None:
        await cluster.web_server.stop()
        cluster.web_server = None
    await served.set_serving([SERVICE], serving=False)
    await served.server.stop(grace=2.0)
    try:
        async with asyncio.timeout(SHUTDOWN_DEADLINE):
            await cluster.stop()
    except TimeoutError:  # a stuck peer call must not keep the master from stopping
        log.warning("⚠ background work did not stop within %gs; going on", SHUTDOWN_DEADLINE)
    if cluster.metrics_server is not None:
        cluster.metrics_server.shutdown()
    await asyncio.to_thread(cluster.store.close)


async def run_master(
    listen: str,
    db_url: str,
    config: MasterConfig | None = None,
    security: MasterSecurity | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before serving: a stop while starting is clean
        loop.add_signal_handler(sig, stop.set)
    cluster, served, _ = await serve_master(listen, db_url, config, security)
    cluster.loops.when_failed(lambda _: stop.set())
    await stop.wait()
    log.info("master shutting down")
    await shutdown_master(cluster, served)
    if cluster.loops.failure is not None:
        raise cluster.loops.failure  # the CLI says it in one line and exits non-zero
