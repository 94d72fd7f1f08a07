"""Running a fleet of simulated callers against one server process (a master, or G1's empty
gRPC server) for a window, while sampling that server's and each load generator's CPU (and the
server's RSS) every second with psutil. Used by M1/M2 (bench/scale.py), M5 and the scaling
curve (bench/m5.py) and G1 (bench/grpcfloor.py)."""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import psutil

from bench.secure import Peer
from bench.simworkers import loadgen_main
from bench.ui import Step

__all__ = ["INTERVAL", "Window", "loadgens_for", "loadgen_note", "run_load"]

INTERVAL = 5.0  # the workers' and the master's heartbeat interval (cloudai's default)
SATURATED = 90.0  # % of one core: a load generator this busy may bound the figure
PER_LOADGEN = 1250  # simulated workers per load-generator process (M5, the curve)


def loadgens_for(workers: int) -> int:
    """Load-generator processes for `workers`: at least 2 (this machine's cores), so no one
    process carries more than PER_LOADGEN workers."""
    return max(2, math.ceil(workers / PER_LOADGEN))


@dataclass
class Window:
    start: float
    idle_end: float
    end: float
    register_ms: list[float] = field(default_factory=list)
    beats: list[tuple[float, float]] = field(default_factory=list)
    hb_errors: list[str] = field(default_factory=list)
    hb_error_count: int = 0
    # (middle of the sampled second, % of one core, CPU seconds in it)
    cpu: list[tuple[float, float, float]] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (at, MB)
    loadgen_cpu: list[list[float]] = field(default_factory=list)  # per process, % per second
    drive: dict[str, Any] = field(default_factory=dict)
    idle_pct: float = 0.0  # the server's CPU (% of a core) before any caller came
    idle_s: float = 0.0  # over how many seconds idle_pct was measured
    secure: bool = False  # the callers used TLS
    assigned: int = 0  # AssignTask calls the simulated workers answered
    update_errors: list[str] = field(default_factory=list)  # their failed UpdateStop calls

    def beats_in(self, lo: float, hi: float) -> list[float]:
        return [ms for at, ms in self.beats if lo <= at < hi]

    def cpu_in(self, lo: float, hi: float) -> list[float]:
        return [pct for at, pct, _ in self.cpu if lo <= at < hi]

    def cpu_us_per_call(self, lo: float, hi: float, net: bool = True) -> float | None:
        """The server's CPU time over [lo, hi) divided by the calls sent in it, in µs; `net`:
        less what the server spent idle (`idle_pct`) over the same seconds."""
        secs = sum(s for at, _, s in self.cpu if lo <= at < hi)
        if net:
            secs -= self.idle_pct / 100 * len([1 for at, _, _ in self.cpu if lo <= at < hi])
        calls = len(self.beats_in(lo, hi))
        return 1e6 * max(secs, 0.0) / calls if calls else None


def loadgen_note(w: Window) -> tuple[str, bool]:
    """Each load generator's CPU (mean and busiest second, % of a core), and whether one ran
    near a whole core (then it, not the server, may bound the figure)."""
    parts, saturated = [], False
    for k, xs in enumerate(w.loadgen_cpu):
        if not xs:
            continue
        mean = sum(xs) / len(xs)
        saturated |= mean >= SATURATED
        parts.append(f"#{k + 1} mean {mean:.0f}% max {max(xs):.0f}%")
    if not parts:
        return "", False
    text = "load generators' CPU (% of a core): " + ", ".join(parts)
    if saturated:
        text += (
            " — a load generator ran out of CPU (mean ≥ 90% of a core): on this 2-core "
            "machine it, not the server, may bound this figure"
        )
    return text, saturated


def _recv(conn: Connection, timeout: float, what: str) -> Any:
    if not conn.poll(timeout):
        raise TimeoutError(f"no {what} from a load generator in {timeout:g}s")
    _kind, body = conn.recv()
    return body


Driver = tuple[Callable[..., None], tuple[Any, ...]]


def run_load(
    addr: Peer,
    server_pid: int,
    ids: list[str],
    loadgens: int,
    window: float,
    idle: float,
    step: Step | None,
    target: Callable[..., None] = loadgen_main,
    driver: Driver | None = None,
    baseline: float = 0.0,
) -> Window:
    """Start `loadgens` processes running `target(addr, share, INTERVAL, conn)` over `ids`;
    when all are ready (registered), heartbeat for `window` s. With a `driver` (a function and
    its first arguments; then come begin, end and a Pipe), it runs in a process of its own
    from `idle` s into the window to its end. First, for `baseline` s, the server's CPU with
    no caller at all (its idle loops)."""
    idle_pct = _idle_cpu(psutil.Process(server_pid), baseline) if baseline > 0 else 0.0
    ctx = multiprocessing.get_context("spawn")
    shares = [ids[k::loadgens] for k in range(loadgens)]
    pipes, procs = [], []
    try:
        for share in shares:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=target, args=(addr, share, INTERVAL, child), name="bench-load")
            p.start()
            pipes.append(parent)
            procs.append(p)
        register_ms: list[float] = []
        for conn in pipes:
            register_ms += _recv(conn, 900, "registration")["register_ms"]
        start = time.time() + 1.0
        w = Window(start, start + idle, start + window, register_ms=register_ms)
        w.idle_pct, w.idle_s = idle_pct, baseline
        w.secure = addr.secure
        for conn in pipes:
            conn.send(("go", w.start, w.end))
        d_parent = None
        if driver is not None:
            func, args = driver
            d_parent, d_child = ctx.Pipe()
            d = ctx.Process(
                target=func, args=(*args, w.idle_end, w.end, d_child), name="bench-driver"
            )
            d.start()
            procs.append(d)
        loadgen_pids = [p.pid for p in procs[: len(shares)] if p.pid is not None]
        _sample(psutil.Process(server_pid), [psutil.Process(p) for p in loadgen_pids], w, step)
        for conn in pipes:
            done = _recv(conn, 180, "heartbeat results")
            w.beats += done["beats"]
            w.hb_errors += done["errors"]
            w.hb_error_count += done["error_count"]
            w.assigned += done.get("assigned", 0)
            w.update_errors += done.get("update_errors", [])
        if d_parent is not None:
            w.drive = _recv(d_parent, 300, "M2 results")
        return w
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)


def _idle_cpu(server: psutil.Process, seconds: float) -> float:
    t0, c0 = time.monotonic(), _cpu_s(server)
    time.sleep(seconds)
    return 100.0 * (_cpu_s(server) - c0) / (time.monotonic() - t0)


def _cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def _sample(
    server: psutil.Process, gens: list[psutil.Process], w: Window, step: Step | None
) -> None:
    """Every second until the window ends: the server's CPU (all its threads) and RSS, and
    each load generator's CPU."""
    while time.time() < w.start:
        time.sleep(0.01)
    w.loadgen_cpu = [[] for _ in gens]
    last_t = time.monotonic()
    last = [_cpu_s(p) for p in [server, *gens]]
    while time.time() < w.end:
        time.sleep(1.0)
        now_t = time.monotonic()
        now = [_cpu_s(p) for p in [server, *gens]]
        at, dt = time.time(), now_t - last_t
        mid = at - dt / 2
        w.cpu.append((mid, 100.0 * (now[0] - last[0]) / dt, now[0] - last[0]))
        w.rss.append((at, server.memory_info().rss / 1024**2))
        for k in range(len(gens)):
            w.loadgen_cpu[k].append(100.0 * (now[k + 1] - last[k + 1]) / dt)
        last_t, last = now_t, now
        if step is not None:
            step.advance()
