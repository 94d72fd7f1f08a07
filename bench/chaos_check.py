"""The soak's invariant check: tests/invariants.py's rules over the store and the Docker engine,
with the checker's own semantics (a safety violation is final; a convergence one counts only
when it outlives one reconciliation interval), and one allowance that a soak needs and a test
does not: faults keep coming. A convergence violation about a worker that a fault is holding
down (killed, stopped, or back for less than `grace`), or any convergence violation while the
master is down or just back, is excused: the rule is judged again once the fault has healed."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from cloudai.core.resources import Resources
from tests.invariants import SAFETY, Container, StoreTask, Violation, find_violations

__all__ = ["Disturbances", "Judge", "MASTER"]

MASTER = "master"


class Disturbances:
    """Who a fault holds: until when each worker (or the master) is excused, `inf` while the
    fault lasts. Thread-safe: the fault thread writes, the checker reads."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def begin(self, who: str) -> None:
        with self._lock:
            self._until[who] = math.inf

    def end(self, who: str) -> None:
        """Healed: still excused for one reconciliation interval."""
        with self._lock:
            self._until[who] = time.monotonic() + self.grace

    def held(self, who: str, now: float | None = None) -> bool:
        with self._lock:
            return self._until.get(who, 0.0) > (time.monotonic() if now is None else now)

    def clear(self) -> None:
        """Every fault healed: nothing is excused any more."""
        with self._lock:
            self._until.clear()


@dataclass
class Judge:
    """Runs checks and keeps what they found: each violation once, by (rule, subject)."""

    store: Callable[[], tuple[dict[str, StoreTask], dict[str, Resources]]]  # read_store
    engine: Callable[[], list[Container]]
    worker_ids: tuple[str, ...]
    allocated: Callable[[], Mapping[str, Resources]]  # the master's answer; may raise
    faults: Disturbances
    acknowledged: Callable[[], list[str]]
    grace: float = 15.0
    poll: float = 0.5  # seconds between the polls of one check
    seen: dict[str, str] = field(default_factory=dict)  # terminal statuses, across checks
    found: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    checks: int = 0
    excused: int = 0  # convergence violations seen while their fault lasted

    def check(self, started: float) -> list[Violation]:
        """One check: poll until no unexcused violation is left, a safety one shows, or one has
        persisted through every poll for `grace` seconds. Returns the new violations."""
        self.checks += 1
        deadline = time.monotonic() + self.grace
        persisting: set[tuple[str, str]] | None = None
        latest: dict[tuple[str, str], Violation] = {}
        while True:
            now = time.monotonic()
            found, excused = self._snapshot(now)
            self.excused += excused
            safety = [v for v in found if v.rule in SAFETY]
            keys = {(v.rule, v.subject) for v in found if v.rule not in SAFETY}
            latest.update({(v.rule, v.subject): v for v in found})
            persisting = keys if persisting is None else persisting & keys
            if safety:
                return self._record([*safety, *(latest[k] for k in persisting)], started)
            if not persisting:
                return []
            if now > deadline:
                return self._record([latest[k] for k in persisting], started)
            time.sleep(self.poll)

    def _snapshot(self, now: float) -> tuple[list[Violation], int]:
        acked = self.acknowledged()  # before the store is read: all of these must be in it
        master_down = self.faults.held(MASTER, now)
        allocated: Mapping[str, Resources] | None = None
        if not master_down:
            try:
                allocated = self.allocated()
            except Exception:  # the master unreachable for a moment: judge the store's view
                master_down = True
        store_tasks, derived = self.store()
        containers = self.engine()
        live = [w for w in self.worker_ids if not self.faults.held(w, now)]
        found = find_violations(
            store_tasks,
            containers,
            derived if allocated is None else allocated,
            self.worker_ids,
            live_workers=live,
            acknowledged=acked,
            terminal_seen=self.seen,
        )
        kept = [
            v
            for v in found
            if v.rule in SAFETY or not (master_down or self._held(v, store_tasks, containers, live))
        ]
        return kept, len(found) - len(kept)

    def _held(
        self,
        v: Violation,
        store_tasks: Mapping[str, StoreTask],
        containers: list[Container],
        live: Collection[str],
    ) -> bool:
        """Whether a fault holds the worker this violation is about."""
        if v.rule == "held":
            return v.subject not in live
        where = {c.worker_id for c in containers if c.task_id == v.subject}
        task = store_tasks.get(v.subject)
        if task is not None and task.worker_id:
            where.add(task.worker_id)
        return any(w not in live for w in where)

    def _record(self, violations: list[Violation], started: float) -> list[Violation]:
        new = []
        for v in violations:
            key = (v.rule, v.subject)
            if key not in self.found:
                self.found[key] = (round(time.monotonic() - started, 1), v.detail)
                new.append(v)
        return new
