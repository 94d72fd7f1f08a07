"""`cloudai`: the one console entry point. The CLI edge of error translation lives here:
a CloudAIError becomes one line on stderr and its exit code; nothing prints a traceback."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from cloudai import __version__
from cloudai.cli import commands, secure
from cloudai.cli.queue_options import add_master_options, add_run_options, run_policy
from cloudai.cli.render import Renderer, one_line
from cloudai.client import Client, Credentials, default_master
from cloudai.config import (
    DEFAULT_MASTER_METRICS,
    DEFAULT_MASTER_PORT,
    DEFAULT_WORKER_METRICS,
    DEFAULT_WORKER_PORT,
    LOCAL_HTTP,
    LOCAL_MASTER_METRICS,
    LOCAL_WORKER_METRICS,
    home,
    metrics_address,
)
from cloudai.core.gpus import parse_gpu_ids, validate_gpu_ids
from cloudai.core.hardening import (
    DEFAULT_CAPS,
    DEFAULT_MAX_PIDS_LIMIT,
    DEFAULT_PIDS_LIMIT,
    normalize_cap,
    parse_registries,
)
from cloudai.core.limits import (
    CPU_MAX,
    CPU_MIN,
    GPU_MAX,
    GRACE_MAX,
    MEM_MAX_GB,
    STORAGE_MAX_GB,
    quote,
)
from cloudai.core.models import (
    DEFAULT_GRACE_SECONDS,
    STOP_SIGNALS,
    normalize_signal,
    validate_worker_id,
)
from cloudai.errors import CloudAIError, InvalidArgument

__all__ = ["build_parser", "main"]

_SERVER_COMMANDS = {"up", "master", "worker"}
_LOCAL_COMMANDS = {"certs"}  # files under $CLOUDAI_HOME only: no master needed
DEFAULT_PEER_PORT = 50053
DEFAULT_LS_LIMIT = 100  # `task ls` shows the newest this many unless told otherwise


def _client_options(parser: argparse.ArgumentParser, top: bool) -> None:
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    parser.add_argument(
        "--master",
        metavar="HOST:PORT",
        default=default(None),
        help="master address (default: $CLOUDAI_MASTER, else localhost:50051)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=["text", "json"],
        default=default("text"),
        help="output format (default: text)",
    )
    parser.add_argument(
        "--token",
        default=default(None),
        help="user token (default: $CLOUDAI_TOKEN, else $CLOUDAI_HOME/token); the CA comes "
        "from $CLOUDAI_CA, else $CLOUDAI_HOME/pki/ca.crt",
    )


def _number(kind: type, name: str, minimum: float = 0.0, maximum: float = math.inf):  # type: ignore[no-untyped-def]
    def parse(text: str) -> float:
        try:
            value: float = kind(text)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{name} must be {noun}, got {quote(text)}") from None
        if not math.isfinite(value) or value < minimum:  # NaN, infinity or below the minimum
            raise argparse.ArgumentTypeError(
                f"{name} must be at least {minimum:.15g}, got {quote(text)}"
                if math.isfinite(value)
                else f"{name} must be a finite number, got {quote(text)}"
            )
        if value > maximum:
            raise argparse.ArgumentTypeError(
                f"{name} must be at most {maximum:.15g}, got {quote(text)}"
            )
        return value

    return parse


def _checked(fn, name: str):  # type: ignore[no-untyped-def]
    """An argparse type from a core parser that raises ValueError with the reason."""

    def parse(text: str) -> Any:
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{name}: {exc}") from None

    return parse


_SIGNALS_HELP = "TERM, term, SIGTERM and 15 are the same; " + ", ".join(
    sorted(n.removeprefix("SIG") for n in STOP_SIGNALS)
)


def _stop_signal(text: str) -> str:
    try:
        return normalize_signal(text)
    except ValueError as exc:  # names the accepted signals
        raise argparse.ArgumentTypeError(str(exc)) from None


def _worker_check(args: argparse.Namespace) -> str | None:
    """`worker --id ID ...` runs a worker; `worker rm ID` removes one."""
    if args.action == "rm":
        if args.worker_id:
            return "worker rm takes the worker's ID, not --id: cloudai worker rm ID"
        return None if args.rm_id else "worker rm needs the worker's ID: cloudai worker rm ID"
    if args.rm_id is not None:
        return f"unrecognized arguments: {args.rm_id}"
    return None if args.worker_id else "the following arguments are required: --id"


def _worker_id(text: str) -> str:
    """--id: it names the worker's state directory, so it is checked before anything else."""
    if problem := validate_worker_id(text):
        raise argparse.ArgumentTypeError(problem)
    return text


def _metrics_option(parser: argparse.ArgumentParser, default: str, whose: str = "") -> None:
    parser.add_argument(
        "--metrics-listen",
        default=None,
        metavar="ADDR",
        help=f"where {whose}Prometheus /metrics is served (default: {default}; off: none)",
    )


def _log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="log format (default: text)"
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("CLOUDAI_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )


def _insecure_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext gRPC with no authentication: anyone who reaches the port can run "
        "containers. For development only",
    )


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `cloudai task run: error: ... (see --help)`, exit 2.

    Options must be spelled out (no `--work` for `--worker`): `task run` moves the options it
    knows out of the command, and an abbreviation would silently become part of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        # check(namespace) -> a usage error or None, once this (sub)command's arguments parsed
        self._check: Callable[[argparse.Namespace], str | None] | None = kwargs.pop("check", None)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        parsed, extras = super().parse_known_args(*args, **kwargs)
        if self._check is not None and (problem := self._check(parsed)) is not None:
            self.error(problem)
        return parsed, extras

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # argparse (before Python 3.13) drops a lone "--" given as an option's value
        # (`--name=--`) and leaves the option an empty list: take the value as written.
        if action.nargs is None and action.option_strings and arg_strings == ["--"]:
            return self._get_value(action, "--")
        return super()._get_values(action, arg_strings)

    def error(self, message: str) -> NoReturn:
        # argparse quotes the user's words raw: escape control characters (a newline or a
        # terminal escape in argv) and keep it short, so the error stays one plain line.
        message = one_line(message[:500]) + ("…" if len(message) > 500 else "")
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="cloudai",
        description="Run containers across a cluster of machines; watch and cancel them.",
    )
    p.add_argument("--version", action="version", version=f"cloudai {__version__}")
    _client_options(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

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

    ce = sub.add_parser("certs", help="the cluster PKI under $CLOUDAI_HOME/pki")
    csub = ce.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    ci = csub.add_parser(
        "init",
        help="create the cluster CA, the master's certificate and the first admin's token",
    )
    ci.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name or IP address for the master's certificate (repeatable)",
    )
    ci.add_argument("-o", "--output", choices=["text", "json"], default="text")
    cw = csub.add_parser("worker", help="issue the certificate of worker ID (needs the CA key)")
    cw.add_argument("worker_id", metavar="ID")
    cw.add_argument(
        "--out", default=None, metavar="DIR", help="write here (default: $CLOUDAI_HOME/pki)"
    )
    cw.add_argument("-o", "--output", choices=["text", "json"], default="text")

    us = sub.add_parser("user", help="users and their tokens (admin)")
    usub = us.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    ua = usub.add_parser("add", help="add a user; prints its token once")
    ua.add_argument("name", metavar="NAME")
    ua.add_argument("--admin", action="store_true", help="may act on every task and worker")
    _client_options(ua, top=False)
    ul = usub.add_parser("ls", help="list users")
    _client_options(ul, top=False)
    ur = usub.add_parser("rm", help="remove a user: its token stops working at once")
    ur.add_argument("name", metavar="NAME")
    _client_options(ur, top=False)

    jt = sub.add_parser(
        "join-token", help="a one-time token for a new worker machine to join (admin)"
    )
    jt.add_argument(
        "--ttl",
        type=_checked(secure.parse_duration, "--ttl"),
        default=3600.0,
        help="valid for, e.g. 90s, 15m, 1h, 2d (default: 1h)",
    )
    _client_options(jt, top=False)

    wh = sub.add_parser("whoami", help="the user your token stands for")
    _client_options(wh, top=False)

    s = sub.add_parser("shell", help="the interactive master> prompt")
    _client_options(s, top=False)

    r = sub.add_parser("register", help="register a worker by address (ManualRegisterWorker)")
    r.add_argument("worker_id", metavar="ID")
    r.add_argument("address", metavar="HOST:PORT")
    _client_options(r, top=False)

    ws = sub.add_parser("workers", help="list workers: state, capacity, allocated, available")
    _client_options(ws, top=False)

    dr = sub.add_parser("drain", help="stop placing new tasks on a worker (its tasks go on)")
    dr.add_argument("worker_id", metavar="WORKER")
    dr.add_argument(
        "--cancel", action="store_true", help="also cancel its tasks (asks first; --yes skips)"
    )
    dr.add_argument("-y", "--yes", action="store_true", help="with --cancel: do not ask")
    dr.add_argument("--reason", default="", metavar="TEXT", help="with --cancel: why")
    _client_options(dr, top=False)
    ud = sub.add_parser("undrain", help="let a drained worker take new tasks again")
    ud.add_argument("worker_id", metavar="WORKER")
    _client_options(ud, top=False)

    t = sub.add_parser("task", help="run, list and show tasks")
    tsub = t.add_subparsers(dest="task_command", metavar="ACTION", required=True)
    run = tsub.add_parser(
        "run",
        help="run a task",
        description="Run IMAGE (with CMD ARG..., else the image's own command). Options may "
        "come before or after the command; put `--` before a command whose own arguments "
        "look like these options.",
    )
    run.add_argument("image", metavar="IMAGE")
    # REMAINDER keeps a literal `--` inside the command (`git log -- README`); the command is
    # optional (an image's own command runs), which argparse cannot say of a REMAINDER itself.
    cmd = run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD ARG")
    cmd.required = False
    run.add_argument("--worker", default="", metavar="ID", help="run on this worker")
    run.add_argument(
        "--cpu",
        type=_number(float, "--cpu", 0, CPU_MAX),
        default=1.0,
        help=f"CPU cores, {CPU_MIN:.15g}-{CPU_MAX:.15g} (1)",
    )
    run.add_argument(
        "--mem",
        type=_number(float, "--mem", 0, MEM_MAX_GB),
        default=0.5,
        help="memory GB: 0 (no limit) or 0.01-65536 (0.5)",
    )
    run.add_argument(
        "--storage",
        type=_number(float, "--storage", 0, STORAGE_MAX_GB),
        default=0.0,
        help="storage GB (0)",
    )
    run.add_argument(
        "--gpu", type=_number(int, "--gpu", 0, GPU_MAX), default=0, help=f"GPUs, 0-{GPU_MAX} (0)"
    )
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="environment variable (repeatable)",
    )
    run.add_argument(
        "--secret-env",
        action="append",
        default=[],
        metavar="K=V",
        help="a secret environment variable (repeatable): given to the task, shown nowhere",
    )
    run.add_argument("--name", default="", help="a name for the task")
    run.add_argument(
        "--grace",
        type=_number(float, "--grace", 0, GRACE_MAX),
        default=None,
        metavar="SECONDS",
        help=f"stop grace period: seconds between the stop signal and SIGKILL, 0-3600 "
        f"(default {DEFAULT_GRACE_SECONDS:g}; 0: SIGKILL right after the signal)",
    )
    run.add_argument(
        "--stop-signal",
        type=_stop_signal,
        default="",
        metavar="SIG",
        help=f"the signal a stop sends first (default SIGTERM): {_SIGNALS_HELP}",
    )
    run.add_argument(
        "--pids-limit",
        type=_number(int, "--pids-limit", 1),
        default=0,
        metavar="N",
        help=f"most processes and threads in the task (default {DEFAULT_PIDS_LIMIT}; "
        "the worker refuses more than its --max-pids-limit)",
    )
    add_run_options(run)
    _client_options(run, top=False)
    ls = tsub.add_parser(
        "ls",
        help=f"list tasks (the newest {DEFAULT_LS_LIMIT}; --limit N, --all)",
        description=f"List tasks, oldest first: the newest {DEFAULT_LS_LIMIT} that match, unless "
        "--limit or --all says otherwise; a last line says how many older ones match too. "
        "-o json prints the same page as a list.",
    )
    ls.add_argument(
        "--status",
        default="",
        choices=["", "pending", "running", "completed", "failed", "cancelled"],
        help="pending: the queue in placement order, with each task's position and why it waits",
    )
    ls.add_argument("--worker", default="", metavar="ID")
    ls.add_argument("--owner", default="", metavar="USER", help="tasks submitted by USER")
    ls.add_argument("--cancelled-by", default="", metavar="USER", help="tasks cancelled by USER")
    size = ls.add_mutually_exclusive_group()
    size.add_argument(
        "--limit",
        type=_number(int, "--limit", 1),
        default=DEFAULT_LS_LIMIT,
        metavar="N",
        help=f"the newest N matching tasks (default {DEFAULT_LS_LIMIT})",
    )
    size.add_argument("--all", action="store_true", help="every matching task")
    _client_options(ls, top=False)
    show = tsub.add_parser("show", help="show a task: status, exit code, times, events")
    show.add_argument("task_id", metavar="TASK_ID")
    _client_options(show, top=False)

    lg = sub.add_parser("logs", help="print a task's output")
    lg.add_argument("task_id", metavar="TASK_ID")
    lg.add_argument("-f", "--follow", action="store_true", help="stream until the task ends")
    _client_options(lg, top=False)

    mon = sub.add_parser("monitor", help="watch a task until it ends (exit 0 if it completed)")
    mon.add_argument("task_id", metavar="TASK_ID")
    _client_options(mon, top=False)

    c = sub.add_parser(
        "cancel",
        help="cancel tasks: by ID, or every active task matching a filter",
        description="Cancel tasks. The master sets `cancelled` at once and frees the resources; "
        "the worker sends the stop signal, waits the grace period, then SIGKILL, and removes "
        "the container. With a filter, the matching pending and running tasks are listed and "
        "cancelled after confirmation (--yes skips it).",
    )
    c.add_argument("task_ids", nargs="*", metavar="TASK_ID")
    c.add_argument("--force", action="store_true", help="SIGKILL at once, no grace")
    c.add_argument(
        "--grace",
        type=_number(float, "--grace", 0, GRACE_MAX),
        default=None,
        metavar="SECONDS",
        help="grace period before SIGKILL (default: the task's own, 10 s unless set at submit)",
    )
    c.add_argument(
        "--stop-signal",
        type=_stop_signal,
        default="",
        metavar="SIG",
        help=f"the signal sent first (default: the task's own, SIGTERM unless set at submit): "
        f"{_SIGNALS_HELP}",
    )
    c.add_argument("--reason", default="", metavar="TEXT", help="why (kept in the audit trail)")
    c.add_argument("--worker", default="", metavar="ID", help="every active task on this worker")
    c.add_argument(
        "--status", default="", choices=["pending", "running"], help="every task in this state"
    )
    c.add_argument("--owner", default="", metavar="USER", help="every active task of this user")
    c.add_argument("--all", action="store_true", help="every active task")
    c.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    _client_options(c, top=False)
    return p


def _run_options(parser: argparse.ArgumentParser) -> tuple[frozenset[str], frozenset[str]]:
    """The option strings of `task run`, as its parser knows them: those that take a value,
    and those that do not (`-h`)."""
    for name in ("task", "run"):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    valued = [a for a in parser._actions if a.option_strings and a.nargs != 0]
    bare = [a for a in parser._actions if a.option_strings and a.nargs == 0]
    return (
        frozenset(o for a in valued for o in a.option_strings),
        frozenset(o for a in bare for o in a.option_strings),
    )


@functools.cache
def _default_run_options() -> tuple[frozenset[str], frozenset[str]]:
    return _run_options(build_parser())


def _split_run(argv: list[str], parser: argparse.ArgumentParser | None = None) -> list[str]:
    """Let `task run` take its options before or after the command: options its parser knows
    are moved before a `--`, everything else (IMAGE, CMD, ARG...) after it, in order."""
    try:
        start = next(i for i in range(len(argv) - 1) if argv[i : i + 2] == ["task", "run"]) + 2
    except StopIteration:
        return argv
    valued, bare = _default_run_options() if parser is None else _run_options(parser)
    options: list[str] = []
    positional: list[str] = []
    rest = argv[start:]
    i = 0
    while i < len(rest):
        tok = rest[i]
        name = tok.split("=", 1)[0]
        if tok == "--":
            positional.extend(rest[i + 1 :])
            break
        if tok in bare:
            options.append(tok)
        elif name in valued:
            if "=" in tok:
                options.append(tok)
            else:
                options.extend(rest[i : i + 2])
                i += 1
        else:
            positional.append(tok)
        i += 1
    return argv[:start] + options + ["--", *positional]


def client_dispatch(args: argparse.Namespace, client: Client, out: Renderer) -> int:
    cmd = args.command
    if cmd == "workers":
        return commands.workers(client, out)
    if cmd in ("drain", "undrain"):
        return commands.drain(
            client,
            out,
            args.worker_id,
            undo=cmd == "undrain",
            cancel_tasks=getattr(args, "cancel", False),
            yes=getattr(args, "yes", False),
            reason=getattr(args, "reason", ""),
        )
    if cmd == "register":
        return commands.register(client, out, args.worker_id, args.address)
    if cmd == "worker" and args.action == "rm":
        return commands.worker_rm(client, out, args.rm_id)
    if cmd == "user":
        if args.user_command == "add":
            return secure.user_add(client, out, args.name, args.admin)
        if args.user_command == "rm":
            return secure.user_rm(client, out, args.name)
        return secure.user_ls(client, out)
    if cmd == "join-token":
        return secure.join_token(client, out, args.ttl)
    if cmd == "whoami":
        return secure.whoami(client, out)
    if cmd == "task":
        if args.task_command == "run":
            return commands.task_run(
                client,
                out,
                args.image,
                args.cmd,
                worker=args.worker,
                cpu=args.cpu,
                mem=args.mem,
                storage=args.storage,
                gpu=args.gpu,
                env=args.env,
                secret_env=args.secret_env,
                name=args.name,
                grace=args.grace,
                stop_signal=args.stop_signal,
                pids_limit=args.pids_limit,
                policy=run_policy(args),
            )
        if args.task_command == "ls":
            return commands.task_ls(
                client,
                out,
                args.status,
                args.worker,
                args.owner,
                args.cancelled_by,
                limit=0 if args.all else args.limit,
            )
        return commands.task_show(client, out, args.task_id)
    if cmd == "logs":
        return commands.logs(client, out, args.task_id, args.follow)
    if cmd == "monitor":
        return commands.monitor(client, out, args.task_id)
    if cmd == "cancel":
        return commands.cancel(
            client,
            out,
            args.task_ids,
            selection=commands.Selection(args.worker, args.status, args.owner, args.all),
            force=args.force,
            grace=args.grace,
            reason=args.reason,
            yes=args.yes,
            stop_signal=args.stop_signal,
        )
    raise InvalidArgument(f"{cmd} is not available here")


def _shell_dispatcher(parser: argparse.ArgumentParser, client: Client, out: Renderer):  # type: ignore[no-untyped-def]
    def dispatch(tokens: list[str]) -> int:
        servers = _SERVER_COMMANDS | _LOCAL_COMMANDS | {"shell"}
        if tokens and tokens[0] in servers and tokens[:2] != ["worker", "rm"]:
            raise InvalidArgument(f"{tokens[0]} is not a shell command (type help)")
        try:
            args = parser.parse_args(_split_run(tokens, parser))
        except SystemExit as exc:  # argparse printed its usage line
            return int(exc.code or 0)
        output = getattr(args, "output", "json" if out.json_mode else "text")
        return client_dispatch(args, client, Renderer(output, out.console, interactive=True))

    return dispatch


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


def _local(args: argparse.Namespace, out: Renderer) -> int:
    if args.certs_command == "init":
        return secure.certs_init(home(), out, args.san)
    return secure.certs_worker(home(), out, args.worker_id, args.out)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(_split_run(argv, parser))
    out = Renderer(getattr(args, "output", "text") or "text")
    try:
        if args.command in _SERVER_COMMANDS and getattr(args, "action", None) != "rm":
            return _run_server(args)
        if args.command in _LOCAL_COMMANDS:
            return _local(args, out)
        with Client(args.master, credentials=Credentials.from_env(args.token)) as client:
            if args.command == "shell":
                from cloudai.cli.shell import run_shell

                client.ensure_reachable()
                return run_shell(client, out, _shell_dispatcher(parser, client, out))
            return client_dispatch(args, client, out)
    except CloudAIError as exc:
        out.error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the CLI edge: a bug is one line too, never a traceback
        out.error(commands.unexpected(exc))
        return CloudAIError.exit_code


def entry() -> None:
    logging.getLogger("grpc").setLevel(logging.ERROR)
    sys.exit(main())


if __name__ == "__main__":
    entry()
