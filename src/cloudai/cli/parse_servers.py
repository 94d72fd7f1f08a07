"""The parser of the commands that run servers: up, master, worker."""

from __future__ import annotations

from typing import Any

from cloudai.cli.options import (
    DEFAULT_PEER_PORT,
    _checked,
    _client_options,
    _insecure_option,
    _log_options,
    _metrics_option,
    _number,
    _worker_check,
    _worker_id,
)
from cloudai.cli.queue_options import add_master_options
from cloudai.config import (
    DEFAULT_MASTER_METRICS,
    DEFAULT_MASTER_PORT,
    DEFAULT_WORKER_METRICS,
    DEFAULT_WORKER_PORT,
    LOCAL_HTTP,
    LOCAL_MASTER_METRICS,
    LOCAL_WORKER_METRICS,
)
from cloudai.core.gpus import parse_gpu_ids
from cloudai.core.hardening import (
    DEFAULT_CAPS,
    DEFAULT_MAX_PIDS_LIMIT,
    normalize_cap,
    parse_registries,
)
from cloudai.core.limits import (
    CPU_MAX,
    CPU_MIN,
    GPU_MAX,
    MEM_MAX_GB,
    STORAGE_MAX_GB,
)

__all__ = ["add_server_commands"]


def add_server_commands(sub: Any) -> None:
    """up, master, worker."""
    up = sub.add_parser("up", help="start a local cluster: master (SQLite) + one worker + shell")
    up.add_argument(
        "--listen",
        default=f"127.0.0.1:{DEFAULT_MASTER_PORT}",
        help="master listen address (default: 127.0.0.1:50051); workers call it on the same "
        f"host, port {DEFAULT_PEER_PORT}",
    )
    up.add_argument(
        "--worker-listen",
        default=f"127.0.0.1:{DEFAULT_WORKER_PORT}",
        help="local worker listen address (default: 127.0.0.1:50052)",
    )
    up.add_argument(
        "--worker-id",
        default="worker-1",
        type=_worker_id,
        help="local worker ID (default: worker-1)",
    )
    up.add_argument("--db", help="database URL (default: SQLite in $CLOUDAI_HOME)")
    up.add_argument(
        "--runtime",
        choices=["auto", "docker", "process"],
        default="auto",
        help="auto: Docker when an engine answers, else process (default: auto)",
    )
    up.add_argument("--no-shell", action="store_true", help="serve until interrupted, no shell")
    _insecure_option(up)
    _metrics_option(up, LOCAL_MASTER_METRICS, "the master's ")
    up.add_argument(
        "--worker-metrics-listen",
        default=None,
        metavar="ADDR",
        help=f"the local worker's /metrics (default: {LOCAL_WORKER_METRICS}; off: none)",
    )
    up.add_argument(
        "--http-listen",
        default=None,
        metavar="ADDR",
        help=f"the web console and HTTP API (default: {LOCAL_HTTP}; off: none)",
    )
    _log_options(up)

    m = sub.add_parser("master", help="run the master server")
    m.add_argument(
        "--listen",
        default=f"0.0.0.0:{DEFAULT_MASTER_PORT}",
        help="listen address for the CLI and API: TLS and user tokens (default: 0.0.0.0:50051)",
    )
    m.add_argument(
        "--worker-listen",
        default=None,
        metavar="ADDR",
        help=f"listen address for workers: mutual TLS (default: --listen's host, port "
        f"{DEFAULT_PEER_PORT}); workers learn it from the master",
    )
    _insecure_option(m)
    m.add_argument(
        "--rate-limit-submit",
        type=_number(float, "--rate-limit-submit"),
        default=200.0,
        metavar="PER_SEC",
        help="submits per user and second, in bursts of twice as many (default: 200; 0: off)",
    )
    m.add_argument(
        "--rate-limit-cancel",
        type=_number(float, "--rate-limit-cancel"),
        default=200.0,
        metavar="PER_SEC",
        help="cancels per user and second, in bursts of twice as many (default: 200; 0: off)",
    )
    m.add_argument(
        "--max-pending-per-user",
        type=_number(int, "--max-pending-per-user", 1),
        default=10_000,
        metavar="N",
        help="pending tasks one user may have (default: 10000)",
    )
    add_master_options(m)
    m.add_argument(
        "--db",
        help="database URL: sqlite:///PATH or postgresql://USER@HOST/DB "
        "(default: SQLite in $CLOUDAI_HOME)",
    )
    m.add_argument(
        "--heartbeat-interval",
        type=_number(float, "--heartbeat-interval", 0.05, 3600),
        default=5.0,
        help="expected worker heartbeat interval, seconds (default: 5)",
    )
    m.add_argument(
        "--cancel-deadline",
        type=_number(float, "--cancel-deadline", 0.1, 3600),
        default=30.0,
        metavar="SECONDS",
        help="deadline of the CancelTask call to a worker (default: 30); a cancel itself "
        "answers at once and queues the stop when the worker is slow",
    )
    m.add_argument(
        "--cancel-webhook",
        default="",
        metavar="URL",
        help="POST each cancellation (requested, confirmed) as JSON to URL",
    )
    m.add_argument(
        "--worker-lost-after",
        type=_number(float, "--worker-lost-after", 1.0, 30 * 86400),
        default=300.0,
        metavar="SECONDS",
        help="a worker silent this long is lost: its running tasks end failed; counted from "
        "its last heartbeat or this master's start, whichever is later, so a restarted master "
        "gives every worker this long to reach it (default: 300)",
    )
    _metrics_option(m, DEFAULT_MASTER_METRICS)
    m.add_argument(
        "--http-listen",
        default="",
        metavar="ADDR",
        help="serve the web console and the HTTP API (/api/v1/) on ADDR, HTTPS with the "
        "cluster's certificate (default: off)",
    )
    _log_options(m)

    w = sub.add_parser(
        "worker",
        help="run a worker server (worker --id ID), or remove one (worker rm ID)",
        usage="%(prog)s --id ID [options]\n       %(prog)s rm ID [--master HOST:PORT] [-o json]",
        description="`cloudai worker --id ID ...` runs the worker ID on this machine. "
        "`cloudai worker rm ID` (admins) forgets worker ID: it is no longer listed or given "
        "tasks; its finished tasks keep their history. It is refused (exit 5) while a task is "
        "active on it. A worker still running registers itself again at its next heartbeat: "
        "stop it first.",
        check=_worker_check,
    )
    w.add_argument(
        "action", nargs="?", choices=["rm"], metavar="rm", help="remove worker ID (admins)"
    )
    w.add_argument("rm_id", nargs="?", metavar="ID", help="with rm: the worker to remove")
    w.add_argument(
        "--id",
        dest="worker_id",
        metavar="ID",
        type=_worker_id,
        help="the ID of the worker to run (required): 1-63 letters, digits, '.', '_' or '-'",
    )
    w.add_argument(
        "--join",
        default="",
        metavar="TOKEN",
        help="join the cluster with a join token (`cloudai join-token`): check the master "
        "against the CA it pins, get this worker's certificate, keep it in $CLOUDAI_HOME/pki",
    )
    _insecure_option(w)
    _client_options(w, top=False)  # --master for both; -o and --token for rm
    w.add_argument(
        "--listen",
        default=f"0.0.0.0:{DEFAULT_WORKER_PORT}",
        help="listen address (default: 0.0.0.0:50052; port 0 picks a free one)",
    )
    w.add_argument(
        "--advertise",
        default="",
        metavar="HOST:PORT",
        help="address the master dials (default: this host's name and the port)",
    )
    w.add_argument(
        "--runtime",
        choices=["docker", "process"],
        default="docker",
        help="container runtime (default: docker; process: no isolation, docs/containers.md)",
    )
    w.add_argument(
        "--cpu",
        type=_number(float, "--cpu", CPU_MIN, CPU_MAX),
        help=f"CPU cores, {CPU_MIN:.15g}-{CPU_MAX:.15g} (default: all)",
    )
    w.add_argument(
        "--mem",
        type=_number(float, "--mem", 0, MEM_MAX_GB),
        help=f"memory GB, at most {MEM_MAX_GB:.15g} (default: all)",
    )
    w.add_argument(
        "--storage",
        type=_number(float, "--storage", 0, STORAGE_MAX_GB),
        help=f"storage GB, at most {STORAGE_MAX_GB:.15g} (default: free disk)",
    )
    gpus = w.add_mutually_exclusive_group()
    gpus.add_argument(
        "--gpu-ids",
        type=_checked(parse_gpu_ids, "--gpu-ids"),
        metavar="ID,ID...",
        help="its GPUs, by NVML index or UUID (0,1 or GPU-...): overrides detection "
        "(default: the NVIDIA GPUs NVML finds, else none)",
    )
    gpus.add_argument(
        "--gpu",
        type=_number(int, "--gpu", 0, GPU_MAX),
        metavar="N",
        help=f"short for --gpu-ids 0,...,N-1 (N at most {GPU_MAX})",
    )
    w.add_argument(
        "--heartbeat-interval",
        type=_number(float, "--heartbeat-interval", 0.05, 3600),
        default=5.0,
        help="seconds between heartbeats (default: 5)",
    )
    w.add_argument(
        "--max-pids-limit",
        type=_number(int, "--max-pids-limit", 1),
        default=DEFAULT_MAX_PIDS_LIMIT,
        metavar="N",
        help=f"the highest --pids-limit a task may ask for; more is refused "
        f"(default: {DEFAULT_MAX_PIDS_LIMIT})",
    )
    w.add_argument(
        "--allow-cap",
        action="append",
        default=[],
        type=_checked(normalize_cap, "--allow-cap"),
        metavar="CAP",
        help=f"add a Linux capability to every container of this worker (repeatable); "
        f"they always keep {', '.join(DEFAULT_CAPS)} (docs/containers.md)",
    )
    w.add_argument(
        "--engine-deadline",
        type=_number(float, "--engine-deadline", 0.1, 3600),
        default=30.0,
        metavar="SECONDS",
        help="deadline of each engine call of a stop (signal, kill, remove) (default: 30); "
        "one that does not answer in time is reported as a failed stop, the worker goes on",
    )
    w.add_argument(
        "--allowed-registries",
        type=_checked(parse_registries, "--allowed-registries"),
        default=(),
        metavar="LIST",
        help="run only images from these registries, comma-separated (docker.io,"
        "registry.local:5000); a name without a registry host is docker.io (default: any)",
    )
    _metrics_option(w, DEFAULT_WORKER_METRICS)
    _log_options(w)
