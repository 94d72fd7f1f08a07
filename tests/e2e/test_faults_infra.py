"""Faults of the infrastructure under a cluster (issue 11: faults 7, 9, 10, 12), injected for
real on private infrastructure (tests/e2e/infra.py), each ending with the invariant checker.
docs/reliability.md says what cloudai promises under each."""

from __future__ import annotations

import json
import pathlib
import sqlite3
import subprocess
import time
from typing import Any

from tests.cluster import HEARTBEAT, ProcCluster
from tests.e2e.infra import PrivateDocker, PrivatePostgres, fill, partitioned, tmpfs
from tests.e2e.test_faults import (
    SLEEPER,
    UNTIL_GO,
    cluster,
    container,
    ended,
    holds_invariants,
    kinds,
    lost_events,
    release,
    run,
    state_of,
    wait_seconds,
)
from tests.e2e.test_faults import worker_id as worker_id  # the fixture: this test's worker
from tests.helpers import TEST_IMAGE, eventually

LOST_AFTER = ("--worker-lost-after", "60")  # nothing here is judged lost


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """A failed CLI call's message: non-zero, one line, no traceback."""
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def submit(c: Any) -> subprocess.CompletedProcess[str]:
    """A submit the master places (a full disk stops heartbeats too: a named worker would soon
    be refused as unhealthy instead)."""
    return c.cli("task", "run", TEST_IMAGE, "true", "--mem", "0.05", "-o", "json")


def test_disk_full_under_the_sqlite_store(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Fault 12. The filesystem under the master's SQLite file fills up while submits go on:
    each refused submit gets one clear line (UNAVAILABLE: the database is full), the master
    runs on, the file stays sound, and writes resume once space is freed."""
    with (
        tmpfs(tmp_path / "disk", "4m") as disk,
        ProcCluster(tmp_path, f"sqlite:///{disk}/master.db", LOST_AFTER) as c,
    ):
        c.add_worker(worker_id)
        before = run(c, worker_id, *SLEEPER)
        filler = fill(disk)
        acked: list[str] = []
        refused: list[subprocess.CompletedProcess[str]] = []

        def refused_once() -> bool:
            done = submit(c)
            if done.returncode == 0:
                acked.append(json.loads(done.stdout)["task_id"])
                return False
            refused.append(done)
            return True

        eventually(refused_once, timeout=60, interval=0.1, what="a submit refused: disk full")
        line = one_line_error(refused[0])
        assert "full" in line and refused[0].returncode == 7, line  # UNAVAILABLE
        assert c.master is not None and c.master.poll() is None  # the master runs on
        assert c.cli_json("task", "show", before)["status"] == "running"  # reads still answer

        filler.unlink()  # space returns: writes resume
        after = json.loads(eventually(
            lambda: (d := submit(c)).returncode == 0 and d.stdout,
            timeout=30, what="a submit accepted once space is back",
        ))["task_id"]  # fmt: skip
        c.wait_status(after, "completed")
        for t in acked:
            c.wait_status(t, "completed")
        with sqlite3.connect(disk / "master.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        c.cli("cancel", before, "--force")
        c.wait_status(before, "cancelled")
        holds_invariants(c, docker, worker_id, acknowledged=[before, after, *acked])


def test_network_partition_master_worker_then_healed(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Fault 7. Master and worker cut apart (every packet between their ports dropped) for
    more than twice the unhealthy threshold, then healed. Meanwhile the worker is judged
    unhealthy and its tasks run on (the lease, `--worker-lost-after`, is far off); a task that
    ends and a cancel given during the partition both wait. Healed, the worker is healthy, the
    ended task has its one result and the cancelled one is stopped."""
    unhealthy_after = 3 * HEARTBEAT  # core/models.worker_state
    with cluster(tmp_path, *LOST_AFTER) as c:
        c.add_worker(worker_id)
        ending = run(c, worker_id, *UNTIL_GO)
        cancelled = run(c, worker_id, *SLEEPER)
        seen: dict[str, str] = {}
        with partitioned(c.peer_port, c.worker_ports[worker_id]):
            cut_at = time.monotonic()
            eventually(lambda: state_of(c, worker_id) != "healthy", timeout=30,
                       what="the master to judge the worker unhealthy")  # fmt: skip
            release(docker, ending)  # it ends while its worker cannot tell the master
            eventually(lambda: ended(docker, ending), what="it to end")
            answer = c.cli("cancel", cancelled, "--force")
            assert answer.returncode == 0, answer.stderr  # decided; the stop order waits
            wait_seconds(2 * unhealthy_after - (time.monotonic() - cut_at), "the partition")
            assert state_of(c, worker_id) in ("unhealthy", "offline")
            assert c.cli_json("task", "show", ending)["status"] == "running"  # no result yet
            assert container(docker, cancelled).status == "running"  # the order cannot reach
        eventually(lambda: state_of(c, worker_id) == "healthy", timeout=30, what="healthy again")
        done = c.wait_status(ending, "completed")
        assert "finished" in done["result"]["logs"] and kinds(c, ending).count("completed") == 1
        c.wait_status(cancelled, "cancelled")
        assert lost_events(c, ending, cancelled) == []
        holds_invariants(c, docker, worker_id, seen=seen, acknowledged=[ending, cancelled])


def test_docker_engine_restarted_while_tasks_run(tmp_path: pathlib.Path, worker_id: str) -> None:
    """Fault 10. The worker's Docker engine (a private dockerd with live-restore) is stopped
    (SIGTERM) and started again while two tasks run: both containers survive, the same ones;
    the worker carries on with the engine once it is back: the task that ends afterwards gets
    its one result with its logs, a cancel stops the other, a new task runs; nothing orphaned."""
    engine = PrivateDocker("--live-restore")
    try:
        dk: Any = engine.client()
        with cluster(tmp_path, *LOST_AFTER) as c:
            c.env["DOCKER_HOST"] = engine.host  # the worker's engine (the CLI's env too: unused)
            c.add_worker(worker_id)
            ending = run(c, worker_id, *UNTIL_GO)
            cancelled = run(c, worker_id, *SLEEPER)
            ids = {t: container(dk, t).id for t in (ending, cancelled)}
            seen: dict[str, str] = {}

            engine.stop()
            assert c.workers[worker_id].poll() is None  # the worker rides it out
            engine.start()
            for t in ids:
                assert container(dk, t).id == ids[t] and container(dk, t).status == "running"
                assert c.cli_json("task", "show", t)["status"] == "running"

            release(dk, ending)
            done = c.wait_status(ending, "completed")
            assert "finished" in done["result"]["logs"] and kinds(c, ending).count("completed") == 1
            c.cli("cancel", cancelled, "--force")
            c.wait_status(cancelled, "cancelled")
            after = c.cli_json("task", "run", TEST_IMAGE, "true", "--worker", worker_id)["task_id"]
            c.wait_status(after, "completed")
            holds_invariants(c, dk, worker_id, seen=seen, acknowledged=[*ids, after])
    finally:
        engine.close()


def test_store_unavailable_postgresql_stopped(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Fault 9. The master's PostgreSQL (its own server) stopped for 20 s, longer than
    `--worker-lost-after`: reads and submits answer UNAVAILABLE in one line; the admin's cancel
    is accepted ("will be recorded"), journaled, and its stop reaches the worker at once; a
    task that ends meanwhile waits for its report. The master runs on and recovers by itself:
    the ended task has its one result, the cancel is in the store, nothing was judged lost."""
    outage, lost_after = 20.0, 10.0
    pg = PrivatePostgres()
    try:
        args = ("--worker-lost-after", f"{lost_after:g}")
        with ProcCluster(tmp_path, pg.url, args) as c:
            c.add_worker(worker_id, cpu=4)
            kept, ending, cancelled = (
                run(c, worker_id, *cmd) for cmd in (SLEEPER, UNTIL_GO, SLEEPER)
            )
            seen: dict[str, str] = {}
            journal = c.home / "cancel-journal.jsonl"

            pg.stop()
            down_at = time.monotonic()
            read = c.cli("task", "ls")
            assert "database unavailable" in one_line_error(read) and read.returncode == 7
            assert "database unavailable" in one_line_error(submit(c))
            release(docker, ending)  # it ends during the outage: the report waits
            answer = c.cli("cancel", cancelled, "--force")
            assert answer.returncode == 0, answer.stderr
            assert "will be recorded" in answer.stdout, answer.stdout
            assert cancelled in journal.read_text()  # durable before the answer
            eventually(lambda: ended(docker, cancelled),
                       what="the journaled stop to reach the worker")  # fmt: skip
            eventually(lambda: ended(docker, ending), what="it to end")
            wait_seconds(outage - (time.monotonic() - down_at), "the outage")
            assert c.master is not None and c.master.poll() is None  # it rode it out
            assert container(docker, kept).status == "running"

            pg.start()  # the master recovers by itself
            done = c.wait_status(ending, "completed")
            assert "finished" in done["result"]["logs"] and kinds(c, ending).count("completed") == 1
            gone = eventually(
                lambda: (t := c.cli_json("task", "show", cancelled))["result"] and t,
                timeout=60,
                what="the cancelled task's result (its report retried until the store is back)",
            )
            assert gone["status"] == "cancelled" and gone["result"]["status"] == "cancelled"
            assert "cancel_requested" in kinds(c, cancelled)
            assert not journal.exists()  # replayed into the store, then dropped
            logged = (c.tmp / "master.log").read_text()
            assert "the store answers again" in logged
            assert "dispatch-loop failed" not in logged  # it waited for the store, not failed
            assert c.cli_json("task", "show", kept)["status"] == "running"
            assert lost_events(c, kept, ending, cancelled) == []
            holds_invariants(
                c, docker, worker_id, seen=seen, acknowledged=[kept, ending, cancelled]
            )
            c.cli("cancel", kept, "--force")
            c.wait_status(kept, "cancelled")
            holds_invariants(
                c, docker, worker_id, seen=seen, acknowledged=[kept, ending, cancelled]
            )
    finally:
        pg.close()


def test_docker_engine_restarted_without_live_restore(
    tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Fault 10, the other way: an engine without live-restore stops its containers on its
    way down (SIGTERM, then SIGKILL after its shutdown timeout). The task ends failed, with its
    exit code and one result; its container is removed once the engine is back (nothing
    orphaned), and the worker runs new tasks on the restarted engine."""
    engine = PrivateDocker("--shutdown-timeout", "1")  # SIGKILL 1 s after its SIGTERM
    try:
        dk: Any = engine.client()
        with cluster(tmp_path, *LOST_AFTER) as c:
            c.env["DOCKER_HOST"] = engine.host
            c.add_worker(worker_id)
            task_id = run(c, worker_id, *UNTIL_GO)  # PID 1 without a TERM handler: killed
            seen: dict[str, str] = {}
            engine.stop()
            engine.start()
            ended = c.wait_status(task_id, "failed")
            assert ended["exit_code"] == 137 and ended["result"]["status"] == "failed", ended
            assert kinds(c, task_id).count("failed") == 1 and lost_events(c, task_id) == []
            after = c.cli_json("task", "run", TEST_IMAGE, "true", "--worker", worker_id)["task_id"]
            c.wait_status(after, "completed")
            holds_invariants(c, dk, worker_id, seen=seen, acknowledged=[task_id, after])
    finally:
        engine.close()
