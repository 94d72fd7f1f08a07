"""S1-S7: Docker Swarm on the same engine, the peer a Docker user would pick instead.

`docker swarm init --advertise-addr 127.0.0.1` (only when the engine is not in a swarm
already; then it leaves again, and removes the docker_gwbridge network it created), then
one-shot services (`--restart-condition none`) of the same image, command and limits as
cloudai's tasks, made through the engine's API like `docker service create
--no-resolve-image` (the API never resolves the image on a registry). Timed by the engine's
events and log stamps, as in sections F and C."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from typing import Any

import docker.errors
from docker.types import ContainerSpec, RestartPolicy, TaskTemplate
from docker.types import Resources as SwarmResources

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
)
from bench.model import Measure, missing
from bench.plan import IMAGE, Sizes
from bench.ui import Step, Ui

__all__ = ["run_swarm"]

_STOP_ACTIONS = ("kill", "die", "destroy")

_FIGURES = (
    ("S1", "service create → task container start", "ms"),
    ("S2", "service rm → SIGTERM inside (trap line)", "ms"),
    ("S3", "service rm → container removed, cooperative", "ms"),
    ("S4", "service rm → removed, 2 s stop grace, TERM ignored", "ms"),
    ("S7", "tasks/s: batch of one-shot `true` services", "/s"),
)


def _all_missing(why: str) -> list[Measure]:
    return [missing(f, f, title, unit, why) for f, title, unit in _FIGURES]


class _Swarm:
    def __init__(self, api: Any, run_id: str) -> None:
        self.api = api
        self.run_id = run_id
        self.label = f"bench.run={run_id}"
        self.events = Events(self.label, ("bench.item",))
        self.services: dict[str, str] = {}  # key -> service ID

    def create(
        self, api: Any, key: str, command: tuple[str, ...], shape: Shape, grace: float = 0
    ) -> float:
        """Create a one-shot service; returns the time just before the call."""
        spec = ContainerSpec(
            IMAGE,
            command=list(command),
            labels={"bench.run": self.run_id, "bench.item": key},
            stop_grace_period=int(grace * 1e9) if grace else None,
        )
        template = TaskTemplate(
            container_spec=spec,
            restart_policy=RestartPolicy(condition="none"),
            resources=SwarmResources(
                cpu_limit=int(shape.cpu * 1e9), mem_limit=int(shape.mem_gb * 1024**3)
            ),
        )
        t0 = time.time()
        svc = api.create_service(
            template, name=f"bench-{self.run_id}-{key}", labels={"bench.run": self.run_id}
        )
        self.services[key] = svc["ID"]
        return t0

    def remove(self, api: Any, key: str) -> float:
        t1 = time.time()
        api.remove_service(self.services.pop(key))
        return t1

    def cleanup(self) -> None:
        for svc in self.api.services(filters={"label": self.label}):
            with contextlib.suppress(docker.errors.APIError):
                self.api.remove_service(svc["ID"])
        deadline = time.monotonic() + 60
        while self.api.containers(all=True, filters={"label": self.label}):
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        remove_labelled(self.api, self.label)
        self.events.close()


def run_swarm(sizes: Sizes, ui: Ui) -> list[Measure]:
    api = api_client()
    try:
        state = api.info().get("Swarm", {}).get("LocalNodeState", "")
        joined = False
        had_gwbridge = bool(api.networks(names=["docker_gwbridge"]))
        if state == "inactive":
            try:
                api.init_swarm(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
            except docker.errors.APIError as exc:
                return _all_missing(f"docker swarm init failed: {exc.explanation or exc}")
            joined = True
        elif state != "active" or not api.info()["Swarm"].get("ControlAvailable"):
            return _all_missing(f"the engine is in swarm state {state!r}, not a manager")
        try:
            return _measure(api, sizes, ui)
        finally:
            if joined:
                api.leave_swarm(force=True)
                if not had_gwbridge:
                    with contextlib.suppress(docker.errors.APIError):
                        api.remove_network("docker_gwbridge")
    finally:
        api.close()


def _measure(api: Any, sizes: Sizes, ui: Ui) -> list[Measure]:
    n, g = sizes.n, sizes.grace_parallel
    step = ui.step("S  Docker Swarm", 2 * n + sizes.s7_services)
    swarm = _Swarm(api, secrets.token_hex(4))
    s1: list[float] = []
    s2: list[float] = []
    s3: list[float] = []
    lines: dict[str, list[dict[str, float]]] = {"S1": [], "S3": [], "S4": []}
    try:
        step.say("S1 create, S2 SIGTERM, S3 rm → removed")
        for i in range(n):
            key = f"s3-{i}"
            t0 = swarm.create(api, key, COOPERATIVE, SLEEPER)
            s1.append((swarm.events.wait(key, "start") - t0) * 1000)
            lines["S1"].append(swarm.events.timeline(key, t0, ("create", "start")))
            logs = LogLines(swarm.events.ids[key])
            logs.wait("ready")
            t1 = swarm.remove(api, key)
            s2.append((logs.wait("TERM") - t1) * 1000)
            s3.append((swarm.events.wait(key, "destroy") - t1) * 1000)
            lines["S3"].append(swarm.events.timeline(key, t1, _STOP_ACTIONS))
            step.advance()
        step.say(f"S4 2 s grace, TERM ignored ({g} at once)")
        s4 = _grace_each(swarm, n, g, step, lines["S4"])
        step.say("S7 batch of one-shot services")
        rate, per_task = _batch(swarm, sizes.s7_services, step)
    finally:
        step.say("removing services")
        swarm.cleanup()
        step.done()
    return [
        Measure(
            "S1", "S1", _FIGURES[0][1], "ms", s1, note=median_note(lines["S1"], "the create call")
        ),
        Measure("S2", "S2", _FIGURES[1][1], "ms", s2),
        Measure("S3", "S3", _FIGURES[2][1], "ms", s3, note=median_note(lines["S3"], "the rm call")),
        Measure(
            "S4",
            "S4",
            f"{_FIGURES[3][1]} ({g} at once)",
            "ms",
            s4,
            note=median_note(lines["S4"], "the rm call"),
        ),
        Measure(
            "S7",
            "S7",
            f"tasks/s: {sizes.s7_services} one-shot `true` services from 8 clients; "
            "first create → last container exit",
            "/s",
            per_task,
            value=rate,
            headline="value",
            extra={"n": sizes.s7_services},
        ),
    ]


def _grace_each(
    swarm: _Swarm, n: int, parallel: int, step: Step, lines: list[dict[str, float]]
) -> list[float]:
    out: list[float] = []

    def one(i: int) -> None:
        api = api_client()
        key = f"s4-{i}"
        try:
            swarm.create(api, key, IGNORES_TERM, SLEEPER, grace=2.0)
            swarm.events.wait(key, "start")
            LogLines(swarm.events.ids[key]).wait("ready")
            t1 = swarm.remove(api, key)
            out.append((swarm.events.wait(key, "destroy") - t1) * 1000)
            lines.append(swarm.events.timeline(key, t1, _STOP_ACTIONS))
            step.advance()
        finally:
            api.close()

    run_parallel(one, n, parallel)
    return out


def _batch(swarm: _Swarm, total: int, step: Step) -> tuple[float, list[float]]:
    """`total` one-shot `true` services created by 8 clients; tasks/s from the first create
    to the last container exit (its die event); each service's create → die."""
    lock = threading.Lock()
    left = [total]
    created: dict[str, float] = {}

    def client_loop(c: int) -> None:
        api = api_client()
        i = 0
        try:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                key = f"s7-{c}-{i}"
                t0 = swarm.create(api, key, ("true",), TRUE)
                with lock:
                    created[key] = t0
                i += 1
        finally:
            api.close()

    run_parallel(client_loop, 8, 8)
    died = {}
    for key in created:
        died[key] = swarm.events.wait(key, "die", timeout=120)
        step.advance()
    first, last = min(created.values()), max(died.values())
    return total / (last - first), [(died[k] - created[k]) * 1000 for k in created]
