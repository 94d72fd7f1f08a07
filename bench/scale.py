"""M1 and M2: one master (a real process, SQLite store) under many simulated workers
heartbeating every 5 s (M1), with tasks submitted to them and half cancelled during the window
(M2, after the first `m_idle` seconds of heartbeats alone). The master's CPU and RSS are
sampled every second with psutil. After a miss, the same load runs briefly again with the
master under cProfile, and the profile's top entries are kept with the results."""

from __future__ import annotations

import multiprocessing
import pathlib
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import psutil

from bench.model import Measure, percentile
from bench.plan import IMAGE, Sizes
from bench.procs import Procs, free_port, wait_serving
from bench.profiling import summarize_profile
from bench.simworkers import driver_main, loadgen_main
from bench.targets import judge
from bench.ui import Step, Ui

__all__ = ["run_master_scale"]

INTERVAL = 5.0  # the workers' and the master's heartbeat interval (cloudai's default)


@dataclass
class _Window:
    start: float
    idle_end: float
    end: float
    register_ms: list[float] = field(default_factory=list)
    beats: list[tuple[float, float]] = field(default_factory=list)
    hb_errors: list[str] = field(default_factory=list)
    hb_error_count: int = 0
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (at, % of one core)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (at, MB)
    drive: dict[str, Any] = field(default_factory=dict)


def _recv(conn: Connection, timeout: float, what: str) -> Any:
    if not conn.poll(timeout):
        raise TimeoutError(f"no {what} from a load generator in {timeout:g}s")
    kind, body = conn.recv()
    return body


def _load(
    port: int, master_pid: int, sizes: Sizes, window: float, idle: float, step: Step | None
) -> _Window:
    """Register the simulated workers, then heartbeat (and submit/cancel) for `window` s."""
    ctx = multiprocessing.get_context("spawn")
    addr = f"127.0.0.1:{port}"
    ids = [f"sim-{i:04d}" for i in range(sizes.m_workers)]
    shares = [ids[k :: sizes.m_loadgens] for k in range(sizes.m_loadgens)]
    pipes, procs = [], []
    try:
        for share in shares:
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=loadgen_main, args=(addr, share, INTERVAL, child), name="bench-loadgen"
            )
            p.start()
            pipes.append(parent)
            procs.append(p)
        register_ms: list[float] = []
        for conn in pipes:
            register_ms += _recv(conn, 600, "registration")["register_ms"]
        start = time.time() + 1.0
        w = _Window(start, start + idle, start + window, register_ms=register_ms)
        for conn in pipes:
            conn.send(("go", w.start, w.end))
        d_parent, d_child = ctx.Pipe()
        driver = ctx.Process(
            target=driver_main,
            args=(addr, ids, IMAGE, w.idle_end, w.end, sizes.m_submit, sizes.m_cancel, d_child),
            name="bench-m2",
        )
        driver.start()
        procs.append(driver)
        _sample(psutil.Process(master_pid), w, step)
        for conn in pipes:
            done = _recv(conn, 120, "heartbeat results")
            w.beats += done["beats"]
            w.hb_errors += done["errors"]
            w.hb_error_count += done["error_count"]
        w.drive = _recv(d_parent, 180, "M2 results")
        return w
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)


def _sample(master: psutil.Process, w: _Window, step: Step | None) -> None:
    """Every second until the window ends: the master's CPU (all its threads) and RSS."""
    while time.time() < w.start:
        time.sleep(0.01)
    last_t, last_cpu = time.monotonic(), sum(master.cpu_times()[:2])
    while time.time() < w.end:
        time.sleep(1.0)
        now_t, now_cpu = time.monotonic(), sum(master.cpu_times()[:2])
        at = time.time()
        w.cpu.append((at, 100.0 * (now_cpu - last_cpu) / (now_t - last_t)))
        w.rss.append((at, master.memory_info().rss / 1024**2))
        last_t, last_cpu = now_t, now_cpu
        if step is not None:
            step.advance()


def _run_window(
    procs: Procs, sizes: Sizes, window: float, idle: float, step: Step | None, profile: Any
) -> _Window:
    port = free_port()
    db = f"sqlite:///{procs.tmp / ('m1-prof.db' if profile else 'm1.db')}"
    master = procs.master(port, db, profile_to=profile, log_name="m-master.log")
    wait_serving(port, master)
    try:
        return _load(port, master.pid, sizes, window, idle, step)
    finally:
        procs.stop(master, timeout=60)  # a profiled master writes its stats on the way out


def run_master_scale(sizes: Sizes, ui: Ui, profiles: dict[str, str] | None) -> list[Measure]:
    step = ui.step("M1 M2  master scale", int(sizes.m_window))
    with Procs() as procs:
        try:
            step.say(f"{sizes.m_workers} workers register, then heartbeat")
            w = _run_window(procs, sizes, sizes.m_window, sizes.m_idle, step, None)
        except Exception as exc:
            raise RuntimeError(f"{exc}\n{procs.tail()}") from exc
        finally:
            step.done()
        measures = _measures(w, sizes)
        judge(measures)
        if profiles is not None and sizes.profile_window and any(m.met is False for m in measures):
            profiles["M1+M2 master (cProfile)"] = _profile(procs, sizes, ui)
    return measures


def _measures(w: _Window, sizes: Sizes) -> list[Measure]:
    hb = [ms for at, ms in w.beats if w.start <= at < w.end]
    hb_idle = [ms for at, ms in w.beats if w.start <= at < w.idle_end]
    hb_busy = [ms for at, ms in w.beats if w.idle_end <= at < w.end]
    cpu = [c for _, c in w.cpu]
    cpu_idle = [c for at, c in w.cpu if at <= w.idle_end]
    rss = [r for _, r in w.rss]
    d = w.drive
    hb_errors = f"; {w.hb_error_count} heartbeats failed ({w.hb_errors[:2]})" if w.hb_errors else ""
    window = f"{sizes.m_workers} workers, heartbeat every {INTERVAL:g} s, {sizes.m_window:g} s"

    def p99(xs: list[float]) -> str:
        return f"{percentile(xs, 99):.0f} ms" if xs else "none"

    drive_errors = f"; {d['error_count']} calls failed ({d['errors'][:2]})" if d["errors"] else ""
    busy = sizes.m_window - sizes.m_idle
    return [
        Measure(
            "M1",
            "M1 heartbeat",
            f"SendHeartbeat, {window}",
            "ms",
            hb,
            note=f"heartbeats alone (first {sizes.m_idle:g} s): p99 {p99(hb_idle)}; "
            f"with M2's submits and cancels: p99 {p99(hb_busy)}; registration of the "
            f"{sizes.m_workers} workers (16 at once) p99 {p99(w.register_ms)}{hb_errors}",
        ),
        Measure(
            "M1",
            "M1 master CPU",
            f"master CPU, share of one core, per second, {window}",
            "%",
            cpu,
            headline="mean",
            note=f"mean {sum(cpu) / max(len(cpu), 1):.0f}% over the window; heartbeats alone "
            f"(first {sizes.m_idle:g} s) mean {sum(cpu_idle) / max(len(cpu_idle), 1):.0f}%",
        ),
        Measure("M1", "M1 master RSS", "master RSS, per second", "MB", rss, headline="max"),
        Measure(
            "M2",
            "M2 submit",
            f"SubmitTask to a named worker, during M1's last {busy:g} s, 8 in flight",
            "ms",
            d["submit_ms"],
            note=f"{len(d['submit_ms'])} submitted of {sizes.m_submit} planned "
            f"({sizes.m_submit / busy:.0f}/s offered; the master's pace decides how many fit)"
            f"{drive_errors}",
        ),
        Measure(
            "M2",
            "M2 cancel",
            "CancelTasks (one task, a second after its submit), during M1",
            "ms",
            d["cancel_ms"],
            note=f"{len(d['cancel_ms'])} cancelled of {sizes.m_cancel} planned",
        ),
    ]


def _profile(procs: Procs, sizes: Sizes, ui: Ui) -> str:
    """The same load for `profile_window` s with the master under cProfile; its top entries."""
    out = pathlib.Path(procs.tmp) / "master.prof"
    step = ui.step("M  profiling the master", int(sizes.profile_window))
    try:
        step.say("M1+M2 again, master under cProfile")
        _run_window(procs, sizes, sizes.profile_window, sizes.profile_window / 4, step, out)
    finally:
        step.done()
    if not out.exists():
        return "no profile written (the master did not stop cleanly)"
    return summarize_profile(out)
