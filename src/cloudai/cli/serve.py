"""`cloudai master`, `cloudai worker` and `cloudai up`: the commands that run servers."""

from __future__ import annotations

import argparse
import asyncio
import logging

from cloudai.cli import secure
from cloudai.cli.options import DEFAULT_PEER_PORT
from cloudai.client import default_master
from cloudai.config import (
    DEFAULT_MASTER_METRICS,
    DEFAULT_WORKER_METRICS,
    home,
    metrics_address,
)
from cloudai.core.gpus import validate_gpu_ids
from cloudai.core.limits import quote
from cloudai.errors import InvalidArgument

__all__ = []


def _run_server(args: argparse.Namespace) -> int:
    from cloudai.logsetup import setup_logging

    setup_logging(args.log_level, args.log_format)
    if args.command == "master":
        from cloudai.master.app import run_master
        from cloudai.master.config import MasterConfig
        from cloudai.store import default_sqlite_url

        db = args.db or default_sqlite_url(home())
        mlisten, mrequired = metrics_address(args.metrics_listen, DEFAULT_MASTER_METRICS)
        if args.cancel_webhook and not args.cancel_webhook.startswith(("http://", "https://")):
            raise InvalidArgument(
                f"--cancel-webhook must be an http(s) URL: {quote(args.cancel_webhook)}"
            )
        if args.http_listen:
            from cloudai.web.server import check_listen

            check_listen(args.http_listen)
        security = None
        if args.insecure:
            logging.getLogger("cloudai").warning("⚠ --insecure: plaintext and no authentication")
        else:
            security = secure.master_security(home(), _peer_listen(args))
        asyncio.run(
            run_master(
                args.listen,
                db,
                MasterConfig(
                    heartbeat_interval=args.heartbeat_interval,
                    cancel_deadline=args.cancel_deadline,
                    cancel_webhook=args.cancel_webhook,
                    worker_lost_after=args.worker_lost_after,
                    metrics_listen=mlisten,
                    metrics_required=mrequired,
                    http_listen=args.http_listen,
                    submit_rate=args.rate_limit_submit,
                    cancel_rate=args.rate_limit_cancel,
                    max_pending_per_user=args.max_pending_per_user,
                    max_task_time=args.max_task_time,
                    journal_dir=str(home()),
                ),
                security,
            )
        )
        return 0
    if args.command == "worker":
        from cloudai.core.hardening import ContainerPolicy
        from cloudai.core.models import validate_worker_id
        from cloudai.core.resources import Resources
        from cloudai.worker.app import WorkerConfig, run_worker
        from cloudai.worker.telemetry import machine_capacity

        if problem := validate_worker_id(args.worker_id):
            raise InvalidArgument(problem)
        master = args.master or default_master()
        tls = None
        if args.join and not secure.join(home(), master, args.worker_id, args.join):
            logging.getLogger("cloudai.worker").info(
                "worker %s joined this cluster before: using its certificate", args.worker_id
            )
        if not args.insecure:
            tls = secure.worker_tls(home(), args.worker_id)
        state_dir = home() / f"worker-{args.worker_id}"
        machine = machine_capacity(state_dir)
        capacity = Resources(
            cpu=args.cpu if args.cpu is not None else machine.cpu,
            mem_gb=args.mem if args.mem is not None else machine.mem_gb,
            storage_gb=args.storage if args.storage is not None else machine.storage_gb,
        )
        gpu_ids = args.gpu_ids
        if gpu_ids is None and args.gpu is not None:
            gpu_ids = tuple(str(i) for i in range(args.gpu))
            if problem := validate_gpu_ids(gpu_ids):
                raise InvalidArgument(f"--gpu: {problem}")
        mlisten, mrequired = metrics_address(args.metrics_listen, DEFAULT_WORKER_METRICS)
        policy = ContainerPolicy(
            extra_caps=tuple(args.allow_cap),
            allowed_registries=tuple(args.allowed_registries),
            max_pids_limit=args.max_pids_limit,
        )
        if problems := policy.problems():
            raise InvalidArgument("; ".join(problems))
        cfg = WorkerConfig(
            worker_id=args.worker_id,
            master=master,
            listen=args.listen,
            runtime=args.runtime,
            capacity=capacity,
            state_dir=str(state_dir),
            advertise=args.advertise,
            heartbeat_interval=args.heartbeat_interval,
            metrics_listen=mlisten,
            metrics_required=mrequired,
            tls=tls,
            policy=policy,
            gpu_ids=gpu_ids,
            engine_deadline=args.engine_deadline,
        )
        asyncio.run(run_worker(cfg))
        return 0
    from cloudai.cli.up import run_up

    return run_up(args)


def _peer_listen(args: argparse.Namespace) -> str:
    """--worker-listen, else --listen's host on the default port for workers."""
    if args.worker_listen:
        return str(args.worker_listen)
    return f"{args.listen.rpartition(':')[0]}:{DEFAULT_PEER_PORT}"
