"""M1 and M2: one master (a real process, SQLite store) under many simulated workers
heartbeating every 5 s (M1), with tasks submitted to them and half cancelled during the window
(M2, after the first `m_idle` seconds of heartbeats alone), offered at a fixed rate
(bench/m2driver.py). The master's CPU and RSS are sampled every second with psutil. After a
miss, the same load runs briefly again with the master under cProfile, and the profile's top
entries are kept with the results."""

from __future__ import annotations

import pathlib
from typing import Any

from bench.fleet import INTERVAL, Window, loadgen_note, run_load
from bench.m2driver import driver_main
from bench.model import Measure, percentile
from bench.plan import IMAGE, Sizes
from bench.procs import Procs, free_port, wait_serving
from bench.profiling import summarize_profile
from bench.secure import Peer
from bench.targets import judge
from bench.ui import Step, Ui

__all__ = ["run_master_scale"]

BASELINE_S = 5.0  # the idle master's CPU, before the workers come, for "CPU per heartbeat"
SLACK_S = 1.0  # M2: a call answered this long after the window's end still kept up


def _run_window(
    procs: Procs, sizes: Sizes, window: float, idle: float, step: Step | None, profile: Any
) -> Window:
    port, wport = free_port(), free_port()
    db = f"sqlite:///{procs.tmp / ('m1-prof.db' if profile else 'm1.db')}"
    master = procs.master(port, db, profile_to=profile, log_name="m-master.log", worker_port=wport)
    wait_serving(port, master, credentials=procs.credentials())
    try:
        ids = [f"sim-{i:04d}" for i in range(sizes.m_workers)]
        submit = round(sizes.m_submit * (window - idle) / (sizes.m_window - sizes.m_idle))
        cancel = round(sizes.m_cancel * submit / max(sizes.m_submit, 1))
        pki = str(procs.pki_dir) if procs.pki_dir else None
        workers = Peer(f"127.0.0.1:{wport if pki else port}", pki)
        client = Peer(f"127.0.0.1:{port}", pki, procs.token)
        return run_load(
            workers,
            master.pid,
            ids,
            sizes.m_loadgens,
            window,
            idle,
            step,
            driver=(driver_main, (client, ids, IMAGE, submit, cancel)),
            baseline=min(BASELINE_S, window / 2),
        )
    finally:
        procs.stop(master, timeout=60)  # a profiled master writes its stats on the way out


def run_master_scale(
    sizes: Sizes, ui: Ui, profiles: dict[str, str] | None, secure: bool = True
) -> list[Measure]:
    step = ui.step("M1 M2  master scale", int(sizes.m_window))
    with Procs(secure=secure) as procs:
        try:
            step.say(f"{sizes.m_workers} workers register, then heartbeat")
            w = _run_window(procs, sizes, sizes.m_window, sizes.m_idle, step, None)
        except Exception as exc:
            raise RuntimeError(f"{exc}\n{procs.tail()}") from exc
        finally:
            step.done()
        measures = _measures(w, sizes, secure)
        judge(measures)
        if profiles is not None and sizes.profile_window and any(m.met is False for m in measures):
            profiles["M1+M2 master (cProfile)"] = _profile(procs, sizes, ui)
    return measures


def _measures(w: Window, sizes: Sizes, secure: bool) -> list[Measure]:
    hb_idle, hb_busy = w.beats_in(w.start, w.idle_end), w.beats_in(w.idle_end, w.end)
    cpu_idle, cpu_busy = w.cpu_in(w.start, w.idle_end), w.cpu_in(w.idle_end, w.end)
    per_beat = w.cpu_us_per_call(w.start, w.idle_end)
    gross = w.cpu_us_per_call(w.start, w.idle_end, net=False) or 0.0
    rss = [r for _, r in w.rss]
    d = w.drive
    hb_errors = f"; {w.hb_error_count} heartbeats failed ({w.hb_errors[:2]})" if w.hb_errors else ""
    fleet = f"{sizes.m_workers} workers, heartbeat every {INTERVAL:g} s, {_security(secure)}"
    busy = sizes.m_window - sizes.m_idle
    alone = f"{fleet}, heartbeats alone (the first {sizes.m_idle:g} s of {sizes.m_window:g})"
    with_m2 = f"{fleet}, with M2 on top (the last {busy:g} s)"
    gens, _ = loadgen_note(w)

    def p99(xs: list[float]) -> str:
        return f"{percentile(xs, 99):.0f} ms" if xs else "none"

    drive_errors = f"; {d['error_count']} calls failed ({d['errors'][:2]})" if d["errors"] else ""
    if w.update_errors:
        drive_errors += f"; the simulated workers' stop updates failed: {w.update_errors[:2]}"
    planned, cancels = d["offered"], d["cancels_planned"]
    submitted, cancelled = len(d["submit_ms"]), len(d["cancel_ms"])
    # Keeping up: a submit answered by the window's end (+ SLACK_S), a cancel (offered a second
    # after its submit) by a second later; what is answered after that was a backlog.
    in_time = sum(at <= w.end + SLACK_S for at in d["submit_done"])
    in_time_c = sum(at <= w.end + 1 + SLACK_S for at in d["cancel_done"])
    accepted = 100.0 * (in_time + in_time_c) / max(planned + cancels, 1)
    rate = planned / busy
    return [
        Measure(
            "M1",
            "M1 heartbeat alone",
            f"Heartbeats (one stream per worker), {alone}",
            "ms",
            hb_idle,
            note=f"registration of the {sizes.m_workers} workers (16 at once per load "
            f"generator) p99 {p99(w.register_ms)}{hb_errors}",
        ),
        Measure(
            "M1",
            "M1 master CPU alone",
            f"master CPU, % of one core, per second, {alone}",
            "%",
            cpu_idle,
            headline="mean",
            note=gens,
        ),
        Measure(
            "M1",
            "M1 CPU per heartbeat",
            f"master CPU time per heartbeat, {alone}, less the idle master's "
            f"({w.idle_pct:.1f}% of a core, measured {w.idle_s:g} s before the workers came)",
            "µs",
            value=per_beat,
            headline="value",
            extra={"n": len(hb_idle), "gross_us": gross, "idle_pct": w.idle_pct},
            note=f"{gross:.0f} µs with the idle loops included",
        ),
        Measure(
            "M1",
            "M1 heartbeat with M2",
            f"Heartbeats (one stream per worker), {with_m2}",
            "ms",
            hb_busy,
        ),
        Measure(
            "M1",
            "M1 master CPU with M2",
            f"master CPU, % of one core, per second, {with_m2}",
            "%",
            cpu_busy,
            headline="mean",
        ),
        Measure(
            "M1", "M1 master RSS", "master RSS, per second, whole window", "MB", rss, headline="max"
        ),
        Measure(
            "M2",
            "M2 submit",
            f"SubmitTask to a named worker, {rate:.0f}/s offered (open loop) over M1's last "
            f"{busy:g} s, 8 clients",
            "ms",
            d["submit_ms"],
            note=f"{submitted} accepted of {planned} offered ({w.assigned} AssignTask calls "
            f"reached the simulated workers); at most {d['max_in_flight']} "
            f"calls in flight; {d['late_offers']} offers went out over 100 ms late"
            f"{drive_errors}",
        ),
        Measure(
            "M2",
            "M2 cancel",
            "CancelTasks (one task, a second after its submit was offered), during M1",
            "ms",
            d["cancel_ms"],
            note=f"{cancelled} accepted of {cancels} planned (the last ones go out up to a "
            "second after the heartbeat window)",
        ),
        Measure(
            "M2",
            "M2 accepted",
            f"submits and cancels accepted in time (a submit by the window's end + "
            f"{SLACK_S:g} s, a cancel a second later), of those planned ({planned} submits at "
            f"{rate:.0f}/s, {cancels} cancels)",
            "%",
            value=accepted,
            headline="value",
            extra={"n": planned + cancels, "rate_per_s": rate},
            note=f"in time: {in_time} of {planned} submits, {in_time_c} of {cancels} cancels; "
            f"accepted at all: {submitted} submits, {cancelled} cancels",
        ),
    ]


def _security(secure: bool) -> str:
    return "TLS (mutual for workers)" if secure else "--insecure"


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
