"""F1-F5: the floor, with the Docker SDK straight against the engine. Each container has the
image, command and limits cloudai's tasks have in section C, so only cloudai differs."""

from __future__ import annotations

import secrets
import threading
import time
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
from bench.ui import Ui

__all__ = ["run_floors"]

_STOP_ACTIONS = ("kill", "die", "destroy")


class _Floor:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.label = f"bench.run={run_id}"
        self.events = Events(self.label, ("bench.item",))

    def create_start(self, api: Any, key: str, command: tuple[str, ...], shape: Shape) -> str:
        created = api.create_container(
            IMAGE,
            command=list(command),
            labels={"bench.run": self.run_id, "bench.item": key},
            name=f"bench-{self.run_id}-{key}",
            host_config=shape.host_config(api),
        )
        api.start(created["Id"])
        return str(created["Id"])


def run_floors(sizes: Sizes, ui: Ui) -> list[Measure]:
    n, g = sizes.n, sizes.grace_parallel
    step = ui.step("F  engine floor", 4 * n + sizes.f5_containers)
    floor = _Floor(secrets.token_hex(4))
    api = api_client()
    f1: list[float] = []
    f2: list[float] = []
    f2_trap: list[float] = []
    uptime_gap: list[float] = []
    f3: list[float] = []
    f4: list[float] = []
    lines: dict[str, list[dict[str, float]]] = {"F1": [], "F3": [], "F4": []}
    try:
        step.say("F1 create+start, F2 kill -s TERM")
        for i in range(n):
            key = f"f2-{i}"
            t0 = time.time()
            cid = floor.create_start(api, key, COOPERATIVE, SLEEPER)
            f1.append((floor.events.wait(key, "start") - t0) * 1000)
            lines["F1"].append(floor.events.timeline(key, t0, ("create", "start")))
            logs = LogLines(cid)
            logs.wait("ready")
            t1 = time.time()
            p = time.perf_counter()
            api.kill(cid, signal="SIGTERM")
            f2.append((time.perf_counter() - p) * 1000)
            f2_trap.append((logs.wait("TERM") - t1) * 1000)
            floor.events.wait(key, "die")
            if (gap := logs.uptime_gap()) is not None:
                uptime_gap.append(gap)
            api.remove_container(cid, force=True)
            step.advance(2)
        step.say("F3 stop + remove (cooperative)")
        for i in range(n):
            key = f"f3-{i}"
            cid = floor.create_start(api, key, COOPERATIVE, SLEEPER)
            LogLines(cid).wait("ready")
            t1 = time.time()
            api.stop(cid, timeout=10)
            api.remove_container(cid)
            f3.append((floor.events.wait(key, "destroy") - t1) * 1000)
            lines["F3"].append(floor.events.timeline(key, t1, _STOP_ACTIONS))
            step.advance()
        step.say(f"F4 stop, 2 s grace, TERM ignored ({g} at once)")

        def f4_one(i: int) -> None:
            own = api_client()
            key = f"f4-{i}"
            cid = floor.create_start(own, key, IGNORES_TERM, SLEEPER)
            LogLines(cid).wait("ready")
            t1 = time.time()
            own.stop(cid, timeout=2)
            own.remove_container(cid)
            f4.append((floor.events.wait(key, "destroy") - t1) * 1000)
            lines["F4"].append(floor.events.timeline(key, t1, _STOP_ACTIONS))
            own.close()
            step.advance()

        run_parallel(f4_one, n, g)
        step.say("F5 throughput, 8 clients")
        rate, cycles = _throughput(floor, sizes.f5_containers, step)
    finally:
        floor.events.close()
        remove_labelled(api, floor.label)
        api.close()
    step.done()
    return [
        Measure(
            "F1",
            "F1",
            "create+start → running (start event)",
            "ms",
            f1,
            note=median_note(lines["F1"], "the create call"),
        ),
        Measure(
            "F2",
            "F2",
            "`kill -s TERM` call",
            "ms",
            f2,
        ),
        Measure(
            "F2",
            "F2 → trap",
            "kill call → TERM trap line inside (engine log stamp)",
            "ms",
            f2_trap,
            note=uptime_note(uptime_gap),
            extra={"uptime_minus_stamp_ms": uptime_gap},
        ),
        Measure(
            "F3",
            "F3",
            "stop (cooperative PID 1) + remove → destroy event",
            "ms",
            f3,
            note=median_note(lines["F3"], "the stop call"),
        ),
        Measure(
            "F4",
            "F4",
            f"stop, 2 s grace, TERM ignored, + remove → destroy ({g} at once)",
            "ms",
            f4,
            note=median_note(lines["F4"], "the stop call"),
        ),
        Measure(
            "F5",
            "F5",
            "containers/s: create/start/wait/remove of `true`, 8 clients",
            "/s",
            cycles,
            value=rate,
            headline="value",
            extra={"n": sizes.f5_containers},
        ),
    ]


def _throughput(floor: _Floor, total: int, step: Any) -> tuple[float, list[float]]:
    """`total` create/start/wait/remove cycles of `true` over 8 clients; containers/s."""
    lock = threading.Lock()
    left = [total]
    cycles: list[float] = []

    def client_loop(c: int) -> None:
        api = api_client()
        i = 0
        try:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                p = time.perf_counter()
                cid = floor.create_start(api, f"f5-{c}-{i}", ("true",), TRUE)
                api.wait(cid, timeout=60)
                api.remove_container(cid)
                with lock:
                    cycles.append((time.perf_counter() - p) * 1000)
                step.advance()
                i += 1
        finally:
            api.close()

    t0 = time.perf_counter()
    run_parallel(client_loop, 8, 8)
    return total / (time.perf_counter() - t0), cycles
