"""The invariants every fault test ends with (docs/reliability.md), checked against the store
and the engine, never against what the master says about itself alone:

- nothing lost: every acknowledged submit exists; every task is terminal with exactly one
  result, or still active (pending, or running with its container on its worker's engine), or
  cancelled with its stop not done (its result comes with its container's exit);
- no terminal status overwritten (against what earlier checks saw), at most one result a task;
- a retried task's earlier runs are attempts, never its status: run N has runs 1..N-1 kept
  (task_attempts), and none of them is its result;
- no orphan: every container labelled with a checked, live worker belongs to an active task
  placed on that worker, or to a cancelled task whose stop is not done (it still holds its
  resources: a stop in its grace period, or one that failed, shown as `stop_failed`);
- each worker's held resources (what the master answers, or the store's derivation) equal
  the sum of the requests of the tasks that hold them: the running ones, and the cancelled
  ones whose stop is not done.

Safety rules fail at once. Convergence rules (a result not stored yet, a container not
started or not removed yet, a resource figure read a moment apart) are waited on, up to a
deadline: "within one reconciliation interval".

    seen: dict[str, str] = {}            # terminal statuses, kept across checks
    check_invariants(c.db_url, docker_engine(docker), [w1, w2], acknowledged=ids,
                     terminal_seen=seen, allocated=master_allocated(c.client))
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil
from sqlalchemy import Connection, create_engine, func, select

from cloudai.core.lifecycle import ACTIVE, HOLDS_RESOURCES, TERMINAL, TaskStatus
from cloudai.core.resources import Resources
from cloudai.store import Store, holdings, normalize_url, tasks
from cloudai.store.schema import results, task_attempts

__all__ = [
    "CONVERGENCE",
    "SAFETY",
    "Container",
    "StoreTask",
    "Violation",
    "check_invariants",
    "docker_engine",
    "find_violations",
    "master_allocated",
    "process_engine",
    "read_store",
]

# The rules, by name. Safety: a violation is final. Convergence: may be transient.
SAFETY = ("lost", "overwritten", "results", "attempts")
CONVERGENCE = ("no_result", "no_container", "orphan", "held")
_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str  # one of SAFETY or CONVERGENCE
    subject: str  # the task or worker it is about
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.subject}: {self.detail}"


@dataclass(frozen=True, slots=True)
class StoreTask:
    """A task as the store has it, with how many results it has."""

    task_id: str
    status: TaskStatus
    worker_id: str | None  # where it was placed; None: never placed
    request: Resources
    results: int
    releasing: bool = False  # stopped by an order (cancelled, or failed by its time limit),
    # its stop not done: it still holds its resources
    attempt: int = 1  # its current run
    attempts: tuple[int, ...] = ()  # the numbers of its earlier runs kept in task_attempts


@dataclass(frozen=True, slots=True)
class Container:
    """A container (or process group) labelled by a worker of this cluster, as the engine has
    it: `running` False for one that exited and waits for its report and removal."""

    task_id: str
    worker_id: str
    running: bool
    ref: str = ""


# ---- the rules: pure ---------------------------------------------------------------------


def find_violations(
    store_tasks: Mapping[str, StoreTask],
    containers: Iterable[Container] | None,
    allocated: Mapping[str, Resources],
    worker_ids: Collection[str],
    *,
    live_workers: Collection[str] | None = None,
    acknowledged: Iterable[str] = (),
    terminal_seen: dict[str, str] | None = None,
) -> list[Violation]:
    """Every rule broken by this snapshot. `terminal_seen` (task_id -> terminal status seen by
    earlier checks) is compared, then extended with the terminal statuses seen now.

    Containers and resources are checked for `worker_ids` only (other clusters may share the
    engine); `containers` None (no view of the engine) skips the container rules. Containers
    of a worker not in `live_workers` (default: all of them) are exempt from the orphan rule:
    a worker that is down cannot remove them (docs/reliability.md)."""
    out: list[Violation] = []
    live = set(worker_ids if live_workers is None else live_workers)
    out += [
        Violation("lost", t, "acknowledged submit missing from the store")
        for t in acknowledged
        if t not in store_tasks
    ]
    for t in store_tasks.values():
        if t.results > 1:
            out.append(Violation("results", t.task_id, f"{t.results} results stored"))
        if t.attempts != tuple(range(1, t.attempt)):
            what = f"run {t.attempt} with earlier runs {list(t.attempts)} kept"
            out.append(Violation("attempts", t.task_id, what))
        if t.status in TERMINAL and t.results == 0 and not t.releasing:  # its exit reports
            out.append(Violation("no_result", t.task_id, f"{t.status.value} without a result"))
    if terminal_seen is not None:
        for task_id, was in list(terminal_seen.items()):
            now = store_tasks.get(task_id)
            is_ = now.status.value if now else "missing"
            if is_ != was:
                out.append(Violation("overwritten", task_id, f"was {was}, now {is_}"))
        for t in store_tasks.values():
            if t.status in TERMINAL:
                terminal_seen.setdefault(t.task_id, t.status.value)
    if containers is not None:
        out += _container_rules(store_tasks, containers, worker_ids, live)
    out += _held_rule(store_tasks, allocated, worker_ids)
    return out


def _container_rules(
    store_tasks: Mapping[str, StoreTask],
    containers: Iterable[Container],
    worker_ids: Collection[str],
    live: Collection[str],
) -> list[Violation]:
    out = []
    mine = [c for c in containers if c.worker_id in worker_ids]
    by_task: dict[str, list[Container]] = {}
    for c in mine:
        by_task.setdefault(c.task_id, []).append(c)
    for t in store_tasks.values():
        if t.status is not TaskStatus.RUNNING or t.worker_id not in worker_ids:
            continue
        found = [c for c in by_task.get(t.task_id, ()) if c.worker_id == t.worker_id]
        if len(found) > 1:
            out.append(Violation("orphan", t.task_id, f"{len(found)} containers for one task"))
        if not any(c.running for c in found):
            what = "its container exited, not reported yet" if found else "no container"
            out.append(Violation("no_container", t.task_id, f"running on {t.worker_id}: {what}"))
    for c in mine:
        if c.worker_id not in live:
            continue
        owner = store_tasks.get(c.task_id)
        alive = owner is not None and (owner.status in ACTIVE or owner.releasing)
        if owner is None or not alive or owner.worker_id != c.worker_id:
            is_ = "unknown to the store" if owner is None else f"{owner.status.value}"
            where = f" (placed on {owner.worker_id})" if owner and owner.worker_id else ""
            what = f"container {c.ref[:12]} on {c.worker_id}: {is_}{where}"
            out.append(Violation("orphan", c.task_id, what))
    return out


def _held_rule(
    store_tasks: Mapping[str, StoreTask],
    allocated: Mapping[str, Resources],
    worker_ids: Collection[str],
) -> list[Violation]:
    out = []
    for worker_id in worker_ids:
        held = Resources()
        for t in store_tasks.values():
            if t.worker_id == worker_id and (t.status in HOLDS_RESOURCES or t.releasing):
                held = held + t.request
        said = allocated.get(worker_id, Resources())
        if not _same(said, held):
            out.append(
                Violation("held", worker_id, f"allocated {said}, its active tasks ask {held}")
            )
    return out


def _same(a: Resources, b: Resources) -> bool:
    return (
        abs(a.cpu - b.cpu) < _EPS
        and abs(a.mem_gb - b.mem_gb) < _EPS
        and abs(a.storage_gb - b.storage_gb) < _EPS
        and a.gpu == b.gpu
    )


# ---- reading the store and the engine ----------------------------------------------------


def read_store(store: str | Store) -> tuple[dict[str, StoreTask], dict[str, Resources]]:
    """Every task with its result count, and the store's derivation of what each worker holds,
    in one read-only transaction (a plain connection: no write lock taken)."""
    if isinstance(store, Store):
        engine, dispose = store.engine, False
    else:
        engine, dispose = create_engine(normalize_url(store)), True
    try:
        with engine.connect() as conn:
            return _read(conn)
    finally:
        if dispose:
            engine.dispose()


def _read(conn: Connection) -> tuple[dict[str, StoreTask], dict[str, Resources]]:
    counts = dict(
        conn.execute(select(results.c.task_id, func.count()).group_by(results.c.task_id)).all()
    )
    releasing = {t for ids, _ in holdings.releasing_by_worker(conn).values() for t in ids}
    runs: dict[str, list[int]] = {}
    for task_id, number in conn.execute(
        select(task_attempts.c.task_id, task_attempts.c.number).order_by(task_attempts.c.number)
    ):
        runs.setdefault(task_id, []).append(number)
    found = {
        t.task_id: StoreTask(
            t.task_id,
            t.status,
            t.worker_id,
            t.spec.resources,
            int(counts.get(t.task_id, 0)),
            t.task_id in releasing,
            t.attempt,
            tuple(runs.get(t.task_id, ())),
        )
        for t in tasks.list_tasks(conn)
    }
    return found, holdings.allocated_by_worker(conn)


def docker_engine(docker: Any) -> Callable[[], list[Container]]:
    """The containers a Docker engine holds with cloudai's labels."""

    def containers() -> list[Container]:
        found = docker.api.containers(all=True, filters={"label": "cloudai.worker"})
        return [
            Container(
                c["Labels"].get("cloudai.task", ""),
                c["Labels"]["cloudai.worker"],
                c["State"] == "running",
                c["Id"],
            )
            for c in found
        ]

    return containers


def process_engine(home: pathlib.Path) -> Callable[[], list[Container]]:
    """The process runtime's tasks under CLOUDAI_HOME (`worker-ID/process-tasks/TASK/`), each
    running while its process group leader lives (the runtime's own test of life)."""

    def containers() -> list[Container]:
        out = []
        for meta_path in home.glob("worker-*/process-tasks/*/meta.json"):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue  # being written or removed
            out.append(
                Container(meta_path.parent.name, meta["worker_id"], _alive(meta), str(meta["pid"]))
            )
        return out

    return containers


def _alive(meta: Mapping[str, Any]) -> bool:
    try:
        proc = psutil.Process(int(meta["pid"]))
        same = meta.get("create_time") is None or proc.create_time() == meta["create_time"]
        return bool(same and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def master_allocated(client: Any) -> Callable[[], dict[str, Resources]]:
    """What the master answers for each worker's allocation (`cloudai workers -o json`)."""
    return lambda: {w.worker_id: w.allocated for w in client.list_workers()}


# ---- the check ---------------------------------------------------------------------------


def check_invariants(
    store: str | Store,
    engine: Callable[[], list[Container]] | None,
    worker_ids: Collection[str],
    *,
    acknowledged: Iterable[str] = (),
    terminal_seen: dict[str, str] | None = None,
    live_workers: Collection[str] | None = None,
    allocated: Callable[[], Mapping[str, Resources]] | None = None,
    timeout: float = 15.0,
) -> None:
    """Check every invariant; raise AssertionError listing each violation (rule, task or
    worker, what) at the first safety violation, or when a convergence one outlives `timeout`.

    `engine` None skips the container rules; `allocated` None compares the store's own
    derivation; `terminal_seen` is updated in place (pass the same dict to later checks)."""
    acknowledged = list(acknowledged)
    deadline = time.monotonic() + timeout
    while True:
        store_tasks, derived = read_store(store)
        containers = engine() if engine is not None else None
        held = allocated() if allocated is not None else derived
        found = find_violations(
            store_tasks,
            containers,
            held,
            worker_ids,
            live_workers=live_workers,
            acknowledged=acknowledged,
            terminal_seen=terminal_seen,
        )
        safety = [v for v in found if v.rule in SAFETY]
        if safety or not found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if found:
        kind = "broken" if safety else f"still broken after {timeout:g}s"
        listed = "\n  ".join(str(v) for v in found[:50])
        more = f"\n  ... and {len(found) - 50} more" if len(found) > 50 else ""
        raise AssertionError(f"{len(found)} invariant(s) {kind}:\n  {listed}{more}")
