"""The Docker engine's side of the timings: its events (start, die, destroy) and its log
timestamps, each read in a background thread; and the shapes of the containers every section
runs, so the floors ask the engine for exactly what cloudai asks it for."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import docker

from bench.model import percentile

__all__ = [
    "COOPERATIVE",
    "IGNORES_TERM",
    "Events",
    "LogLines",
    "Shape",
    "SLEEPER",
    "TRUE",
    "api_client",
    "median_note",
    "remove_labelled",
    "run_parallel",
    "uptime_note",
]

# PID 1 with a TERM handler: the handler's first output line is time-stamped by the engine as it
# reads it (that stamp is the "SIGTERM inside the container" time), then /proc/uptime (the same
# kernel clock as the host's /proc/uptime, 10 ms resolution) as a cross-check; then it exits 0.
COOPERATIVE = (
    "sh",
    "-c",
    "trap 'echo TERM; cat /proc/uptime; exit 0' TERM; echo ready; sleep 3600 & wait",
)
# PID 1 that ignores SIGTERM: only SIGKILL ends it.
IGNORES_TERM = ("sh", "-c", "trap '' TERM; echo ready; sleep 3600 & wait")


@dataclass(frozen=True)
class Shape:
    """A container's resource limits, as cloudai's Docker runtime sets them for a request."""

    cpu: float
    mem_gb: float

    def host_config(self, api: Any) -> Any:
        mem = int(self.mem_gb * 1024**3)
        return api.create_host_config(
            nano_cpus=int(self.cpu * 1e9), mem_limit=mem, memswap_limit=mem
        )


SLEEPER = Shape(cpu=0.05, mem_gb=1 / 32)  # idle tasks: 40 fit in the worker's 2 cores
TRUE = Shape(cpu=0.25, mem_gb=0.125)  # `true` for throughput: 8 at once on 2 cores


def api_client() -> Any:
    return docker.APIClient(timeout=120, **docker.utils.kwargs_from_env())


def parse_engine_time(stamp: str) -> float:
    """RFC 3339 with nanoseconds (the engine's log timestamps) to Unix seconds."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    base = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC).timestamp()
    return base + (float("0." + frac) if frac else 0.0)


class Events:
    """Container events whose labels match `label` (KEY=VALUE), kept by a key label's value:
    `times[key][action]` is the engine's time (Unix seconds, ns precision) of the first such
    event. Waiting is on a condition with a deadline."""

    def __init__(self, label: str, key_labels: tuple[str, ...]) -> None:
        self.api = api_client()
        self.key_labels = key_labels
        self.times: dict[str, dict[str, float]] = defaultdict(dict)
        self.ids: dict[str, str] = {}
        self._cond = threading.Condition()
        self._stream = self.api.events(
            decode=True,
            since=int(time.time()) - 1,
            filters={"type": "container", "label": label},
        )
        self._thread = threading.Thread(target=self._pump, name="bench-events", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends when closed
            for ev in self._stream:
                attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                key = next((attrs[k] for k in self.key_labels if k in attrs), None)
                if key is None:
                    continue
                at = ev.get("timeNano", 0) / 1e9 or float(ev.get("time", 0))
                with self._cond:
                    self.times[key].setdefault(ev.get("Action", ""), at)
                    self.ids.setdefault(key, (ev.get("Actor") or {}).get("ID", ""))
                    self._cond.notify_all()

    def wait(self, key: str, action: str, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        with self._cond:
            while action not in self.times.get(key, {}):
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = dict(self.times.get(key, {}))
                    raise TimeoutError(f"no {action!r} event for {key} in {timeout:g}s; saw {seen}")
                self._cond.wait(left)
            return self.times[key][action]

    def timeline(self, key: str, origin: float, actions: tuple[str, ...]) -> dict[str, float]:
        """The engine's events of `key`, in ms from `origin`, keyed 'engine ACTION'."""
        with self._cond:
            got = dict(self.times.get(key, {}))
        return {f"engine {a}": (got[a] - origin) * 1000 for a in actions if a in got}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()
        self._thread.join(5)
        self.api.close()


class LogLines:
    """Follows one container's output with the engine's own timestamps (taken as the engine
    reads each line from the container), from its first line, in a background thread."""

    def __init__(self, container_id: str) -> None:
        self.api = api_client()
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._done = False
        self._thread = threading.Thread(
            target=self._pump, args=(container_id,), name="bench-logs", daemon=True
        )
        self._thread.start()

    def _pump(self, container_id: str) -> None:
        buf = b""
        try:
            for chunk in self.api.logs(container_id, stream=True, follow=True, timestamps=True):
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    stamp, _, text = raw.decode(errors="replace").partition(" ")
                    with self._cond:
                        self.lines.append((parse_engine_time(stamp), text.strip()))
                        self._cond.notify_all()
        except Exception:  # the container went away: the stream ends
            pass
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()
            self.api.close()

    def wait(self, text: str, timeout: float = 30.0) -> float:
        """The engine's time of the first line equal to `text`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, line in self.lines:
                    if line == text:
                        return at
                left = deadline - time.monotonic()
                if left <= 0 or self._done:
                    raise TimeoutError(f"no line {text!r} within {timeout:g}s; saw {self.lines}")
                self._cond.wait(left)

    def after(self, text: str) -> str | None:
        """The line that follows the first line equal to `text`, once the stream ended."""
        self._thread.join(10)
        for i, (_, line) in enumerate(self.lines[:-1]):
            if line == text:
                return self.lines[i + 1][1]
        return None

    def uptime_gap(self, text: str = "TERM") -> float | None:
        """The cross-check of the engine's stamp: the container's /proc/uptime reading printed
        after `text`, as Unix time, minus the engine's stamp of `text` (ms). None without one."""
        reading = self.after(text)
        try:
            inside = uptime_to_wall(float((reading or "").split()[0]))
        except (ValueError, IndexError):
            return None
        return (inside - self.wait(text, timeout=0.1)) * 1000


def remove_labelled(api: Any, label: str) -> int:
    """Remove (force) every container with the label; returns how many."""
    found = api.containers(all=True, filters={"label": label})
    for c in found:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            api.remove_container(c["Id"], force=True, v=True)
    return len(found)


def host_uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def uptime_to_wall(uptime: float) -> float:
    """A /proc/uptime reading (from inside a container: the same kernel clock) as Unix time."""
    return time.time() - (host_uptime() - uptime)


def median_note(rows: list[dict[str, float]], origin: str) -> str:
    """'median ms from ORIGIN: a 1, b 5, ...' over timeline rows, in order of the medians."""
    keys = {k for r in rows for k in r}
    medians = {k: percentile([r[k] for r in rows if k in r], 50) for k in keys}
    if not medians:
        return ""
    parts = [f"{k} {v:.0f}" for k, v in sorted(medians.items(), key=lambda kv: kv[1])]
    return f"median ms from {origin}: " + ", ".join(parts)


def uptime_note(gaps: list[float]) -> str:
    if not gaps:
        return ""
    return (
        "cross-check: the trap's /proc/uptime reading minus the engine's stamp of its TERM "
        f"line, median {percentile(gaps, 50):+.1f} ms (uptime has 10 ms resolution)"
    )


def run_parallel(fn: Callable[[int], None], count: int, parallel: int) -> None:
    """fn(0..count-1) on `parallel` threads; the first error is raised."""
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="bench") as pool:
        for fut in [pool.submit(fn, i) for i in range(count)]:
            fut.result()
