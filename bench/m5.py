"""Section K: the master with many workers, heartbeats only, on SQLite and on PostgreSQL.

M5: `m5_workers` (5,000) simulated workers heartbeating every 5 s for `m5_window` s after they
all registered; the master's heartbeat p99, CPU (mean, % of a core) and RSS (max), per store,
with each load generator's CPU. The scaling curve: the same for each of `k_points` workers
(250 … 5,000), `k_window` s each; the M5 run is the curve's point of its size. Each point is
a fresh master on a fresh store (SQLite file, or a database created and dropped on the
PostgreSQL server of --pg-url)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from bench.fleet import INTERVAL, Window, loadgen_note, loadgens_for, run_load
from bench.model import Measure, missing, percentile
from bench.plan import Sizes
from bench.procs import Procs, free_port, wait_serving
from bench.secure import Peer
from bench.store_scale import pg_database
from bench.ui import Step, Ui

__all__ = ["run_fleet_scale"]

BASELINE_S = 3.0  # the idle master's CPU, before the workers come, for "CPU per heartbeat"


def _point(procs: Procs, url: str, workers: int, window: float, step: Step) -> Window:
    port, wport = free_port(), free_port()
    master = procs.master(port, url, log_name=f"k-master-{workers}.log", worker_port=wport)
    wait_serving(port, master, credentials=procs.credentials())
    try:
        ids = [f"sim-{i:05d}" for i in range(workers)]
        gens = loadgens_for(workers)
        pki = str(procs.pki_dir) if procs.pki_dir else None
        addr = Peer(f"127.0.0.1:{wport if pki else port}", pki)
        return run_load(
            addr, master.pid, ids, gens, window, window, step, baseline=min(BASELINE_S, window / 2)
        )
    finally:
        procs.stop(master, timeout=60)


@contextlib.contextmanager
def _store(procs: Procs, kind: str, pg_url: str | None, workers: int) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{procs.tmp / f'k-{workers}.db'}"
    elif pg_url is not None:
        with pg_database(pg_url) as url:
            yield url


def _summary(kind: str, workers: int, w: Window) -> dict[str, Any]:
    hb = w.beats_in(w.start, w.end)
    cpu = w.cpu_in(w.start, w.end)
    gens, saturated = loadgen_note(w)
    return {
        "store": kind,
        "secure": w.secure,
        "workers": workers,
        "heartbeats": len(hb),
        "heartbeat_p99_ms": round(percentile(hb, 99), 2) if hb else None,
        "master_cpu_mean_pct": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "master_rss_max_mb": round(max(r for _, r in w.rss), 1) if w.rss else None,
        "cpu_us_per_heartbeat": round(w.cpu_us_per_call(w.start, w.end) or 0.0, 1),
        "master_idle_cpu_pct": round(w.idle_pct, 1),
        "loadgen_cpu_mean_pct": [round(sum(xs) / len(xs), 1) for xs in w.loadgen_cpu if xs],
        "loadgen_saturated": saturated,
        "register_p99_ms": round(percentile(w.register_ms, 99), 1) if w.register_ms else None,
        "failed": w.hb_error_count,
        "note": gens,
    }


def run_fleet_scale(
    sizes: Sizes, ui: Ui, pg_url: str | None, curve: list[dict[str, Any]], secure: bool = True
) -> list[Measure]:
    """M5's rows; the curve's points go to `curve`."""
    kinds = ["sqlite", "postgresql"]
    points = sorted({*sizes.k_points, sizes.m5_workers})
    seconds = sum(sizes.m5_window if n == sizes.m5_workers else sizes.k_window for n in points)
    step = ui.step("M5 K   workers at scale", int(seconds * len(kinds)))
    out: list[Measure] = []
    try:
        with Procs(secure=secure) as procs:
            for kind in kinds:
                if kind == "postgresql" and not pg_url:
                    out += _missing(kind, "no PostgreSQL: set CLOUDAI_TEST_PG_URL or pass --pg-url")
                    continue
                for n in points:
                    m5 = n == sizes.m5_workers
                    step.say(f"{kind}: {n} workers register, then heartbeat")
                    try:
                        with _store(procs, kind, pg_url, n) as url:
                            w = _point(
                                procs, url, n, sizes.m5_window if m5 else sizes.k_window, step
                            )
                    except Exception as exc:  # one store's failure leaves the other's figures
                        why = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                        ui.log(
                            f"{kind}, {n} workers: {why}\n{procs.tail(chars=1500)}", markup=False
                        )
                        if m5:
                            out += _missing(kind, why)
                        continue
                    if n in sizes.k_points:
                        curve.append(_summary(kind, n, w))
                    if m5:
                        out += _measures(kind, n, w, sizes)
    finally:
        step.done()
    return out


def _missing(kind: str, why: str) -> list[Measure]:
    return [
        missing("M5", f"M5 {what} {kind}", what, unit, why)
        for what, unit in (("heartbeat", "ms"), ("master CPU", "%"), ("master RSS", "MB"))
    ]


def _measures(kind: str, n: int, w: Window, sizes: Sizes) -> list[Measure]:
    tls = "TLS" if w.secure else "--insecure"
    fleet = f"{n} workers, heartbeat every {INTERVAL:g} s, {sizes.m5_window:g} s, {kind}, {tls}"
    gens, _ = loadgen_note(w)
    s = _summary(kind, n, w)
    errors = f"; {w.hb_error_count} heartbeats failed ({w.hb_errors[:2]})" if w.hb_errors else ""
    return [
        Measure(
            "M5",
            f"M5 heartbeat {kind}",
            f"Heartbeats (one stream per worker), {fleet}",
            "ms",
            w.beats_in(w.start, w.end),
            note=f"registration (16 at once per load generator) p99 "
            f"{s['register_p99_ms']} ms; master CPU per heartbeat "
            f"{s['cpu_us_per_heartbeat']:.0f} µs{errors}",
        ),
        Measure(
            "M5",
            f"M5 master CPU {kind}",
            f"master CPU, % of one core, per second, {fleet}",
            "%",
            w.cpu_in(w.start, w.end),
            headline="mean",
            note=gens,
        ),
        Measure(
            "M5",
            f"M5 master RSS {kind}",
            f"master RSS, per second, {fleet}",
            "MB",
            [r for _, r in w.rss],
            headline="max",
        ),
    ]
