"""The soak itself: a real secure cluster (tests/cluster.py's ProcCluster: `cloudai certs init`,
a certificate per worker, TLS and the admin's token) with 3 Docker workers, a steady load of
submits, cancels and completions, faults injected at random, and the invariants checked every
10 s (bench/chaos_check.py)."""

from __future__ import annotations

import contextlib
import heapq
import os
import pathlib
import random
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.chaos_check import MASTER, Disturbances, Judge
from bench.plan import IMAGE
from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.errors import CloudAIError
from tests.cluster import ProcCluster
from tests.invariants import docker_engine, master_allocated, read_store

__all__ = ["Settings", "Soak"]

FAULTS = (
    "worker_kill_restart",
    "worker_stop_cont",
    "master_kill_restart",
    "worker_away",
    "cancel_burst",
)


@dataclass(frozen=True)
class Settings:
    seconds: float
    seed: int
    fault_gap: float = 20.0  # mean seconds between faults
    lost_after: float = 15.0  # --worker-lost-after
    heartbeat: float = 0.5  # unhealthy after 3 missed, offline after 12 (core/models.py)
    check_every: float = 10.0
    grace: float = 15.0  # one reconciliation interval, as tests/invariants.py waits
    active: int = 8  # the load keeps about this many tasks unfinished
    workers: int = 3


def _task(rng: random.Random, seconds: float) -> TaskSpec:
    """A task that sleeps, ends at once on SIGTERM, and exits 3 one time in ten."""
    end = "exit 3" if rng.random() < 0.1 else "exit 0"
    script = f"trap 'exit 143' TERM; sleep {seconds:.2f} & wait; {end}"
    return TaskSpec(
        image=IMAGE,
        command=("sh", "-c", script),
        resources=Resources(cpu=0.1, mem_gb=0.05),
        grace_seconds=5,
    )


@dataclass
class Tally:
    faults: Counter[str] = field(default_factory=Counter)
    submit_errors: int = 0
    cancels: int = 0
    cancel_errors: int = 0
    log: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # the soak's own threads that failed


class Soak:
    def __init__(
        self, settings: Settings, tmp: pathlib.Path, docker: Any, say: Callable[[str], None]
    ) -> None:
        self.s = settings
        self.rng = random.Random(settings.seed)  # the faults
        self.load_rng = random.Random(settings.seed + 1)
        self.tmp = tmp
        self.docker = docker
        self.say = say
        self.tag = secrets.token_hex(3)
        self.worker_ids = tuple(f"chaos-{self.tag}-{i}" for i in range(1, settings.workers + 1))
        self.tally = Tally()
        self.faults = Disturbances(settings.grace)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[str] = []
        self.unfinished: set[str] = set()
        self.due: list[tuple[float, str]] = []  # cancels to send: (when, task_id), a heap
        self.away: dict[str, float] = {}  # a worker killed and left down: when it returns
        self.t0 = time.monotonic()
        self.c: ProcCluster | None = None

    # ---- the cluster ---------------------------------------------------------------------

    @property
    def cluster(self) -> ProcCluster:
        if self.c is None:
            raise RuntimeError("the cluster is not up")
        return self.c

    def start(self) -> None:
        args = (
            "--worker-lost-after",
            f"{self.s.lost_after:g}",
            "--heartbeat-interval",
            f"{self.s.heartbeat:g}",
            "--rate-limit-submit",
            "0",
            "--rate-limit-cancel",
            "0",
            "--metrics-listen",
            "off",
        )
        self.c = ProcCluster(self.tmp, master_args=args)
        with ThreadPoolExecutor(len(self.worker_ids)) as pool:  # each its own certificate
            list(pool.map(self._start_worker, self.worker_ids))

    def _start_worker(self, worker_id: str) -> None:
        extra = ("--heartbeat-interval", f"{self.s.heartbeat:g}", "--metrics-listen", "off")
        self.cluster.add_worker(worker_id, runtime="docker", cpu=4, mem=2, extra=extra)

    def restart_master(self) -> None:
        """As tests/e2e/test_faults.py does: a fresh client (the old channel backs off)."""
        c = self.cluster
        old, c.client = c.client, c.new_client()
        old.close()
        c.start_master()

    def judge(self) -> Judge:
        c = self.cluster
        return Judge(
            store=lambda: read_store(c.db_url),
            engine=docker_engine(self.docker),
            worker_ids=self.worker_ids,
            allocated=lambda: master_allocated(c.client)(),
            faults=self.faults,
            acknowledged=self.acknowledged,
            grace=self.s.grace,
        )

    def acknowledged(self) -> list[str]:
        with self.lock:
            return list(self.acked)

    def close(self) -> None:
        """Stop the processes, then remove the containers of this run's workers (a stopped
        worker leaves its tasks running, as it should)."""
        if self.c is not None:
            for proc in self.c.workers.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
            self.c.close()
        for w in self.worker_ids:
            for found in self.docker.api.containers(
                all=True, filters={"label": f"cloudai.worker={w}"}
            ):
                with contextlib.suppress(Exception):  # gone already
                    self.docker.api.remove_container(found["Id"], force=True)

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:7.1f}s {text}"
        self.tally.log.append(line)
        self.say(line)

    def guarded(self, loop: Callable[[], None]) -> Callable[[], None]:
        """A thread's loop; if it fails, the soak says so and fails too (never a soak that
        quietly stopped injecting faults)."""

        def run() -> None:
            try:
                loop()
            except Exception as exc:  # recorded: the run's exit status says it
                self.note(f"the soak's {loop.__name__} failed: {type(exc).__name__}: {exc}")
                self.tally.broken.append(f"{loop.__name__}: {type(exc).__name__}: {exc}")

        return run

    # ---- the load ------------------------------------------------------------------------

    def submit(self, spec: TaskSpec) -> str | None:
        try:
            task_id = str(self.cluster.client.submit(spec).task_id)
        except CloudAIError:  # the master is down: not acknowledged, nothing promised
            self.tally.submit_errors += 1
            return None
        with self.lock:
            self.acked.append(task_id)
            self.unfinished.add(task_id)
        return task_id

    def cancel(self, task_id: str) -> None:
        try:
            self.cluster.client.cancel_many([task_id])
            self.tally.cancels += 1
        except CloudAIError:
            self.tally.cancel_errors += 1

    def load_loop(self) -> None:
        """Submit while fewer than `active` tasks are unfinished; cancel one in four, at a
        random moment of its life (pending, starting, running, ending, ended)."""
        while not self.stop.is_set():
            with self.lock:
                room = len(self.unfinished) < self.s.active
            if room:
                seconds = self.load_rng.uniform(0.5, 6.0)
                task_id = self.submit(_task(self.load_rng, seconds))
                if task_id and self.load_rng.random() < 0.25:
                    with self.lock:
                        when = time.monotonic() + self.load_rng.uniform(0.0, seconds + 2.0)
                        heapq.heappush(self.due, (when, task_id))
            self.stop.wait(self.load_rng.uniform(0.2, 0.8))

    def cancel_loop(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                ready = self.due and self.due[0][0] <= time.monotonic()
                task_id = heapq.heappop(self.due)[1] if ready else None
            if task_id is None:
                self.stop.wait(0.1)
            else:
                self.cancel(task_id)

    def forget_finished(self, terminal: set[str]) -> None:
        with self.lock:
            self.unfinished -= terminal

    # ---- the faults ----------------------------------------------------------------------

    def fault_loop(self) -> None:
        next_at = time.monotonic() + 2.0  # the first fault soon after the load starts
        while not self.stop.wait(max(0.0, min([next_at, *self.away.values()]) - time.monotonic())):
            self._return_away(due_only=True)
            if time.monotonic() < next_at:
                continue  # woken for a return only
            next_at = time.monotonic() + max(2.0, self.rng.expovariate(1 / self.s.fault_gap))
            kind = self.rng.choice(FAULTS)
            live = [w for w in self.worker_ids if w not in self.away]
            if kind == "worker_away" and (self.away or len(live) < 2):
                kind = "worker_kill_restart"
            try:
                getattr(self, kind)(self.rng.choice(live))
            except Exception as exc:  # a fault that could not be carried out: logged, no tally
                self.note(f"fault {kind} failed to run: {type(exc).__name__}: {exc}")
                continue
            self.tally.faults[kind] += 1
        self._return_away(due_only=False)

    def _kill(self, worker_id: str) -> None:
        self.faults.begin(worker_id)
        proc = self.cluster.workers[worker_id]
        proc.kill()
        proc.wait(10)

    def restart_worker(self, worker_id: str) -> None:
        self._start_worker(worker_id)
        self.faults.end(worker_id)

    def worker_kill_restart(self, worker_id: str) -> None:
        down = self.rng.uniform(1.0, 5.0)
        self.note(f"worker_kill_restart {worker_id}: SIGKILL, back in {down:.1f}s")
        self._kill(worker_id)
        self.stop.wait(down)
        self.restart_worker(worker_id)

    def worker_stop_cont(self, worker_id: str) -> None:
        frozen = self.rng.uniform(3 * self.s.heartbeat + 1.0, 12 * self.s.heartbeat + 4.0)
        self.note(f"worker_stop_cont {worker_id}: SIGSTOP for {frozen:.1f}s")
        self.faults.begin(worker_id)
        proc = self.cluster.workers[worker_id]
        proc.send_signal(signal.SIGSTOP)
        try:
            self.stop.wait(frozen)
        finally:
            proc.send_signal(signal.SIGCONT)
        self.faults.end(worker_id)

    def master_kill_restart(self, _: str) -> None:
        down = self.rng.uniform(1.0, 5.0)
        self.note(f"master_kill_restart: SIGKILL, back in {down:.1f}s")
        self.faults.begin(MASTER)
        self.cluster.kill_master(signal.SIGKILL)
        self.stop.wait(down)
        self.restart_master()
        self.faults.end(MASTER)

    def worker_away(self, worker_id: str) -> None:
        """Killed and left down past --worker-lost-after (its tasks end "worker lost"), then
        started again (its leftover containers must go)."""
        down = self.s.lost_after + self.rng.uniform(3.0, 12.0)
        self.note(f"worker_away {worker_id}: SIGKILL, back in {down:.1f}s")
        self._kill(worker_id)
        self.away[worker_id] = time.monotonic() + down

    def _return_away(self, due_only: bool) -> None:
        for worker_id, when in list(self.away.items()):
            if not due_only or when <= time.monotonic():
                self.note(f"worker_away {worker_id}: started again")
                del self.away[worker_id]
                try:
                    self.restart_worker(worker_id)
                except Exception as exc:  # logged; the end of the soak starts it again
                    self.note(f"worker {worker_id} did not come back: {exc}")

    def cancel_burst(self, _: str) -> None:
        """Ten short tasks, and two cancels each from 8 threads, timed around their end."""
        self.note("cancel_burst: 10 tasks, 20 cancels racing their completion")
        specs = [_task(self.rng, self.rng.uniform(0.2, 2.0)) for _ in range(10)]
        ids = [t for spec in specs if (t := self.submit(spec))]
        moments = sorted((self.rng.uniform(0.0, 4.0), t) for t in ids for _ in range(2))
        start = time.monotonic()

        def at(item: tuple[float, str]) -> None:
            time.sleep(max(0.0, start + item[0] - time.monotonic()))
            self.cancel(item[1])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(at, moments))

    def summary_of_faults(self) -> str:
        return ", ".join(f"{k} {n}" for k, n in sorted(self.tally.faults.items())) or "none"
