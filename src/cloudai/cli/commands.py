"""The command layer shared by `cloudai <subcommand>` and the master> shell.

Each command takes a Client and a Renderer and returns an exit code; errors propagate as
CloudAIError to the edge (cli/main.py or the shell loop), which prints one line."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cloudai.cli.render import Renderer, log_tail, worker_json
from cloudai.client import Client
from cloudai.core.lifecycle import TERMINAL
from cloudai.core.limits import quote
from cloudai.core.models import Task, TaskSpec, validate_address, validate_worker_id
from cloudai.core.policy import RunPolicy
from cloudai.core.resources import Resources
from cloudai.errors import CloudAIError, InvalidArgument

__all__ = [
    "Selection",
    "cancel",
    "drain",
    "logs",
    "monitor",
    "parse_env",
    "register",
    "task_ls",
    "task_run",
    "task_show",
    "worker_rm",
    "unexpected",
    "workers",
]


def unexpected(exc: BaseException) -> str:
    """One line for an error that is not a CloudAIError (a bug), at the CLI and shell edges."""
    return f"internal error: {type(exc).__name__}: {quote(str(exc), 200)} (a bug: please report it)"


def parse_env(pairs: Sequence[str], flag: str = "--env") -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            if flag != "--env":  # a secret is never repeated, whatever part of it went wrong
                raise InvalidArgument(f"invalid {flag} (value not shown): expected KEY=VALUE")
            raise InvalidArgument(f"invalid {flag} {quote(pair)}: expected KEY=VALUE")
        env[key] = value
    return env


def task_run(
    client: Client,
    out: Renderer,
    image: str,
    command: Sequence[str] = (),
    *,
    worker: str = "",
    cpu: float = 1.0,
    mem: float = 0.5,
    storage: float = 0.0,
    gpu: int = 0,
    env: Sequence[str] = (),
    secret_env: Sequence[str] = (),
    name: str = "",
    grace: float | None = None,
    stop_signal: str = "",
    pids_limit: int = 0,
    policy: RunPolicy | None = None,
) -> int:
    spec = TaskSpec(
        image=image,
        command=tuple(command),
        env=parse_env(env),
        secret_env=parse_env(secret_env, "--secret-env"),
        resources=Resources(cpu=cpu, mem_gb=mem, storage_gb=storage, gpu=gpu),
        name=name,
        worker_id=worker,
        grace_seconds=grace,
        stop_signal=stop_signal,
        pids_limit=pids_limit,
    )
    if policy is not None:
        spec = dataclasses.replace(
            spec,
            timeout_seconds=policy.timeout_seconds,
            retries=policy.retries,
            retry_on_timeout=policy.retry_on_timeout,
            priority=policy.priority,
            preemptible=policy.preemptible,
        )
    problems = spec.problems()
    if problems:
        raise InvalidArgument("; ".join(problems))
    out.task_submitted(client.submit(spec))
    return 0


def task_ls(
    client: Client,
    out: Renderer,
    status: str = "",
    worker: str = "",
    owner: str = "",
    cancelled_by: str = "",
    *,
    limit: int = 0,
) -> int:
    """The newest `limit` matching tasks (0: all), how many older ones were left out, and how
    many of other users' the caller may not see."""
    page = client.list_tasks_page(status, worker, owner, cancelled_by, limit=limit)
    out.tasks_table(page.tasks)
    if page.hidden and not out.json_mode:
        out.console.print(
            f"{page.hidden} matching task(s) of other users not shown (only admins see every task)"
        )
    if page.more and not out.json_mode:
        out.console.print(
            f"… {page.more:,} more (older) task(s) match: --limit N or --all to see them"
        )
    return 0


def task_show(client: Client, out: Renderer, task_id: str) -> int:
    out.task_detail(client.get_task(task_id))
    return 0


def workers(client: Client, out: Renderer) -> int:
    out.workers_table(client.list_workers())
    return 0


def register(client: Client, out: Renderer, worker_id: str, address: str) -> int:
    for problem in (validate_worker_id(worker_id), validate_address(address)):
        if problem:
            raise InvalidArgument(problem)
    out.worker_registered(client.register(worker_id, address))
    return 0


def worker_rm(client: Client, out: Renderer, worker_id: str) -> int:
    """Forget a worker that runs no active task (admins)."""
    if problem := validate_worker_id(worker_id):
        raise InvalidArgument(problem)
    worker = client.remove_worker(worker_id)
    if out.json_mode:
        out.emit_json(worker_json(worker))
    else:
        out.ok(f"worker {worker_id} removed: no longer listed or given tasks")
    return 0


def drain(
    client: Client,
    out: Renderer,
    worker_id: str,
    undo: bool = False,
    cancel_tasks: bool = False,
    yes: bool = False,
    reason: str = "",
) -> int:
    """Stop (undo: resume) placing tasks on a worker; with cancel_tasks, cancel its tasks too."""
    if problem := validate_worker_id(worker_id):
        raise InvalidArgument(problem)
    if undo and cancel_tasks:
        raise InvalidArgument("--cancel goes with drain, not undrain")
    worker = client.drain(worker_id, drain=not undo)
    verb = "undrained: it takes new tasks again" if undo else "drained: it takes no new tasks"
    if out.json_mode and not cancel_tasks:
        out.emit_json(worker_json(worker))
        return 0
    if not out.json_mode:
        out.ok(f"worker {worker_id} {verb} ({len(worker.running_tasks)} task(s) running)")
    if not cancel_tasks:
        return 0
    return cancel(
        client,
        out,
        [],
        selection=Selection(worker=worker_id),
        reason=reason or f"drain {worker_id}",
        yes=yes,
    )


@dataclass(frozen=True)
class Selection:
    """Which tasks a bulk cancel takes: active tasks matching every filter given."""

    worker: str = ""
    status: str = ""  # pending | running; empty: both
    owner: str = ""
    all: bool = False

    @property
    def given(self) -> bool:
        return bool(self.worker or self.status or self.owner or self.all)

    def describe(self) -> str:
        parts = [
            f"{k}={v}"
            for k, v in (("worker", self.worker), ("status", self.status), ("owner", self.owner))
            if v
        ]
        return ", ".join(parts) or "all active tasks"


def cancel(
    client: Client,
    out: Renderer,
    task_ids: Sequence[str],
    *,
    selection: Selection | None = None,
    force: bool = False,
    grace: float | None = None,
    reason: str = "",
    yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
    stop_signal: str = "",
) -> int:
    """Cancel tasks by ID, or every active task a selection matches (after confirmation).
    Exit 0 only when each one is cancelled (or already was)."""
    selection = selection or Selection()
    if task_ids and selection.given:
        raise InvalidArgument(
            "give task IDs or a filter (--worker/--status/--owner/--all), not both"
        )
    if not task_ids and not selection.given:
        raise InvalidArgument(
            "nothing to cancel: give TASK_IDs, or --worker, --status, --owner or --all"
        )
    if selection.status and selection.status not in ("pending", "running"):
        raise InvalidArgument(f"--status must be pending or running, got {quote(selection.status)}")
    if force and grace is not None:
        raise InvalidArgument("--force and --grace do not go together (--force means no grace)")
    if force and stop_signal:
        raise InvalidArgument(
            "--force and --stop-signal do not go together (--force means SIGKILL at once)"
        )
    ids = list(dict.fromkeys(task_ids))
    if selection.given:  # a user's bulk cancel leaves other users' tasks alone, and says so
        chosen: list[Task] = []
        hidden = 0
        for status in [selection.status] if selection.status else ["pending", "running"]:
            found, n = client.list_tasks_counted(
                status=status, worker_id=selection.worker, owner=selection.owner
            )
            chosen += found
            hidden += n
        skipped = (
            f"{hidden} task(s) of other users skipped: only their owners or an admin may "
            "cancel them"
        )
        if not chosen:
            out.ok(
                f"no active tasks {'of yours ' if hidden else ''}match ({selection.describe()}): "
                f"nothing to cancel{f' ({skipped})' if hidden else ''}",
                {"cancelled": [], "skipped": hidden},
            )
            return 0
        if not out.json_mode:
            out.console.print(f"About to cancel {len(chosen)} task(s) ({selection.describe()}):")
            out.tasks_table(chosen)
            if hidden:
                out.console.print(skipped)
        if not yes and not (confirm or _ask)(f"Cancel these {len(chosen)} task(s)? [y/N] "):
            raise InvalidArgument(
                f"not confirmed: {len(chosen)} task(s) left running (use --yes in scripts)"
            )
        ids = [t.task_id for t in chosen]
    acks = client.cancel_many(ids, force=force, grace=grace, reason=reason, stop_signal=stop_signal)
    code = next((a.exit_code for a in acks if not a.success), 0)
    if out.json_mode:
        rows = [dataclasses.asdict(a) for a in acks]
        out.emit_json(rows[0] if len(rows) == 1 and task_ids else rows)
        return code
    for a in acks:
        if out.interactive:
            out.cancel_box(a.task_id)
        if a.success:
            lead = "Task cancelled successfully! " if out.interactive and not a.already else ""
            out.ok(lead + a.message)
        else:
            out.error(f"Failed to cancel task {a.task_id}: {a.message}")
    if len(acks) > 1:
        done = sum(a.success and not a.already for a in acks)
        already = sum(a.already for a in acks)
        failed = sum(not a.success for a in acks)
        out.console.print(f"{done} cancelled, {already} already cancelled, {failed} failed")
    return code


def _ask(prompt: str) -> bool:
    if not sys.stdin.isatty():
        raise InvalidArgument("refusing to cancel without confirmation: add --yes")
    try:
        return input(prompt).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def logs(client: Client, out: Renderer, task_id: str, follow: bool = False) -> int:
    for data in client.logs(task_id, follow=follow):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0


def monitor(client: Client, out: Renderer, task_id: str, interval: float = 1.0) -> int:
    """Watch a task until it ends; exit 0 when it completed, 1 when it failed or was cancelled."""
    from rich.live import Live

    task = client.get_task(task_id)
    settled_by = None  # a decided status waits (a while) for the real end: the result

    def over(t: Task) -> bool:
        nonlocal settled_by
        if t.status not in TERMINAL:
            return False
        settled_by = settled_by or time.monotonic() + 30
        return t.result is not None or time.monotonic() > settled_by

    if out.json_mode:
        while not over(task):
            time.sleep(interval)
            task = client.get_task(task_id)
        out.task_detail(task)
        return 0 if task.status.value == "completed" else 1
    with Live(console=out.console, refresh_per_second=4, transient=False) as live:
        while True:
            live.update(out.monitor_view(task, _tail(client, task_id)))
            if over(task):
                break
            time.sleep(interval)
            task = client.get_task(task_id)
    out.outcome(task)
    return 0 if task.status.value == "completed" else 1


def _tail(client: Client, task_id: str, lines: int = 10) -> str:
    try:
        data = b"".join(client.logs(task_id, follow=False))
    except CloudAIError:  # logs are a nicety in the monitor view; the status is what matters
        return ""
    return log_tail(data.decode("utf-8", errors="replace"), lines).text
