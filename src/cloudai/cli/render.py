"""All output of the CLI and the shell. Only this module knows about Rich."""

from __future__ import annotations

import json
import shlex
import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cloudai.cli.render_queue import attempts_table, is_queue, policy_rows, queue_table
from cloudai.cli.shapes import (
    LOG_TAIL_BYTES,
    LOG_TAIL_LINES,
    LogTail,
    gpu_json,
    iso,
    log_tail,
    one_line,
    task_json,
    worker_json,
)
from cloudai.core.models import Cancellation, Task, TaskResult, Worker

__all__ = [
    "LOG_TAIL_BYTES",
    "LOG_TAIL_LINES",
    "LogTail",
    "Renderer",
    "gpu_json",
    "iso",
    "log_tail",
    "one_line",
    "task_json",
    "worker_json",
]

STATUS_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}
STATE_STYLE = {"healthy": "green", "unhealthy": "yellow", "offline": "red"}


def _gpu_cell(w: Worker) -> Text:
    """GPU column: allocated/capacity, and the devices flagged busy."""
    a, c = w.allocated.gpu, w.capacity.gpu
    cell = Text(f"{a}/{c}" + (f" ({w.available.gpu})" if c else ""))
    busy = [g.gpu_id for g in w.gpus if g.busy]
    if busy:
        cell.append(f" busy: {','.join(busy)}", style="yellow")
    return cell


def _usage(t: Task) -> str:
    if t.cpu_percent is None or t.mem_used_gb is None or t.status.value != "running":
        return "-"
    return f"{t.cpu_percent:.0f}% CPU, {t.mem_used_gb * 1024:.0f} MiB"


def _age(ts: float | None, now: float) -> str:
    if not ts:
        return "never"
    s = max(now - ts, 0)
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago"


def _stop_of(t: Task) -> str:
    default = " (default)" if t.spec.grace_seconds is None else ""
    return f"{t.spec.signal}, then SIGKILL after {t.spec.grace:g}s{default}"


def _duration(t: Task, now: float) -> str:
    if not t.started_at:
        return "-"
    end = t.completed_at or now
    return f"{max(end - t.started_at, 0):.1f}s"


class Renderer:
    def __init__(
        self, output: str = "text", console: Console | None = None, interactive: bool = False
    ) -> None:
        self.json_mode = output == "json"
        self.interactive = interactive  # the master> shell: the spec's boxed outcomes
        self.console = console or Console(
            highlight=False, width=None if sys.stdout.isatty() else 160
        )
        self.err = Console(stderr=True, highlight=False)

    def emit_json(self, obj: Any) -> None:
        sys.stdout.write(json.dumps(obj, indent=2) + "\n")
        sys.stdout.flush()

    def error(self, message: str) -> None:
        if self.json_mode:
            sys.stderr.write(json.dumps({"error": message}) + "\n")
        else:
            self.err.print(Text("✗ Error: " + one_line(message), style="red"), soft_wrap=True)

    def outcome(self, task: Task) -> None:
        """One line: how the task ended."""
        code = "" if task.exit_code is None else f" (exit code {task.exit_code})"
        why = f": {task.reason}" if task.reason and task.status.value != "completed" else ""
        style = STATUS_STYLE.get(task.status.value, "")
        mark = "✓" if task.status.value == "completed" else "✗"
        self.console.print(
            Text(f"{mark} {task.task_id} {task.status.value}{code}{why}", style=style)
        )

    def cancel_box(self, task_id: str) -> None:
        """The spec's CANCELLING TASK block, in the shell."""
        rule = "─" * 40
        self.console.print(f"{rule}\n   CANCELLING TASK\n{rule}\n  Task ID: {task_id}\n{rule}")

    def ok(self, message: str, data: dict[str, Any] | None = None) -> None:
        if self.json_mode:
            self.emit_json({"ok": True, "message": message, **(data or {})})
        else:
            self.console.print(Text("✓ " + message, style="green"))

    def task_submitted(self, task: Task) -> None:
        if self.json_mode:
            self.emit_json(task_json(task))
            return
        where = f"on {task.worker_id}" if task.worker_id else "waiting for room"
        self.console.print(
            Text(f"✅ Task {task.task_id} submitted ({task.status.value}, {where})", style="green")
        )

    def task_detail(self, task: Task) -> None:
        if self.json_mode:
            self.emit_json(task_json(task))
            return
        now = time.time()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        style = STATUS_STYLE.get(task.status.value, "")
        rows: list[tuple[str, Text | str]] = [
            ("Task ID", task.task_id),
            ("Status", Text(task.status.value, style=style)),
            ("Worker", task.worker_id or "-"),
            ("Image", task.spec.image),
            ("Command", shlex.join(task.spec.command) or "(image default)"),
            ("Request", str(task.spec.resources)),
            ("Stop", _stop_of(task)),
            *([("GPUs", ", ".join(task.gpu_ids))] if task.gpu_ids else []),
            ("Owner", task.spec.owner or "-"),
            ("Exit code", "-" if task.exit_code is None else str(task.exit_code)),
            ("Created", iso(task.created_at) or "-"),
            ("Started", iso(task.started_at) or "-"),
            ("Completed", iso(task.completed_at) or "-"),
            ("Run time", _duration(task, now)),
        ]
        if task.status.value == "running":
            rows.append(("CPU / memory", _usage(task)))
        if task.spec.pids_limit:
            rows.insert(6, ("PIDs limit", str(task.spec.pids_limit)))
        if task.spec.name:
            rows.insert(1, ("Name", task.spec.name))
        rows.extend(policy_rows(task))
        if task.reason:
            rows.append(("Reason", task.reason))
        if task.oom_killed:
            rows.append(("OOM", Text("killed: over its memory limit", style="red")))
        for key, value in rows:
            grid.add_row(key, value)
        parts: list[Any] = [grid]
        if task.events:
            ev = Table(title="Events", show_edge=False, header_style="bold")
            for col in ("At", "Event", "By", "Detail"):
                ev.add_column(col)
            for e in task.events:
                ev.add_row(iso(e.at) or "", e.kind, e.actor, e.message)
            parts.append(ev)
        if task.attempts:
            parts.append(attempts_table(task))
        if task.cancellation is not None:
            parts.append(self._cancellation(task.cancellation))
        if task.result is not None:
            parts.append(self._result_logs(task, task.result))
        self.console.print(Panel(Group(*parts), title=f"Task {task.task_id}", expand=False))

    @staticmethod
    def _cancellation(c: Cancellation) -> Group:
        """The record and the reality: what was decided, and how far the stop has got."""
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        asked = f"{c.requested_by} at {iso(c.requested_at)}"
        grid.add_row("Requested", asked + (f" — {c.reason}" if c.reason else ""))
        grid.add_row(
            "Stop",
            "force: SIGKILL at once" if c.force else f"{c.stop_signal}, grace {c.grace_seconds:g}s",
        )
        if c.worker_id is None:
            grid.add_row("Worker", "none: it had not started, nothing to stop")
        else:
            pending = Text("not yet", style="yellow")
            if c.delivered_at is not None:
                grid.add_row("Delivered", f"{iso(c.delivered_at)} to {c.worker_id}")
            else:
                note = (
                    f" ({c.delivery_attempts} attempt(s); {c.last_error})" if c.last_error else ""
                )
                grid.add_row(
                    "Delivered", Text(f"not yet{note} — queued for {c.worker_id}", style="yellow")
                )
            grid.add_row("Signal sent", iso(c.signal_at) or pending)
            if c.killed_at is not None:
                grid.add_row("Killed", f"{iso(c.killed_at)} (SIGKILL: the grace ran out)")
            if c.exited_at is not None:
                how = "forced" if c.forced else "graceful"
                code = "-" if c.exit_code is None else str(c.exit_code)
                grid.add_row("Exited", f"{iso(c.exited_at)}, exit code {code}, {how}")
            else:
                grid.add_row("Exited", pending)
            grid.add_row(
                "Removed",
                iso(c.removed_at) if c.removed_at else Text("unconfirmed", style="yellow"),
            )
            if c.stop_seconds is not None:
                grid.add_row("Stop took", f"{c.stop_seconds:.2f}s")
            if c.stop_error:
                grid.add_row("Stop error", Text(c.stop_error, style="red"))
        return Group(Text("Cancellation", style="bold"), grid)

    @staticmethod
    def _result_logs(task: Task, result: TaskResult) -> Group:
        """The tail of the stored output: at most LOG_TAIL_LINES lines and LOG_TAIL_BYTES, so
        rendering costs the same for any output (Rich wraps a long line in more than linear
        time), and a heading that says what was left out."""
        tail = log_tail(result.logs)
        head = "Logs"
        if not tail.whole:
            cut = (
                f", the last {len(tail.text.encode('utf-8', 'replace')):,} of "
                f"{tail.total_bytes:,} bytes"
                if tail.partial
                else ""
            )
            head = (
                f"Logs (last {tail.lines:,} of {tail.total_lines:,} line(s){cut}; "
                f"all: cloudai logs {task.task_id})"
            )
        out: list[Any] = [Text(head, style="bold"), Text(tail.text or "(no output)")]
        if result.error:
            out.insert(0, Text(f"Error: {result.error}", style="red"))
        return Group(*out)

    def tasks_table(self, tasks: list[Task]) -> None:
        if self.json_mode:
            self.emit_json([task_json(t) for t in tasks])
            return
        if not tasks:
            self.console.print("No tasks.")
            return
        if is_queue(tasks):
            self.console.print(queue_table(tasks))
            return
        now = time.time()
        table = Table(header_style="bold")
        for col in ("TASK ID", "NAME", "IMAGE", "STATUS", "WORKER", "EXIT", "CREATED", "RUN TIME"):
            table.add_column(col, no_wrap=col == "TASK ID")
        for t in tasks:
            table.add_row(
                t.task_id,
                t.spec.name or "-",
                t.spec.image,
                Text(t.status.value, style=STATUS_STYLE.get(t.status.value, "")),
                t.worker_id or "-",
                "-" if t.exit_code is None else str(t.exit_code),
                _age(t.created_at, now),
                _duration(t, now),
            )
        self.console.print(table)

    def workers_table(self, workers: list[Worker]) -> None:
        now = time.time()
        if self.json_mode:
            self.emit_json([worker_json(w, now) for w in workers])
            return
        if not workers:
            self.console.print("No workers registered.")
            return
        self.console.print(
            "[dim]CPU, MEM, DISK and GPU: allocated/capacity (available); "
            "IN USE: node CPU % and memory GB from the last heartbeat; a cancelled task holds "
            "its share until its container is gone (stopping); a busy GPU has memory in use with "
            "no task on it and is not handed out.[/]"
        )
        table = Table(header_style="bold")
        for col in ("WORKER", "ADDRESS", "STATE", "CPU", "MEM GB", "DISK GB", "GPU", "TASKS"):
            table.add_column(col, no_wrap=col in ("WORKER", "ADDRESS", "STATE"))
        table.add_column("IN USE")
        table.add_column("HEARTBEAT")
        for w in workers:
            a, c, v = w.allocated, w.capacity, w.available
            state = Text("● " + w.state, style=STATE_STYLE.get(w.state, ""))
            if w.drained:
                state.append(" (drained)", style="yellow")
            in_use = (
                f"{w.cpu_percent:.0f}% / {w.mem_used_gb:.1f} GB"
                if w.cpu_percent is not None and w.mem_used_gb is not None
                else "-"
            )
            table.add_row(
                w.worker_id,
                w.address,
                state,
                f"{a.cpu:g}/{c.cpu:g} ({v.cpu:g})",
                f"{a.mem_gb:g}/{c.mem_gb:g} ({v.mem_gb:g})",
                f"{a.storage_gb:g}/{c.storage_gb:g} ({v.storage_gb:g})",
                _gpu_cell(w),
                str(len(w.running_tasks))
                + (f" (+{len(w.releasing_tasks)} stopping)" if w.releasing_tasks else "")
                + (f", {len(w.stop_failures)} stop failed" if w.stop_failures else ""),
                in_use,
                _age(w.last_heartbeat, now),
            )
        self.console.print(table)
        for w in workers:
            for task_id, why in w.stop_failures:
                self.console.print(
                    Text(
                        f"⚠ {w.worker_id}: the stop of {task_id} failed, its resources stay "
                        f"held until its container is gone: {why}",
                        style="yellow",
                    )
                )

    def worker_registered(self, w: Worker) -> None:
        if self.json_mode:
            self.emit_json(worker_json(w))
            return
        note = "" if w.state == "healthy" else f" (state {w.state}: it joins when it answers)"
        self.console.print(
            Text(f"✅ Worker {w.worker_id} registered at {w.address}{note}", style="green")
        )

    def monitor_view(self, task: Task, tail: str) -> Panel:
        now = time.time()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        style = STATUS_STYLE.get(task.status.value, "")
        grid.add_row("Status", Text(task.status.value, style=style))
        grid.add_row("Worker", task.worker_id or "-")
        grid.add_row("Image", task.spec.image)
        grid.add_row("Run time", _duration(task, now))
        grid.add_row("CPU / memory", _usage(task))
        if task.exit_code is not None:
            grid.add_row("Exit code", str(task.exit_code))
        if task.reason:
            grid.add_row("Reason", task.reason)
        if task.cancellation is not None:
            grid.add_row("Stop", task.cancellation.state)
        body = Group(grid, Text("─" * 40, style="dim"), Text(tail or "(no output yet)"))
        return Panel(body, title=f"monitor {task.task_id}", expand=False)
