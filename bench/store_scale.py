"""M3 and M4: a store holding many task rows (SQLite, and PostgreSQL when given a server):
`task ls --status running` and `task show` through the client, and the time a restarted
master takes until it serves.

The rows are written straight into a store that cloudai's own `Store(url)` created and
migrated, with SQLAlchemy Core bulk inserts: 1% running (each with its assignment to one of
100 workers, delivered), the rest completed, failed or cancelled. No events or results rows."""

from __future__ import annotations

import contextlib
import random
import secrets
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import create_engine, update

from bench.model import Measure, missing
from bench.plan import IMAGE, Sizes
from bench.procs import Procs, free_port, wait_serving
from bench.profiling import summarize_profile
from bench.ui import Step, Ui
from cloudai.client import Client
from cloudai.store import Store
from cloudai.store.schema import assignments, tasks, workers

__all__ = ["pg_database", "populate", "run_store_scale"]

WORKERS = 100
CHUNK = 5_000
M4_LIMIT = 10.0  # seconds: the target; a slower start gets profiled (when profiling)
LIST_LIMIT = 100  # `task ls --status running` asks for one page of this many


def _task_id(i: int, created: float) -> str:
    return f"task-{int(created)}-{i:08x}"


def _rows(n: int, now: float) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Chunks of (task rows, assignment rows), oldest first, 100 tasks a second."""
    statuses = ("completed",) * 8 + ("failed", "cancelled")
    codes = {"completed": 0, "failed": 1, "cancelled": 143, "running": None}
    for start in range(0, n, CHUNK):
        task_rows, assign_rows = [], []
        for i in range(start, min(start + CHUNK, n)):
            created = now - (n - i) * 0.01
            status = "running" if i % 100 == 0 else statuses[i % 10]
            tid = _task_id(i, created)
            task_rows.append(
                {
                    "task_id": tid,
                    "name": "",
                    "image": IMAGE,
                    "command": ["true"],
                    "env": {},
                    "req_cpu": 0.1,
                    "req_mem_gb": 0.1,
                    "req_storage_gb": 0.0,
                    "req_gpu": 0,
                    "requested_worker": None,
                    "owner": "bench-m3",
                    "grace_seconds": 0.0,
                    "stop_signal": "",
                    "status": status,
                    "exit_code": codes[status],
                    "reason": "",
                    "oom_killed": False,
                    "created_at": created,
                    "started_at": created + 0.1,
                    "completed_at": None if status == "running" else created + 1.0,
                }
            )
            assign_rows.append(
                {
                    "task_id": tid,
                    "worker_id": f"m3-w{i % WORKERS:03d}",
                    "assigned_at": created,
                    "delivered_at": created + 0.05,
                    "attempts": 1,
                    "last_error": "",
                }
            )
        yield task_rows, assign_rows


def populate(url: str, n: int, step: Step | None = None) -> tuple[float, list[str], list[str]]:
    """Fill a fresh store; returns (seconds taken, some task IDs, some running task IDs)."""
    t0 = time.monotonic()
    store = Store(url)
    now = time.time()
    sample: list[str] = []
    running: list[str] = []
    rng = random.Random(6)
    # PostgreSQL: plain executemany (psycopg pipelines it) beats multi-row VALUES here.
    engine = (
        store.engine if store.is_sqlite else create_engine(store.url, use_insertmanyvalues=False)
    )
    try:
        with engine.begin() as conn:
            conn.execute(
                workers.insert(),
                [
                    {
                        "worker_id": f"m3-w{w:03d}",
                        "address": "127.0.0.1:9",
                        "cpu": 64.0,
                        "mem_gb": 256.0,
                        "storage_gb": 1000.0,
                        "gpu": 0,
                        "runtime": "fake",
                        "source": "self",
                        "registered_at": now,
                        "last_heartbeat": now,
                        "drained": False,
                    }
                    for w in range(WORKERS)
                ],
            )
        for task_rows, assign_rows in _rows(n, now):
            with engine.begin() as conn:
                conn.execute(tasks.insert(), task_rows)
                conn.execute(assignments.insert(), assign_rows)
            sample.extend(r["task_id"] for r in rng.sample(task_rows, min(20, len(task_rows))))
            running.extend(r["task_id"] for r in task_rows if r["status"] == "running")
            if step is not None:
                step.advance(len(task_rows))
    finally:
        if engine is not store.engine:
            engine.dispose()
        store.close()
    return time.monotonic() - t0, sample, running


def _fresh_heartbeats(url: str) -> None:
    """The simulated workers look alive to the master that starts next."""
    store = Store(url, migrate=False)
    try:
        with store.engine.begin() as conn:
            conn.execute(update(workers).values(last_heartbeat=time.time()))
    finally:
        store.close()


@contextlib.contextmanager
def pg_database(base: str) -> Iterator[str]:
    """A fresh database on the server of `base`, dropped afterwards."""
    import psycopg

    name = f"bench_{secrets.token_hex(5)}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield plain.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_store_scale(
    sizes: Sizes, ui: Ui, pg_url: str | None, profiles: dict[str, str] | None = None
) -> list[Measure]:
    kinds = ["sqlite", "postgresql"] if pg_url else ["sqlite"]
    per_store = sizes.m3_rows + 2 * sizes.m3_queries + sizes.m4_starts
    step = ui.step("M3 M4  store scale", per_store * len(kinds) + sizes.m4_starts)
    out: list[Measure] = []
    try:
        with Procs() as procs:
            out.extend(_empty_restarts(procs, sizes, step))
            sqlite_url = f"sqlite:///{procs.tmp / 'm3.db'}"
            out.extend(_one_store(procs, sqlite_url, "sqlite", sizes, step, profiles))
            why = "no PostgreSQL: set CLOUDAI_TEST_PG_URL or pass --pg-url"
            if pg_url:
                try:
                    with pg_database(pg_url) as url:
                        out.extend(_one_store(procs, url, "postgresql", sizes, step, None))
                    why = ""
                except Exception as exc:  # the SQLite figures stand; say why these are missing
                    why = (
                        f"PostgreSQL part failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                    )
    finally:
        step.done()
    if why:
        out += [
            missing("M3", "M3 ls postgresql", "task ls --status running", "ms", why),
            missing("M3", "M3 show postgresql", "task show", "ms", why),
            missing("M4", "M4 postgresql", "master (re)start until it serves", "s", why),
        ]
    return out


def _restart(
    procs: Procs, url: str, extra: tuple[str, ...], healthy: list[float] | None = None
) -> tuple[Any, int, float]:
    """Start a master on `url`; (process, port, seconds until it answered ListWorkers).
    The seconds until its health check said SERVING go to `healthy`."""
    port = free_port()
    t0 = time.monotonic()
    proc = procs.master(port, url, extra)
    health_at, listed_at = wait_serving(port, proc)
    if healthy is not None:
        healthy.append(health_at - t0)
    return proc, port, listed_at - t0


def _stop(procs: Procs, proc: Any) -> None:
    """Stop a master that just started serving; the pause lets it install its SIGTERM handler
    (it does so right after it serves), so it shuts down cleanly."""
    time.sleep(0.3)
    procs.stop(proc, timeout=60)


def _profile_start(procs: Procs, url: str, extra: tuple[str, ...]) -> str:
    """A master started under cProfile on the filled store, stopped once it serves."""
    out = procs.tmp / "start.prof"
    port = free_port()
    proc = procs.master(port, url, extra, profile_to=out, log_name="m4-profile.log")
    wait_serving(port, proc)
    _stop(procs, proc)
    if not out.exists():
        return "no profile written (the master did not stop cleanly)"
    return summarize_profile(out)


def _empty_restarts(procs: Procs, sizes: Sizes, step: Step) -> list[Measure]:
    url = f"sqlite:///{procs.tmp / 'empty.db'}"
    proc, _, _ = _restart(procs, url, ())  # creates and migrates the store
    _stop(procs, proc)
    took = []
    for _ in range(sizes.m4_starts):
        proc, _, secs = _restart(procs, url, ())
        took.append(secs)
        _stop(procs, proc)
        step.advance()
    return [Measure("M4", "M4 empty sqlite", "restart on an empty store (reference)", "s", took)]


def _one_store(
    procs: Procs,
    url: str,
    kind: str,
    sizes: Sizes,
    step: Step,
    profiles: dict[str, str] | None,
) -> list[Measure]:
    step.say(f"{kind}: inserting {sizes.m3_rows:,} task rows")
    filled, sample, running = populate(url, sizes.m3_rows, step)
    extra = ("--worker-lost-after", "86400")  # the simulated workers never heartbeat
    _fresh_heartbeats(url)
    step.say(f"{kind}: first start")
    healthy: list[float] = []
    proc, port, first = _restart(procs, url, extra, healthy)
    starts = [first]
    step.advance()
    ls_ms: list[float] = []
    show_ms: list[float] = []
    rng = random.Random(3)
    step.say(f"{kind}: task ls / task show")
    with Client(f"127.0.0.1:{port}", user="bench") as client:
        for _ in range(sizes.m3_queries):
            p = time.perf_counter()
            page = client.list_tasks(status="running", limit=LIST_LIMIT)
            ls_ms.append((time.perf_counter() - p) * 1000)
            if len(page) != min(LIST_LIMIT, len(running)):
                raise RuntimeError(f"task ls gave {len(page)} running tasks")
            tid = rng.choice(sample)
            p = time.perf_counter()
            client.get_task(tid)
            show_ms.append((time.perf_counter() - p) * 1000)
            step.advance(2)
    _stop(procs, proc)
    step.say(f"{kind}: restarts")
    for _ in range(sizes.m4_starts - 1):
        proc, _, secs = _restart(procs, url, extra, healthy)
        starts.append(secs)
        _stop(procs, proc)
        step.advance()
    if profiles is not None and max(starts) > M4_LIMIT:
        step.say(f"{kind}: one more start, under cProfile")
        profiles[f"M4 master start on {kind} (cProfile)"] = _profile_start(procs, url, extra)
    rows = f"{sizes.m3_rows:,} task rows ({len(running):,} running)"
    return [
        Measure(
            "M3",
            f"M3 ls {kind}",
            f"task ls --status running --limit {LIST_LIMIT}, {rows}",
            "ms",
            ls_ms,
            note=f"store filled in {filled:.0f} s",
        ),
        Measure("M3", f"M3 show {kind}", f"task show ID, {rows}", "ms", show_ms),
        Measure(
            "M4",
            f"M4 {kind}",
            f"master (re)start until it serves, {rows}",
            "s",
            starts,
            note="from spawning a new master process on the filled store (the first start, "
            "before M3's calls, included) to its first ListWorkers answer; to its health check "
            f"saying SERVING: {', '.join(f'{h:.1f}' for h in healthy)} s",
        ),
    ]
