"""The command layer shared by `cloudai <subcommand>` and the master> shell.

Each command takes a Client and a Renderer and returns an exit code; errors propagate as
CloudAIError to the edge (cli/main.py or the shell loop), which prints one line."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from cloudai.cli.render import Renderer
from cloudai.client import Client
from cloudai.core.lifecycle import TERMINAL
from cloudai.core.models import TaskSpec, validate_address, validate_worker_id
from cloudai.core.resources import Resources
from cloudai.errors import CloudAIError, InvalidArgument

__all__ = [
    "cancel",
    "logs",
    "monitor",
    "parse_env",
    "register",
    "task_ls",
    "task_run",
    "task_show",
    "workers",
]


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid --env {pair!r}: expected KEY=VALUE")
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
    name: str = "",
    grace: float = 0.0,
    stop_signal: str = "",
) -> int:
    spec = TaskSpec(
        image=image,
        command=tuple(command),
        env=parse_env(env),
        resources=Resources(cpu=cpu, mem_gb=mem, storage_gb=storage, gpu=gpu),
        name=name,
        worker_id=worker,
        grace_seconds=grace,
        stop_signal=stop_signal,
    )
    problems = spec.problems()
    if problems:
        raise InvalidArgument("; ".join(problems))
    out.task_submitted(client.submit(spec))
    return 0


def task_ls(client: Client, out: Renderer, status: str = "", worker: str = "") -> int:
    out.tasks_table(client.list_tasks(status=status, worker_id=worker))
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


def cancel(client: Client, out: Renderer, task_ids: Sequence[str]) -> int:
    """Cancel each task; exit 0 only when every one is cancelled (or already was)."""
    code = 0
    results = []
    for task_id in task_ids:
        try:
            message = client.cancel(task_id)
        except CloudAIError as exc:  # each ID gets its own outcome line
            code = code or exc.exit_code
            results.append({"task_id": task_id, "success": False, "message": exc.message})
            if not out.json_mode:
                out.error(f"{task_id}: {exc.message}")
            continue
        results.append({"task_id": task_id, "success": True, "message": message})
        if not out.json_mode:
            out.ok(message)
    if out.json_mode:
        out.emit_json(results if len(results) != 1 else results[0])
    return code


def logs(client: Client, out: Renderer, task_id: str, follow: bool = False) -> int:
    for data in client.logs(task_id, follow=follow):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0


def monitor(client: Client, out: Renderer, task_id: str, interval: float = 1.0) -> int:
    """Watch a task until it ends; exit 0 when it completed, 1 when it failed or was cancelled."""
    from rich.live import Live

    task = client.get_task(task_id)
    if out.json_mode:
        while task.status not in TERMINAL:
            time.sleep(interval)
            task = client.get_task(task_id)
        out.task_detail(task)
        return 0 if task.status.value == "completed" else 1
    with Live(console=out.console, refresh_per_second=4, transient=False) as live:
        while True:
            live.update(out.monitor_view(task, _tail(client, task_id)))
            if task.status in TERMINAL:
                break
            time.sleep(interval)
            task = client.get_task(task_id)
    return 0 if task.status.value == "completed" else 1


def _tail(client: Client, task_id: str, lines: int = 10) -> str:
    try:
        data = b"".join(client.logs(task_id, follow=False))
    except Exception:  # logs are a nicety in the monitor view; the status is what matters
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])
