"""What the CLI prints, as plain values: the `-o json` shapes, times, and the bounded
tail of a task's output. No Rich here: cli/render.py draws them."""

from __future__ import annotations

import datetime as dt
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

from cloudai.cli.render_queue import queue_json
from cloudai.core.gpus import GpuDevice
from cloudai.core.models import Cancellation, Task, TaskResult, Worker
from cloudai.core.resources import Resources

__all__ = [
    "LOG_TAIL_BYTES",
    "LOG_TAIL_LINES",
    "LogTail",
    "cancellation_json",
    "gpu_json",
    "iso",
    "log_tail",
    "one_line",
    "result_json",
    "task_json",
    "worker_json",
]

LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 16 * 1024  # what `task show` and `monitor` render of a task's output, at most


@dataclass(frozen=True, slots=True)
class LogTail:
    """The end of a task's output as shown, and what was left out before it."""

    text: str
    lines: int  # lines in `text`
    total_lines: int  # lines in the whole output
    partial: bool  # the first line shown is cut at its start (a line longer than the budget)
    total_bytes: int  # of the whole output, UTF-8 (counted only when something was left out)

    @property
    def whole(self) -> bool:
        return self.lines == self.total_lines and not self.partial


def log_tail(
    text: str, max_lines: int = LOG_TAIL_LINES, max_bytes: int = LOG_TAIL_BYTES
) -> LogTail:
    """The last `max_lines` lines of `text`, of at most `max_bytes` bytes (UTF-8) in all.

    Linear in `text` (its line breaks counted once) and bounded in what it returns, whatever
    the shape of the output: one 40 MiB line gives its last 16 KiB."""
    total_lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    window = text[-max_bytes:]  # every character is at least one byte
    data = window.encode("utf-8", errors="replace")
    if len(data) > max_bytes:  # multi-byte characters: the last bytes, from a whole character
        window = data[-max_bytes:].decode("utf-8", errors="ignore")
    body = window.removesuffix("\n")
    kept = body.rsplit("\n", max_lines)[-max_lines:] if window else []
    start = len(text) - (len(window) - len(body)) - len("\n".join(kept))
    partial = start > 0 and text[start - 1] != "\n"
    whole = len(kept) == total_lines and not partial
    size = len(data) if whole else len(text.encode("utf-8", errors="replace"))
    shown = "\n".join(line.removesuffix("\r") for line in kept)
    return LogTail(shown, len(kept), total_lines, partial, size)


def one_line(text: str) -> str:
    """`text` without raw control characters or line breaks (escaped, as repr() would): an
    error that quotes a user's words stays one plain line and cannot drive the terminal."""
    return "".join(
        repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text
    )


def iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def _res(r: Resources) -> dict[str, Any]:
    return {"cpu": r.cpu, "mem_gb": r.mem_gb, "storage_gb": r.storage_gb, "gpu": r.gpu}


def task_json(t: Task) -> dict[str, Any]:
    return {
        "task_id": t.task_id,
        "name": t.spec.name,
        "image": t.spec.image,
        "command": list(t.spec.command),
        "env": dict(t.spec.env),
        "secret_env": dict(t.spec.masked().secret_env),  # values always "***"
        "resources": _res(t.spec.resources),
        "gpus": list(t.gpu_ids),  # the devices its placement gave it
        "pids_limit": t.spec.pids_limit or None,  # None: the worker's default
        "stop_signal": t.spec.signal,  # what a stop sends first
        "grace_seconds": t.spec.grace,  # then SIGKILL after this long
        "requested_worker": t.spec.worker_id or None,
        "owner": t.spec.owner,
        "status": t.status.value,
        "worker_id": t.worker_id,
        "exit_code": t.exit_code,
        "oom_killed": t.oom_killed,
        "reason": t.reason,
        "created_at": iso(t.created_at),
        "started_at": iso(t.started_at),
        "completed_at": iso(t.completed_at),
        "events": [
            {"at": iso(e.at), "kind": e.kind, "actor": e.actor, "message": e.message}
            for e in t.events
        ],
        "result": None if t.result is None else result_json(t.result),
        "cancellation": None if t.cancellation is None else cancellation_json(t.cancellation),
        "usage": {
            "cpu_percent": t.cpu_percent,
            "mem_used_gb": t.mem_used_gb,
            "measured_at": iso(t.usage_at),
        },
        **queue_json(t),
    }


def cancellation_json(c: Cancellation) -> dict[str, Any]:
    return {
        "state": c.state,
        "confirmed": c.confirmed,
        "requested_by": c.requested_by,
        "requested_at": iso(c.requested_at),
        "reason": c.reason,
        "force": c.force,
        "grace_seconds": c.grace_seconds,
        "stop_signal": c.stop_signal,
        "delivered_at": iso(c.delivered_at),
        "delivery_attempts": c.delivery_attempts,
        "last_error": c.last_error,
        "signal_at": iso(c.signal_at),
        "killed_at": iso(c.killed_at),
        "exited_at": iso(c.exited_at),
        "exit_code": c.exit_code,
        "forced": c.forced,
        "removed_at": iso(c.removed_at),
        "stop_seconds": c.stop_seconds,
        "stop_error": c.stop_error,
    }


def result_json(r: TaskResult) -> dict[str, Any]:
    return {
        "status": r.status.value,
        "worker_id": r.worker_id,
        "exit_code": r.exit_code,
        "error": r.error,
        "oom_killed": r.oom_killed,
        "completed_at": iso(r.completed_at),
        "logs": r.logs,
    }


def worker_json(w: Worker, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {
        "worker_id": w.worker_id,
        "address": w.address,
        "state": w.state,
        "runtime": w.runtime,
        "capacity": _res(w.capacity),
        "allocated": _res(w.allocated),
        "available": _res(w.available),
        "running_tasks": list(w.running_tasks),
        "releasing_tasks": list(w.releasing_tasks),
        "releasing": _res(w.releasing),
        "stop_failures": [{"task_id": t, "error": why} for t, why in w.stop_failures],
        "last_heartbeat": iso(w.last_heartbeat),
        "last_heartbeat_age_s": round(now - w.last_heartbeat, 1) if w.last_heartbeat else None,
        "drained": w.drained,
        "cpu_percent": w.cpu_percent,
        "mem_used_gb": w.mem_used_gb,
        "disk_free_gb": w.disk_free_gb,
        "gpus": [gpu_json(g) for g in w.gpus],
    }


def gpu_json(g: GpuDevice) -> dict[str, Any]:
    """One device of a worker; the telemetry is null where NVML does not answer."""
    return {
        "id": g.gpu_id,
        "name": g.name or None,
        "memory_total_mb": g.memory_total_mb,
        "memory_used_mb": g.memory_used_mb,
        "utilization_percent": g.utilization_percent,
        "busy": g.busy,
        "task_id": g.task_id or None,
    }
