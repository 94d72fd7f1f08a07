"""C1-C7: cloudai (a master and one Docker worker as real processes, on loopback) through its
Python client, timed by the Docker engine's events and log stamps."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.engine import (
    COOPERATIVE,
    IGNORES_TERM,
    SLEEPER,
    TRUE,
    Events,
    LogLines,
    Shape,
    api_client,
    median_note,
    remove_labelled,
    run_parallel,
    uptime_note,
)
from bench.model import Measure
from bench.plan import IMAGE, Sizes
from bench.procs import Procs, free_port, wait_serving
from bench.ui import Step, Ui
from cloudai.client import Client
from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources

__all__ = ["WORKER_ID", "run_cloudai"]

WORKER_ID = "bench-w1"
WORKER_CPU = 2.0  # the worker's capacity: 2 cores, 4 GB
WORKER_MEM = 4.0


def _spec(command: tuple[str, ...], shape: Shape, grace: float | None = None) -> TaskSpec:
    return TaskSpec(
        image=IMAGE,
        command=command,
        resources=Resources(cpu=shape.cpu, mem_gb=shape.mem_gb),
        grace_seconds=grace,
    )


@dataclass
class _Run:
    client: Client
    addr: str
    events: Events
    worker: Any  # the worker's Popen
    timelines: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def started(self, spec: TaskSpec) -> tuple[str, float, str]:
        """Submit; wait for the container's start event. (task_id, submit→start ms, cid)"""
        t0 = time.time()
        task = self.client.submit(spec)
        at = self.events.wait(task.task_id, "start")
        return task.task_id, (at - t0) * 1000, self.events.ids[task.task_id]

    def record(
        self, figure: str, task_id: str, origin: float | str, keys: tuple[str, ...]
    ) -> dict[str, float]:
        """Where the time went, for the notes: the master's events, the worker's stop report
        and the engine's events of one task, in ms from `origin` (a time, or one of these
        events), all on this host's clock. For a cancelled task, waits briefly for the
        worker's `removed` report first. Returns the times found (Unix seconds)."""
        task = self.client.get_task(task_id)
        deadline = time.monotonic() + 5
        while task.cancellation is not None and task.cancellation.removed_at is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
            task = self.client.get_task(task_id)
        at: dict[str, float] = {}
        for e in task.events:
            at.setdefault(e.kind, e.at)
        c = task.cancellation
        if c is not None:
            at["decided"] = c.requested_at
            if c.delivered_at is not None:
                at["stop delivered"] = c.delivered_at
            for name in ("signal", "killed", "exited", "removed"):
                if (when := getattr(c, f"{name}_at")) is not None:
                    at[f"worker {name}"] = when
        for action, when in self.events.times.get(task_id, {}).items():
            at[f"engine {action}"] = when
        zero = at.get(origin) if isinstance(origin, str) else origin
        if zero is not None:
            row = {k: (at[k] - zero) * 1000 for k in keys if k in at}
            self.timelines.setdefault(figure, []).append(row)
        return at

    def timeline_note(self, figure: str, origin: str) -> str:
        return median_note(self.timelines.get(figure) or [], origin)


_SUBMIT_KEYS = ("submitted", "placed", "delivered", "engine create", "engine start")
_RUN_KEYS = (
    "delivered",
    "engine create",
    "engine start",
    "engine die",
    "completed",
    "engine destroy",
)
_STOP_KEYS = (
    "decided",
    "stop delivered",
    "worker signal",
    "engine kill",
    "worker killed",
    "engine die",
    "worker exited",
    "engine destroy",
    "worker removed",
)


def run_cloudai(sizes: Sizes, ui: Ui) -> list[Measure]:
    n = sizes.n
    step = ui.step("C  cloudai", 4 * n + 2 * n + sizes.c7_tasks)
    api = api_client()
    label = f"cloudai.worker={WORKER_ID}"
    remove_labelled(api, label)  # a previous run's leftovers would confuse the events
    procs = Procs()
    try:
        step.say("starting master and worker")
        port = free_port()
        master = procs.master(port, f"sqlite:///{procs.tmp / 'c.db'}")
        wait_serving(port, master)
        events = Events(label, ("cloudai.task",))
        worker = procs.worker(WORKER_ID, port, free_port(), cpu=WORKER_CPU, mem=WORKER_MEM)
        addr = f"127.0.0.1:{port}"
        with Client(addr, user="bench") as client:
            run = _Run(client, addr, events, worker)
            try:
                return _measure(run, sizes, step)
            finally:
                events.close()
    except Exception as exc:
        raise RuntimeError(f"{exc}\n{procs.tail()}") from exc
    finally:
        step.done()
        procs.close()  # the worker leaves its containers behind on purpose: remove them
        remove_labelled(api, label)
        api.close()


def _measure(run: _Run, sizes: Sizes, step: Step) -> list[Measure]:
    n, g = sizes.n, sizes.grace_parallel
    c1: list[float] = []
    c2: list[float] = []
    c3: list[float] = []
    c6: list[float] = []
    gaps: list[float] = []
    step.say("C1 submit, C2 SIGTERM, C3 removed, C6 answer")
    for _ in range(n):
        t0 = time.time()
        tid, took, cid = run.started(_spec(COOPERATIVE, SLEEPER))
        c1.append(took)
        logs = LogLines(cid)
        logs.wait("ready")
        t1 = time.time()
        p = time.perf_counter()
        (ack,) = run.client.cancel_many([tid])
        c6.append((time.perf_counter() - p) * 1000)
        _check(ack)
        c2.append((logs.wait("TERM") - t1) * 1000)
        destroyed = run.events.wait(tid, "destroy")
        if (gap := logs.uptime_gap()) is not None:
            gaps.append(gap)
        c3.append((destroyed - t1) * 1000)
        run.record("C1", tid, t0, _SUBMIT_KEYS)
        run.record("C3", tid, t1, _STOP_KEYS)
        step.advance(2)

    step.say(f"C4 grace 2 s, TERM ignored ({g} at once)")
    c4 = _cancel_each(run, n, g, IGNORES_TERM, step, "C4", grace=2.0)
    step.say("C5 --force")
    c5 = _cancel_each(run, n, 1, COOPERATIVE, step, "C5", force=True)
    step.say("C6 worker SIGSTOPped")
    c6_stopped, queued = _cancel_stopped_worker(run, n, step)
    step.say("C7 throughput, 8 clients")
    rate, per_task, c7_note = _throughput(run, sizes.c7_tasks, step)
    return [
        Measure(
            "C1",
            "C1",
            "submit → container running (start event)",
            "ms",
            c1,
            note=run.timeline_note("C1", "the submit call"),
        ),
        Measure(
            "C2",
            "C2",
            "cancel → SIGTERM inside (trap line, engine log stamp)",
            "ms",
            c2,
            note=uptime_note(gaps),
            extra={"uptime_minus_stamp_ms": gaps},
        ),
        Measure(
            "C3",
            "C3",
            "cancel → container removed (destroy event), cooperative",
            "ms",
            c3,
            note=run.timeline_note("C3", "the cancel call"),
        ),
        Measure(
            "C4",
            "C4",
            f"cancel --grace 2 → removed, TERM ignored ({g} at once)",
            "ms",
            c4,
            note=run.timeline_note("C4", "the cancel call"),
        ),
        Measure(
            "C5",
            "C5",
            "cancel --force → removed",
            "ms",
            c5,
            note=run.timeline_note("C5", "the cancel call"),
        ),
        Measure("C6", "C6 reachable", "cancel call's answer, worker reachable", "ms", c6),
        Measure(
            "C6",
            "C6 worker stopped",
            "cancel call's answer, worker SIGSTOPped",
            "ms",
            c6_stopped,
            note=f"{queued} of {len(c6_stopped)} answered 'queued' (the worker never acked)",
        ),
        Measure(
            "C7",
            "C7",
            "tasks/s: 8 clients submit `true`; first submit → last `completed`",
            "/s",
            per_task,
            value=rate,
            headline="value",
            note=c7_note,
            extra={"n": sizes.c7_tasks},
        ),
    ]


def _check(ack: Any) -> None:
    if not ack.success:
        raise RuntimeError(f"cancel of {ack.task_id} failed: {ack.message}")


def _cancel_each(
    run: _Run,
    n: int,
    parallel: int,
    command: tuple[str, ...],
    step: Step,
    figure: str,
    force: bool = False,
    grace: float | None = None,
) -> list[float]:
    """n tasks, `parallel` at once: start, wait until ready, cancel, time to the destroy."""
    out: list[float] = []

    def one(_i: int) -> None:
        tid, _took, cid = run.started(_spec(command, SLEEPER))
        LogLines(cid).wait("ready")
        t1 = time.time()
        (ack,) = run.client.cancel_many([tid], force=force, grace=grace)
        _check(ack)
        destroyed = run.events.wait(tid, "destroy")
        out.append((destroyed - t1) * 1000)
        run.record(figure, tid, t1, _STOP_KEYS)
        step.advance()

    run_parallel(one, n, parallel)
    return out


def _cancel_stopped_worker(run: _Run, n: int, step: Step) -> tuple[list[float], int]:
    """n running tasks; the worker SIGSTOPped; each cancelled alone; SIGCONT always."""
    ids = [run.started(_spec(COOPERATIVE, SLEEPER))[0] for _ in range(n)]
    out: list[float] = []
    queued = 0
    os.kill(run.worker.pid, signal.SIGSTOP)
    try:
        for tid in ids:
            p = time.perf_counter()
            (ack,) = run.client.cancel_many([tid])
            out.append((time.perf_counter() - p) * 1000)
            _check(ack)
            queued += ack.queued
            step.advance()
    finally:
        os.kill(run.worker.pid, signal.SIGCONT)
    for tid in ids:  # the queued orders reach the worker once it runs again
        run.events.wait(tid, "destroy", timeout=120)
        step.advance()
    return out, queued


def _throughput(run: _Run, total: int, step: Step) -> tuple[float, list[float], str]:
    """8 clients submit `total` `true` tasks; tasks/s from the first submit to the master's
    last `completed` decision (its event time), and each task's submit → completed."""
    owner = f"bench-c7-{secrets.token_hex(3)}"
    lock = threading.Lock()
    submitted: dict[str, float] = {}
    left = [total]

    def client_loop(_c: int) -> None:
        with Client(run.addr, user=owner) as client:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                t0 = time.time()
                task = client.submit(_spec(("true",), TRUE))
                with lock:
                    submitted[task.task_id] = t0

    run_parallel(client_loop, 8, 8)
    done: set[str] = set()
    deadline = time.monotonic() + 60 + total
    while len(done) < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"C7: only {len(done)} of {total} tasks ended")
        ended = {
            t.task_id
            for t in run.client.list_tasks(owner=owner)
            if t.status.value in ("completed", "failed", "cancelled")
        }
        step.advance(len(ended - done))
        done |= ended
        time.sleep(0.25)
    first = min(submitted.values())
    per_task: list[float] = []
    last = first
    failed = 0
    busy = 0.0  # slot-seconds held: from placement to the `completed` that frees the slot
    for tid, t0 in submitted.items():
        at = run.record("C7", tid, "placed", _RUN_KEYS)
        if "completed" not in at or "placed" not in at:
            failed += 1
            continue
        per_task.append((at["completed"] - t0) * 1000)
        busy += at["completed"] - at["placed"]
        last = max(last, at["completed"])
    span = last - first
    slots = int(WORKER_CPU / TRUE.cpu)
    idle = (slots * span - busy) / max(total - failed, 1) * 1000
    note = (
        f"{run.timeline_note('C7', 'the placement')}; each of the worker's {slots} slots "
        f"({WORKER_CPU:g} cores / {TRUE.cpu:g}) sat empty {idle:.0f} ms per task on average "
        "(from a `completed` to the next placement, plus the first and last round)"
    )
    if failed:
        note += f"; {failed} did not end completed"
    return (total - failed) / span if span > 0 else 0.0, per_task, note
