"""A task's scheduling policy: its time limit, retries, priority and preemptibility. Pure: the
rules and their bounds, kept once here for the CLI, the shell, the master and the tests."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "DEADLINE_EXCEEDED",
    "PRIORITY_DEFAULT",
    "PRIORITY_MAX",
    "RETRIES_MAX",
    "TIMEOUT_MAX",
    "Attempt",
    "RunPolicy",
    "backoff",
    "failure_reason",
    "format_duration",
    "parse_duration",
    "policy_problems",
]

PRIORITY_DEFAULT = 500
PRIORITY_MAX = 1000
RETRIES_MAX = 100
TIMEOUT_MAX = 366 * 86400.0  # a year and a day: longer is a typo
BACKOFF_BASE = 1.0  # seconds before the first retry; doubled for each one after
BACKOFF_MAX = 300.0
DEADLINE_EXCEEDED = "deadline exceeded"  # the reason of a task whose time limit ran out

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


def parse_duration(text: str) -> float:
    """`90s`, `90`, `1.5m`, `2h`, `1d`, `1h30m` as seconds; ValueError says what is accepted."""
    t = text.strip().lower()
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(t):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not t or pos != len(t) or not math.isfinite(total) or total <= 0:
        raise ValueError(
            f"invalid duration {text[:32]!r}: use a number with s, m, h or d (90s, 2h, 1h30m)"
        )
    if total > TIMEOUT_MAX:
        raise ValueError(f"duration {text[:32]!r} is longer than {format_duration(TIMEOUT_MAX)}")
    return total


def format_duration(seconds: float) -> str:
    """`90s`, `2h`, `1h30m`: whole units where they fit."""
    if seconds < 60 or seconds != int(seconds):
        return f"{seconds:g}s"
    out, rest = "", int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out


def backoff(failures: int) -> float:
    """Seconds to wait before the next run after `failures` failed runs (1, 2, 4, ... capped)."""
    return float(min(BACKOFF_BASE * 2 ** max(failures - 1, 0), BACKOFF_MAX))


def failure_reason(error: str, oom_killed: bool) -> str:
    """Why a failed run ended, as its attempt record says it: the runtime's error, else the
    OOM kill, else the exit code."""
    return error or ("OOM killed" if oom_killed else "non-zero exit")


def policy_problems(timeout_seconds: float | None, retries: int, priority: int) -> list[str]:
    out = []
    if timeout_seconds is not None and not (
        math.isfinite(timeout_seconds) and 0 < timeout_seconds <= TIMEOUT_MAX
    ):
        out.append(
            f"timeout must be more than 0 and at most {format_duration(TIMEOUT_MAX)}, "
            f"got {timeout_seconds:g}s"
        )
    if not 0 <= retries <= RETRIES_MAX:
        out.append(f"retries must be between 0 and {RETRIES_MAX}, got {retries}")
    if not 0 <= priority <= PRIORITY_MAX:
        out.append(f"priority must be between 0 and {PRIORITY_MAX}, got {priority}")
    return out


@dataclass(frozen=True, slots=True)
class Attempt:
    """One earlier run of a task: where, how it ended and why (a retry or a preemption
    followed it; the task's own fields hold its current run)."""

    number: int
    worker_id: str
    status: str  # failed | cancelled
    exit_code: int | None = None
    reason: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    oom_killed: bool = False
    gpu_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunPolicy:
    """What `task run` (and the shell's `task`) says of a task's time limit, retries,
    priority and preemptibility: those TaskSpec fields, as one value."""

    timeout_seconds: float | None = None
    retries: int = 0
    retry_on_timeout: bool = False
    priority: int = PRIORITY_DEFAULT
    preemptible: bool = False
