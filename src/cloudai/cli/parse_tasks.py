"""The parser of the task commands: task run/ls/show, logs, monitor, cancel."""

from __future__ import annotations

import argparse
from typing import Any

from cloudai.cli.options import (
    _SIGNALS_HELP,
    DEFAULT_LS_LIMIT,
    _client_options,
    _number,
    _stop_signal,
)
from cloudai.cli.queue_options import add_run_options
from cloudai.core.hardening import DEFAULT_PIDS_LIMIT
from cloudai.core.limits import (
    CPU_MAX,
    CPU_MIN,
    GPU_MAX,
    GRACE_MAX,
    MEM_MAX_GB,
    STORAGE_MAX_GB,
)
from cloudai.core.models import DEFAULT_GRACE_SECONDS

__all__ = ["add_task_commands"]


def add_task_commands(sub: Any) -> None:
    """task run/ls/show, logs, monitor, cancel."""
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
        description="Cancel tasks. The master sets `cancelled` at once; the worker sends the "
        "stop signal, waits the grace period, then SIGKILL, and removes the container. The "
        "task's resources stay held until its container has exited. With a filter, the "
        "matching pending and running tasks are listed and cancelled after confirmation "
        "(--yes skips it).",
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
