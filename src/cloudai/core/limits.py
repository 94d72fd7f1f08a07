"""Every bound on what cloudai accepts, kept once: field sizes, counts, numbers, message and
log sizes. docs/limits.md lists them; the store's column sizes (store/schema.py) match.

Rules return the problem as a string (None or an empty list when the value is fine); the edges
turn problems into InvalidArgument. Values quoted in a problem go through `quote`, so an error
about a 10 MB value is one short line."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping

__all__ = [
    "ACTOR_MAX",
    "ADDRESS_MAX",
    "COMMAND_ARGS_MAX",
    "COMMAND_BYTES_MAX",
    "CPU_MAX",
    "CPU_MIN",
    "DETAIL_MAX",
    "ENV_BYTES_MAX",
    "ENV_VARS_MAX",
    "ERROR_MAX",
    "GPU_MAX",
    "GRACE_MAX",
    "IDS_MAX",
    "IMAGE_MAX",
    "LIST_FIELD_MAX",
    "LOG_TAIL_BYTES",
    "MAX_REPLY_BYTES",
    "MAX_REQUEST_BYTES",
    "MEM_MAX_GB",
    "MEM_MIN_GB",
    "NAME_MAX",
    "OWNER_MAX",
    "QUOTE_MAX",
    "REASON_MAX",
    "RUNTIME_MAX",
    "STORAGE_MAX_GB",
    "TASK_ID_MAX",
    "TIME_MAX",
    "WORKER_ID_MAX",
    "bounded_text",
    "command_problems",
    "env_problems",
    "ids_problems",
    "log_tail",
    "number_problem",
    "quote",
    "text_problem",
    "validate_task_id",
]

# ---- identifiers (characters) ------------------------------------------------------------
TASK_ID_MAX = 64  # tasks.task_id VARCHAR(64)
WORKER_ID_MAX = 63  # workers.worker_id VARCHAR(64)

# ---- text fields (characters), as the store's columns hold them ---------------------------
IMAGE_MAX = 255  # tasks.image VARCHAR(255); Docker's own reference limit
NAME_MAX = 128  # tasks.name VARCHAR(128)
OWNER_MAX = 64  # tasks.owner VARCHAR(64)
RUNTIME_MAX = 16  # workers.runtime VARCHAR(16)
ADDRESS_MAX = 255  # workers.address VARCHAR(255)
ACTOR_MAX = 128  # cancellations.requested_by VARCHAR(128), task_events.actor
REASON_MAX = 1024  # a cancel reason (Text): refused beyond
DETAIL_MAX = 2000  # a worker's stop-progress detail (Text): cut beyond
ERROR_MAX = 4096  # a worker's error text in a result (Text): cut beyond

# ---- command, environment, ID lists ------------------------------------------------------
COMMAND_ARGS_MAX = 1024
COMMAND_BYTES_MAX = 64 * 1024  # all arguments together, UTF-8
ENV_VARS_MAX = 256
ENV_BYTES_MAX = 64 * 1024  # all names and values together, UTF-8
IDS_MAX = 10_000  # task IDs in one request (a bulk cancel, a heartbeat's lists)
STOP_UPDATES_MAX = 16  # stop updates in one UpdateStops call
LIST_FIELD_MAX = 1024  # characters of each task's command, and of its env, in a task list

# ---- numbers -----------------------------------------------------------------------------
CPU_MIN = 0.01  # cores: the smallest request (Docker's own smallest --cpus)
CPU_MAX = 4096.0
MEM_MIN_GB = 0.01  # a memory request is 0 (no limit) or at least this (Docker needs 6 MiB)
MEM_MAX_GB = 65536.0  # 64 TB
STORAGE_MAX_GB = 1048576.0  # 1 PB
GPU_MAX = 64
GRACE_MAX = 3600.0  # seconds
TIME_MAX = 1e11  # a time a peer reports, seconds since the epoch (the year 5138)

# ---- messages and logs (bytes) -----------------------------------------------------------
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # what a server accepts in one message
MAX_REPLY_BYTES = 64 * 1024 * 1024  # what a server sends (and a client accepts) in one
LOG_TAIL_BYTES = 1024 * 1024  # a result's stored logs: the tail, the note included
_NOTE_ROOM = 128  # room kept in LOG_TAIL_BYTES for the "dropped" note

QUOTE_MAX = 64  # characters of a bad value quoted in an error

_TASK_ID_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{TASK_ID_MAX - 1}}}")


def quote(value: object, limit: int = QUOTE_MAX) -> str:
    """`value` quoted for an error message: its repr, of at most `limit` characters of it,
    then `…` and the full length when it was longer."""
    if isinstance(value, str | bytes) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit + 2 else f"{text[:limit]}…"


def validate_task_id(task_id: str) -> str | None:
    """None when `task_id` is a valid task ID: 1-64 letters, digits, '.', '_' or '-', starting
    with a letter or digit, without '..'. Such an ID is safe as a file name and a label."""
    if not _TASK_ID_RE.fullmatch(task_id or "") or ".." in task_id:
        if not task_id:
            return "task_id is required"
        return (
            f"invalid task id {quote(task_id)}: use 1-{TASK_ID_MAX} letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return None


def ids_problems(what: str, ids: Iterable[str], limit: int = IDS_MAX) -> list[str]:
    """Problems with a list of task IDs: too many, or one that breaks the rule (the first)."""
    ids = list(ids)
    if len(ids) > limit:
        return [f"too many {what}: {len(ids)}, at most {limit}"]
    for task_id in ids:
        if (problem := validate_task_id(task_id)) is not None:
            return [f"{what}: {problem}"]
    return []


def _has_control(text: str, allow_whitespace: bool) -> bool:
    for ch in text:
        if allow_whitespace and ch in "\t\n\r":
            continue
        if unicodedata.category(ch) == "Cc":
            return True
    return False


def text_problem(
    name: str, value: str, limit: int, *, required: bool = False, multiline: bool = False
) -> str | None:
    """A short text field: at most `limit` characters, no control characters (no NUL: the
    store cannot hold it); `multiline` allows tabs and line breaks."""
    if required and not value:
        return f"{name} is required"
    if len(value) > limit:
        return f"{name} is longer than {limit} characters ({len(value)})"
    if _has_control(value, multiline):
        return f"{name} must not contain control characters: {quote(value)}"
    return None


def bounded_text(value: str, limit: int) -> str:
    """Text a peer reports (an error, a detail): NUL replaced, cut to `limit` characters."""
    value = value.replace("\x00", "\ufffd")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def command_problems(command: Iterable[str]) -> list[str]:
    args = list(command)
    if len(args) > COMMAND_ARGS_MAX:
        return [f"the command has {len(args)} arguments, at most {COMMAND_ARGS_MAX}"]
    size = sum(len(a.encode("utf-8", "surrogatepass")) for a in args)
    if size > COMMAND_BYTES_MAX:
        return [f"the command is {size} bytes long, at most {COMMAND_BYTES_MAX}"]
    if any("\x00" in a for a in args):
        return ["the command must not contain NUL characters"]
    return []


def env_problems(env: Mapping[str, str], key_re: re.Pattern[str]) -> list[str]:
    if len(env) > ENV_VARS_MAX:
        return [f"{len(env)} environment variables, at most {ENV_VARS_MAX}"]
    size = sum(len(k.encode("utf-8", "surrogatepass")) + len(v.encode()) for k, v in env.items())
    if size > ENV_BYTES_MAX:
        return [f"the environment is {size} bytes long, at most {ENV_BYTES_MAX}"]
    out = [f"invalid environment variable name {quote(k)}" for k in env if not key_re.fullmatch(k)]
    if any("\x00" in v for v in env.values()):
        out.append("environment values must not contain NUL characters")
    return out[:3]


def number_problem(name: str, value: float, low: float, high: float, unit: str = "") -> str | None:
    """None when `low <= value <= high` (and finite: never NaN or infinity)."""
    if not math.isfinite(value):
        return f"{name} must be a finite number, got {value!r}"
    if value < 0 <= low:
        return f"{name} must be a non-negative number, got {value:g}"
    if value < low:
        return f"{name} must be at least {low:.15g}{unit}, got {value:g}"
    if value > high:  # a bound as people write it: 1048576, not 1.04858e+06
        return f"{name} must be at most {high:.15g}{unit}, got {value:g}"
    return None


def log_tail(data: bytes, total: int | None = None, limit: int = LOG_TAIL_BYTES) -> str:
    """The end of a task's output as text of at most `limit` UTF-8 bytes. When anything was
    dropped (`total`, the whole output's size, is more than what is kept), the first line
    says how many bytes. NUL becomes U+FFFD (the store cannot hold it)."""
    total = len(data) if total is None else max(total, len(data))
    text = data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    if total <= limit and len(text.encode()) <= limit:
        return text
    budget = limit - _NOTE_ROOM
    keep = data[-budget:]
    while True:
        # Skip a character cut at the start (UTF-8 continuation bytes).
        start = 0
        while start < min(len(keep), 3) and 0x80 <= keep[start] < 0xC0:
            start += 1
        keep = keep[start:]
        text = keep.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        size = len(text.encode())
        if size <= budget:  # replacements can make the text longer than the bytes
            break
        keep = keep[-(len(keep) * budget // size) + 1 :]
    dropped = total - len(keep)
    note = (
        f"[cloudai: {dropped} bytes of earlier output dropped; the last {len(keep)} bytes follow]"
    )
    return f"{note}\n{text}"
