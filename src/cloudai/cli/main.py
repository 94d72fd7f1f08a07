"""`cloudai`: the one console entry point. The CLI edge of error translation lives here:
a CloudAIError becomes one line on stderr and its exit code; nothing prints a traceback."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from cloudai import __version__
from cloudai.cli import commands
from cloudai.cli.render import Renderer, one_line
from cloudai.client import Client, default_master
from cloudai.config import (
    DEFAULT_MASTER_METRICS,
    DEFAULT_MASTER_PORT,
    DEFAULT_WORKER_METRICS,
    DEFAULT_WORKER_PORT,
    home,
    metrics_address,
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
from cloudai.core.models import validate_worker_id
from cloudai.errors import CloudAIError, InvalidArgument

__all__ = ["build_parser", "main"]

_RUN_VALUE_FLAGS = {
    "--worker",
    "--cpu",
    "--mem",
    "--storage",
    "--gpu",
    "--env",
    "--name",
    "--grace",
    "--stop-signal",
    "--master",
    "-o",
    "--output",
}
_SERVER_COMMANDS = {"up", "master", "worker"}


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


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `cloudai task run: error: ... (see --help)`, exit 2.

    Options must be spelled out (no `--work` for `--worker`): `task run` moves the options it
    knows out of the command, and an abbreviation would silently become part of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

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
        default=f"0.0.0.0:{DEFAULT_MASTER_PORT}",
        help="master listen address (default: 0.0.0.0:50051)",
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
    _metrics_option(up, DEFAULT_MASTER_METRICS, "the master's ")
    up.add_argument(
        "--worker-metrics-listen",
        default=None,
        metavar="ADDR",
        help=f"the local worker's /metrics (default: {DEFAULT_WORKER_METRICS}; off: none)",
    )
    _log_options(up)

    m = sub.add_parser("master", help="run the master server")
    m.add_argument(
        "--listen",
        default=f"0.0.0.0:{DEFAULT_MASTER_PORT}",
        help="listen address (default: 0.0.0.0:50051)",
    )
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
        help="a worker silent this long is lost: its running tasks end failed (default: 300)",
    )
    _metrics_option(m, DEFAULT_MASTER_METRICS)
    _log_options(m)

    w = sub.add_parser("worker", help="run a worker server")
    w.add_argument(
        "--id",
        required=True,
        dest="worker_id",
        type=_worker_id,
        help="worker ID: 1-63 letters, digits, '.', '_' or '-'",
    )
    w.add_argument(
        "--master",
        default=None,
        metavar="HOST:PORT",
        help="master address (default: $CLOUDAI_MASTER, else localhost:50051)",
    )
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
        help="container runtime (default: docker)",
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
    w.add_argument(
        "--gpu", type=_number(int, "--gpu", 0, GPU_MAX), help=f"GPUs, 0-{GPU_MAX} (default: 0)"
    )
    w.add_argument(
        "--heartbeat-interval",
        type=_number(float, "--heartbeat-interval", 0.05, 3600),
        default=5.0,
        help="seconds between heartbeats (default: 5)",
    )
    _metrics_option(w, DEFAULT_WORKER_METRICS)
    _log_options(w)

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
    run.add_argument("--name", default="", help="a name for the task")
    run.add_argument(
        "--grace",
        type=_number(float, "--grace", 0, GRACE_MAX),
        default=0.0,
        help="stop grace period in seconds, at most 3600 (default 10)",
    )
    run.add_argument("--stop-signal", default="", help="stop signal (default SIGTERM)")
    _client_options(run, top=False)
    ls = tsub.add_parser("ls", help="list tasks")
    ls.add_argument(
        "--status",
        default="",
        choices=["", "pending", "running", "completed", "failed", "cancelled"],
    )
    ls.add_argument("--worker", default="", metavar="ID")
    ls.add_argument("--owner", default="", metavar="USER", help="tasks submitted by USER")
    ls.add_argument("--cancelled-by", default="", metavar="USER", help="tasks cancelled by USER")
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


def _split_run(argv: list[str]) -> list[str]:
    """Let `task run` take its options before or after the command: options we know are
    moved before a `--`, everything else (IMAGE, CMD, ARG...) after it, in order."""
    try:
        start = next(i for i in range(len(argv) - 1) if argv[i : i + 2] == ["task", "run"]) + 2
    except StopIteration:
        return argv
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
        if tok in ("-h", "--help"):
            options.append(tok)
        elif name in _RUN_VALUE_FLAGS:
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
                name=args.name,
                grace=args.grace,
                stop_signal=args.stop_signal,
            )
        if args.task_command == "ls":
            return commands.task_ls(
                client, out, args.status, args.worker, args.owner, args.cancelled_by
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
        )
    raise InvalidArgument(f"{cmd} is not available here")


def _shell_dispatcher(parser: argparse.ArgumentParser, client: Client, out: Renderer):  # type: ignore[no-untyped-def]
    def dispatch(tokens: list[str]) -> int:
        if tokens and tokens[0] in _SERVER_COMMANDS | {"shell"}:
            raise InvalidArgument(f"{tokens[0]} is not a shell command (type help)")
        try:
            args = parser.parse_args(_split_run(tokens))
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
        from cloudai.master.cluster import MasterConfig
        from cloudai.store import default_sqlite_url

        db = args.db or default_sqlite_url(home())
        mlisten, mrequired = metrics_address(args.metrics_listen, DEFAULT_MASTER_METRICS)
        if args.cancel_webhook and not args.cancel_webhook.startswith(("http://", "https://")):
            raise InvalidArgument(
                f"--cancel-webhook must be an http(s) URL: {quote(args.cancel_webhook)}"
            )
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
                ),
            )
        )
        return 0
    if args.command == "worker":
        from cloudai.core.resources import Resources
        from cloudai.worker.app import WorkerConfig, run_worker
        from cloudai.worker.telemetry import machine_capacity

        state_dir = home() / f"worker-{args.worker_id}"
        machine = machine_capacity(state_dir)
        capacity = Resources(
            cpu=args.cpu if args.cpu is not None else machine.cpu,
            mem_gb=args.mem if args.mem is not None else machine.mem_gb,
            storage_gb=args.storage if args.storage is not None else machine.storage_gb,
            gpu=args.gpu if args.gpu is not None else machine.gpu,
        )
        mlisten, mrequired = metrics_address(args.metrics_listen, DEFAULT_WORKER_METRICS)
        cfg = WorkerConfig(
            worker_id=args.worker_id,
            master=args.master or default_master(),
            listen=args.listen,
            runtime=args.runtime,
            capacity=capacity,
            state_dir=str(state_dir),
            advertise=args.advertise,
            heartbeat_interval=args.heartbeat_interval,
            metrics_listen=mlisten,
            metrics_required=mrequired,
        )
        asyncio.run(run_worker(cfg))
        return 0
    from cloudai.cli.up import run_up

    return run_up(args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(_split_run(argv))
    out = Renderer(getattr(args, "output", "text") or "text")
    try:
        if args.command in _SERVER_COMMANDS:
            return _run_server(args)
        with Client(args.master) as client:
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
