"""Faults a cluster must survive, as real processes on a real Docker engine (docs/reliability.md
lists each fault, what cloudai promises, and the test here that holds it to it)."""

from __future__ import annotations

import contextlib
import heapq
import os
import pathlib
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from docker.errors import APIError as DockerAPIError

from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.errors import CloudAIError
from tests.cluster import HEARTBEAT, ProcCluster, free_port
from tests.helpers import TEST_IMAGE, eventually
from tests.invariants import check_invariants, docker_engine, master_allocated, process_engine

SLEEPER = ("sh", "-c", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done")
UNTIL_GO = ("sh", "-c", "echo ready; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo finished")


@pytest.fixture
def worker_id(docker: Any) -> Iterator[str]:
    """A worker ID unique to this test; its containers are removed afterwards (a worker that
    was killed leaves them running, as it should)."""
    wid = f"wf-{secrets.token_hex(3)}"
    yield wid
    for found in docker.api.containers(all=True, filters={"label": f"cloudai.worker={wid}"}):
        with contextlib.suppress(DockerAPIError):  # gone or going already
            docker.api.remove_container(found["Id"], force=True)


@contextlib.contextmanager
def cluster(tmp_path: pathlib.Path, *master_args: str) -> Iterator[ProcCluster]:
    with ProcCluster(tmp_path, master_args=master_args) as c:
        yield c


def run(c: ProcCluster, worker_id: str, *command: str) -> str:
    task = c.cli_json("task", "run", TEST_IMAGE, *command, "--worker", worker_id, "--mem", "0.05")
    task_id = str(task["task_id"])
    eventually(lambda: "ready" in c.cli("logs", task_id).stdout, timeout=30, what="the task")
    return task_id


def container(docker: Any, task_id: str) -> Any:
    (found,) = docker.containers.list(
        all=True, ignore_removed=True, filters={"label": f"cloudai.task={task_id}"}
    )
    return found


def lost_events(c: ProcCluster, *task_ids: str) -> list[Any]:
    return [
        e
        for t in task_ids
        for e in c.client.get_task(t).events
        if "worker lost" in e.message or "lost on worker" in e.message
    ]


def restart_master(c: ProcCluster) -> None:
    """Start the master again, watched through a fresh client: the old client's channel backs
    off reconnecting while the master is down, and would see it serve only late."""
    c.client.close()
    c.client = c.new_client()
    c.start_master()


def wait_seconds(seconds: float, what: str) -> None:
    """Let `seconds` pass: the condition itself is time (an outage that must outlast a
    deadline), so this is a wait on that condition, not a sleep that hopes."""
    until = time.monotonic() + seconds
    eventually(lambda: time.monotonic() >= until, timeout=seconds + 5, interval=0.1, what=what)


def test_master_down_longer_than_worker_lost_after(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Nothing the workers run is lost to a master outage, however long: the long task runs on,
    the task that finished meanwhile gets its one result once the master is back."""
    lost_after = 2.0
    with cluster(tmp_path, "--worker-lost-after", f"{lost_after:g}") as c:
        c.add_worker(worker_id)
        long = run(c, worker_id, *SLEEPER)
        short = run(c, worker_id, *UNTIL_GO)
        c.kill_master(signal.SIGKILL)
        down_at = time.monotonic()
        container(docker, short).exec_run(["touch", "/tmp/go"])  # it ends during the outage
        eventually(
            lambda: ended(docker, short) and "finished" in spooled(c, worker_id, short),
            what="the short task to end, and its end to be spooled, while the master is down",
        )
        # Long enough for gRPC's own reconnect backoff to grow past the deadline: the worker
        # must still reach the new master in time.
        wait_seconds(6 * lost_after - (time.monotonic() - down_at), "the outage to outlast it")
        assert container(docker, long).status == "running"

        restart_master(c)
        up_at = time.monotonic()  # the master started before this: its deadline is behind us
        done = c.wait_status(short, "completed", timeout=30)
        kinds = [e.kind for e in c.client.get_task(short).events]
        assert kinds.count("completed") == 1 and "failed" not in kinds, kinds
        assert "late_report" not in kinds and "report" not in kinds, kinds
        assert done["result"]["status"] == "completed" and "finished" in done["result"]["logs"]
        assert done["exit_code"] == 0

        beats = set()

        def deadline_passed_while_heartbeating() -> bool:
            worker = next(w for w in c.client.list_workers() if w.worker_id == worker_id)
            if worker.state == "healthy" and worker.last_heartbeat:
                beats.add(worker.last_heartbeat)
            # Past the new master's deadline by a few dispatch rounds (the reaper runs in
            # each), with several heartbeats received by the new master meanwhile.
            return time.monotonic() - up_at > lost_after + 3 and len(beats) >= 5

        eventually(
            deadline_passed_while_heartbeating,
            timeout=lost_after + 30,
            interval=HEARTBEAT,
            what="several heartbeats, and the lease deadline of the new master behind us",
        )
        assert c.client.get_task(long).status.value == "running"
        running = container(docker, long)
        assert running.status == "running", running.status
        assert lost_events(c, long, short) == []
        assert c.client.get_task(long).result is None
        c.cli("cancel", long, "--force")
        c.wait_status(long, "cancelled")
        holds_invariants(c, docker, worker_id, acknowledged=[long, short])


def master_started_at(metrics_port: int) -> float:
    """The master's own start time, from its /metrics (cloudai_master_start_time_seconds)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("cloudai_master_start_time_seconds "):
                return float(line.split()[1])
    raise AssertionError("cloudai_master_start_time_seconds missing from /metrics")


def test_worker_lost_only_after_full_deadline_from_master_start(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """A worker gone while the master was down is judged lost only `--worker-lost-after` after
    the master's restart, never at once on its stale heartbeat."""
    lost_after = 6.0
    metrics = free_port()
    args = ("--worker-lost-after", f"{lost_after:g}", "--metrics-listen", f"127.0.0.1:{metrics}")
    with cluster(tmp_path, *args) as c:
        c.add_worker(worker_id)
        task_id = run(c, worker_id, *SLEEPER)
        c.kill_master(signal.SIGKILL)
        c.workers[worker_id].kill()  # gone for good; its container runs on
        c.workers[worker_id].wait(10)
        wait_seconds(lost_after + 1, "the worker's last heartbeat to be older than the deadline")

        restart_master(c)
        started = master_started_at(metrics)
        seen = c.client.get_task(task_id).status.value
        if time.time() - started < lost_after:  # provably seen before the deadline
            assert seen == "running"
        lost = c.client.get_task(
            c.wait_status(task_id, "failed", timeout=lost_after + 30)["task_id"]
        )
        assert "worker lost" in lost.reason
        (failed,) = [e for e in lost.events if e.kind == "failed"]
        assert failed.actor == "master"
        # Judged by the master's own clock: a full deadline after its start, not before.
        assert failed.at - started >= lost_after, (failed.at, started)
        holds_invariants(c, docker, worker_id, acknowledged=[task_id], live=[])


# A worker process whose registration always breaks its heartbeat-loop (not with an
# unreachable master, which the loop rides out, but with an error it does not expect), and a
# short restart policy so the test need not wait minutes for the default one to give up.
BROKEN_WORKER = """
import sys

from cloudai import loops
from cloudai.cli.main import main
from cloudai.worker.link import MasterLink

loops.DEFAULT_POLICY = loops.RestartPolicy(first_backoff=0.01, max_backoff=0.05, give_up_after=3)


async def register(self, running):
    raise RuntimeError("injected: registration is broken")


MasterLink.register = register
sys.exit(main(sys.argv[1:]))
"""


def test_a_loop_that_keeps_failing_takes_its_process_down(tmp_path: pathlib.Path) -> None:
    """Never a process that looks alive and does nothing: a worker whose heartbeat-loop keeps
    failing stops, non-zero, saying why."""
    worker_id = f"wf-{secrets.token_hex(3)}"
    args = ["worker", "--id", worker_id, "--master", f"127.0.0.1:{free_port()}"]
    args += ["--listen", "127.0.0.1:0", "--runtime", "process", "--metrics-listen", "off"]
    args += ["--cpu", "1", "--mem", "1", "--storage", "1"]
    env = {**os.environ, "CLOUDAI_HOME": str(tmp_path / "home")}
    for setup in (["certs", "init"], ["certs", "worker", worker_id]):  # the documented way
        subprocess.run(
            [sys.executable, "-m", "cloudai.cli.main", *setup], env=env, check=True, timeout=60
        )
    done = subprocess.run(
        [sys.executable, "-c", BROKEN_WORKER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    why = (
        "heartbeat-loop failed 3 time(s) in a row (last: RuntimeError: injected: registration "
        f"is broken); failed too often: the worker {worker_id} stops"
    )
    assert done.returncode == 1, done.stderr
    logged = [line for line in done.stderr.splitlines() if "CRITICAL" in line]
    assert len(logged) == 1 and why in logged[0], done.stderr
    assert done.stderr.rstrip().endswith(why), done.stderr  # the CLI's one-line error, last
    assert done.stderr.count("heartbeat-loop started") == 3


# ---- the faults, each ending with the invariant checker (tests/invariants.py) ------


def holds_invariants(
    c: ProcCluster,
    docker: Any,
    *worker_ids: str,
    seen: dict[str, str] | None = None,
    acknowledged: Iterable[str] = (),
    live: Iterable[str] | None = None,
) -> None:
    """The invariants, read from the store and the Docker engine, with the held resources as
    the master answers them."""
    check_invariants(
        c.db_url,
        docker_engine(docker),
        worker_ids,
        acknowledged=acknowledged,
        terminal_seen=seen,
        live_workers=None if live is None else list(live),
        allocated=master_allocated(c.client),
    )


def state_of(c: ProcCluster, worker_id: str) -> str:
    return next(w.state for w in c.client.list_workers() if w.worker_id == worker_id)


def ended(docker: Any, task_id: str) -> bool:
    """The task's container has exited, or is gone already: a worker removes it as soon as its
    end is in the spool, before the master hears of it (the low-level call: no inspect of
    each container, which races the removal)."""
    found = docker.api.containers(all=True, filters={"label": f"cloudai.task={task_id}"})
    return all(c["State"] in ("exited", "dead", "removing") for c in found)


def spooled(c: ProcCluster, worker_id: str, task_id: str) -> str:
    """The worker's spooled end of the task (src/cloudai/worker/spool.py), "" when none."""
    spool = c.home / f"worker-{worker_id}" / "spool"
    return "".join(p.read_text() for p in sorted(spool.glob(f"{task_id}@*.json")))


def worker_log(c: ProcCluster, worker_id: str) -> str:
    return (c.tmp / f"worker-{worker_id}.log").read_text(errors="replace")


def kinds(c: ProcCluster, task_id: str) -> list[str]:
    return [e.kind for e in c.client.get_task(task_id).events]


def release(docker: Any, *task_ids: str) -> None:
    """Let UNTIL_GO tasks finish."""
    for task_id in task_ids:
        container(docker, task_id).exec_run(["touch", "/tmp/go"])


def test_worker_sigstop_past_unhealthy_then_sigcont(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Fault 2. A frozen worker is shown unhealthy, then offline, and gets no new work; its
    task runs on. Thawed within `--worker-lost-after`, it is healthy again and its task
    completes once: nothing is judged lost."""
    with cluster(tmp_path, "--worker-lost-after", "60") as c:
        c.add_worker(worker_id)
        task_id = run(c, worker_id, *UNTIL_GO)
        seen: dict[str, str] = {}
        states: list[str] = []
        c.workers[worker_id].send_signal(signal.SIGSTOP)
        try:

            def offline() -> bool:
                states.append(state_of(c, worker_id))
                return states[-1] == "offline"

            eventually(offline, timeout=30, interval=0.1, what="the master to see it offline")
            assert "unhealthy" in states, states  # on the way there
            assert container(docker, task_id).status == "running"
            assert c.client.get_task(task_id).status.value == "running"
        finally:
            c.workers[worker_id].send_signal(signal.SIGCONT)
        eventually(lambda: state_of(c, worker_id) == "healthy", timeout=30, what="it to be healthy")
        release(docker, task_id)
        done = c.wait_status(task_id, "completed")
        assert "finished" in done["result"]["logs"]
        assert kinds(c, task_id).count("completed") == 1
        assert lost_events(c, task_id) == [] and "failed" not in kinds(c, task_id)
        holds_invariants(c, docker, worker_id, seen=seen, acknowledged=[task_id])


def test_worker_sigkill_restarted_readopts_its_containers(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Fault 3. A worker killed with two tasks running, restarted with the same ID, takes the
    same two containers back; both complete with one result each."""
    with cluster(tmp_path, "--worker-lost-after", "60") as c:
        c.add_worker(worker_id)
        both = [run(c, worker_id, *UNTIL_GO) for _ in range(2)]
        ids = {t: container(docker, t).id for t in both}
        c.workers[worker_id].kill()
        c.workers[worker_id].wait(10)
        assert all(container(docker, t).status == "running" for t in both)

        c.add_worker(worker_id)
        eventually(
            lambda: all(f"[Task {t}] re-adopted" in worker_log(c, worker_id) for t in both),
            timeout=30,
            what="the restarted worker to re-adopt both containers",
        )
        assert {t: container(docker, t).id for t in both} == ids  # the same, and only those
        release(docker, *both)
        for t in both:
            done = c.wait_status(t, "completed")
            assert "finished" in done["result"]["logs"] and done["exit_code"] == 0
            assert kinds(c, t).count("completed") == 1 and "late_report" not in kinds(c, t)
        holds_invariants(c, docker, worker_id, acknowledged=both)


def test_worker_sigkill_never_restarted_its_tasks_end_worker_lost(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Fault 4. A worker killed for good: after `--worker-lost-after` its task ends failed,
    "worker lost", with one result, and its resources are free. Its container runs on: nothing
    on that machine can stop it, so it is exempt from "no orphan" while the worker is away.
    When a worker of that ID returns, it stops and removes it; the status stays failed."""
    lost_after = 3.0
    with cluster(tmp_path, "--worker-lost-after", f"{lost_after:g}") as c:
        c.add_worker(worker_id)
        task_id = run(c, worker_id, *SLEEPER)
        seen: dict[str, str] = {}
        c.workers[worker_id].kill()
        c.workers[worker_id].wait(10)
        (gone,) = [w for w in c.client.list_workers() if w.worker_id == worker_id]
        assert gone.last_heartbeat is not None  # its last, now that it is dead

        c.wait_status(task_id, "failed", timeout=lost_after + 30)
        lost = c.client.get_task(task_id)
        assert lost.reason.startswith("worker lost"), lost.reason
        assert lost.result is not None and lost.result.error == lost.reason
        (failed,) = [e for e in lost.events if e.kind == "failed"]
        assert failed.at - gone.last_heartbeat >= lost_after  # not before its deadline
        assert container(docker, task_id).status == "running"
        holds_invariants(c, docker, worker_id, seen=seen, acknowledged=[task_id], live=[])

        c.add_worker(worker_id)  # it returns: the container is an orphan now, and goes
        holds_invariants(c, docker, worker_id, seen=seen, acknowledged=[task_id])
        assert (
            docker.containers.list(
                all=True, ignore_removed=True, filters={"label": f"cloudai.task={task_id}"}
            )
            == []
        )
        after = c.client.get_task(task_id)
        assert after.status.value == "failed" and after.result == lost.result
        assert "late_report" in [e.kind for e in after.events]  # its report, kept as an event


def test_master_sigkill_during_a_burst_of_submits(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Fault 6. The master is killed in the middle of 100 submits from 8 threads: every submit
    that was answered exists after the restart, and every task that exists runs to its end."""
    with cluster(tmp_path, "--worker-lost-after", "60") as c:
        c.add_worker(worker_id, cpu=2, mem=4)
        spec = TaskSpec(
            image=TEST_IMAGE,
            command=("true",),
            resources=Resources(cpu=0.1, mem_gb=0.05),  # placed by the master: queued when full
        )
        acked: list[str] = []
        refused: list[str] = []
        attempts = iter(range(100))
        lock = threading.Lock()
        kill_after = 30  # answered submits: the thread that gets the 30th kills the master
        assert c.master is not None
        master = c.master

        def submitter() -> None:
            with c.new_client() as client:
                while True:
                    with lock:
                        if next(attempts, None) is None:
                            return
                    try:
                        task = client.submit(spec)
                    except CloudAIError as exc:  # the master died under it: outcome unknown
                        with lock:
                            refused.append(str(exc))
                        continue
                    with lock:
                        acked.append(task.task_id)
                        if len(acked) == kill_after:
                            master.send_signal(signal.SIGKILL)  # the others are mid-call

        threads = [threading.Thread(target=submitter) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        master.wait(10)
        c.master = None
        answered = list(acked)
        assert len(answered) + len(refused) == 100, (len(answered), refused[:3])
        assert len(answered) >= kill_after and refused, (len(answered), refused[:3])

        restart_master(c)
        everything = eventually(
            lambda: (
                (ts := c.client.list_tasks())
                and all(t.status.value == "completed" for t in ts)
                and ts
            ),
            timeout=120,
            interval=0.5,
            what="every task to complete",
        )
        assert {t.task_id for t in everything} >= set(answered)
        holds_invariants(c, docker, worker_id, acknowledged=answered)


def metric(port: int, name: str) -> float:
    """One sample of a process's /metrics (0 when it is not there yet)."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    return 0.0


def test_master_restarted_on_another_store_is_refused_and_loses_nothing(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Fault 14. The master restarted on an empty store (a forgotten --db) is another cluster:
    the worker refuses it, loudly, and its task runs on; a task that ends meanwhile keeps its
    result, spooled, for the right master. Back on the right store, the task has its one
    result, with its logs (its report survives the worker's reconnects in between)."""
    metrics = free_port()
    refused = "cloudai_worker_masters_refused_total"
    with cluster(tmp_path, "--worker-lost-after", "60") as c:
        c.add_worker(worker_id, extra=("--metrics-listen", f"127.0.0.1:{metrics}"))
        running = run(c, worker_id, *SLEEPER)
        ending = run(c, worker_id, *UNTIL_GO)
        seen: dict[str, str] = {}
        holds_invariants(c, docker, worker_id, seen=seen)
        right_store = c.db_url

        c.kill_master(signal.SIGTERM)
        c.db_url = f"sqlite:///{tmp_path / 'forgotten.db'}"
        restart_master(c)
        eventually(lambda: metric(metrics, refused) >= 5, timeout=30, what="refusals")
        assert "REFUSED master" in worker_log(c, worker_id)
        assert "belongs to cluster" in (c.tmp / "master.log").read_text()
        assert c.client.list_workers() == [] and c.client.list_tasks() == []
        assert container(docker, running).status == "running"
        release(docker, ending)  # it ends while only the wrong master is there
        eventually(lambda: ended(docker, ending), what="it to end")
        before = metric(metrics, refused)
        eventually(lambda: metric(metrics, refused) >= before + 5, what="more refusals")
        assert "finished" in spooled(c, worker_id, ending)  # kept, with its logs, unreported
        assert container(docker, running).status == "running"

        c.kill_master(signal.SIGTERM)
        c.db_url = right_store
        restart_master(c)
        done = c.wait_status(ending, "completed")
        assert "finished" in done["result"]["logs"]
        assert kinds(c, ending).count("completed") == 1
        assert c.client.get_task(running).status.value == "running"
        assert lost_events(c, running, ending) == []
        holds_invariants(c, docker, worker_id, seen=seen, acknowledged=[running, ending])
        c.cli("cancel", running, "--force")
        c.wait_status(running, "cancelled")
        holds_invariants(c, docker, worker_id, seen=seen, acknowledged=[running, ending])


def test_concurrent_cancels_and_completes_on_three_workers(tmp_path: pathlib.Path) -> None:
    """Fault 13. 500 short tasks on 3 workers, and 1,000 cancels (two for each task, from 16
    threads, while the submits go on) racing their completion: every task ends once, as its
    first decider said, with one result; nothing is left running or held.

    The process runtime, not Docker: 500 containers would take minutes to start and remove on
    2 cores, and the race under test is in the master and the workers, not in the engine."""
    rng = random.Random(13)
    workers = ("p1", "p2", "p3")
    args = ("--worker-lost-after", "60", "--rate-limit-submit", "0", "--rate-limit-cancel", "0")
    with cluster(tmp_path, *args) as c:
        for w in workers:
            c.add_worker(w, runtime="process", cpu=20, mem=10)
        specs = [
            TaskSpec(
                image="busybox",  # the process runtime runs the command only
                command=("sleep", f"{rng.uniform(0.0, 3.0):.2f}"),
                resources=Resources(cpu=0.1, mem_gb=0.01),
            )
            for _ in range(500)
        ]
        feed = CancelFeed(rng, per_task=2, spread=3.0)
        acks: list[Any] = []
        failed: list[BaseException] = []

        def cancel_all() -> None:
            try:
                acks.extend(in_threads(c, 16, feed, lambda cl, t: cl.cancel_many([t])[0]))
            except Exception as exc:  # reported below, in the test's thread
                failed.append(exc)

        def submit(client: Any, spec: TaskSpec) -> str:
            task_id = str(client.submit(spec).task_id)
            feed.add(task_id)
            return task_id

        cancels = threading.Thread(target=cancel_all)
        cancels.start()
        try:
            acked = in_threads(c, 8, iter(specs), submit)
        finally:
            feed.close()
            cancels.join(120)
        assert not failed, failed
        assert len(acked) == 500 and len(acks) == 1000

        def all_ended() -> bool:
            return all(t.status.value in ("completed", "cancelled") for t in c.client.list_tasks())

        eventually(all_ended, timeout=120, interval=0.5, what="every task to end")
        final = {t.task_id: t.status.value for t in c.client.list_tasks()}
        assert sorted(final) == sorted(acked)
        won: dict[str, int] = {}
        for ack in acks:  # each answer agrees with how the task ended
            if ack.success and not ack.already:
                won[ack.task_id] = won.get(ack.task_id, 0) + 1
                assert final[ack.task_id] == "cancelled", ack
            elif ack.success:
                assert final[ack.task_id] == "cancelled", ack
            else:
                assert ack.error_code == "FAILED_PRECONDITION", ack
                assert final[ack.task_id] == "completed", ack
        assert all(n == 1 for n in won.values())  # one cancel decided each cancelled task
        assert set(won) == {t for t, s in final.items() if s == "cancelled"}
        outcomes = set(final.values())
        assert outcomes == {"completed", "cancelled"}, outcomes  # the race was run both ways
        check_invariants(
            c.db_url,
            process_engine(c.home),
            workers,
            acknowledged=acked,
            allocated=master_allocated(c.client),
            timeout=30,
        )


class CancelFeed:
    """Task IDs to cancel, each `per_task` times, each at a random moment up to `spread`
    seconds after its submit: the cancels run while the submits go on, against tasks of every
    age (pending, starting, running, ending, ended)."""

    def __init__(self, rng: random.Random, per_task: int, spread: float) -> None:
        self.rng = rng
        self.per_task = per_task
        self.spread = spread
        self.due: list[tuple[float, str]] = []  # a heap: (when, task_id)
        self.closed = False
        self.cond = threading.Condition()

    def add(self, task_id: str) -> None:
        with self.cond:
            for _ in range(self.per_task):
                when = time.monotonic() + self.rng.uniform(0, self.spread)
                heapq.heappush(self.due, (when, task_id))
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def __iter__(self) -> CancelFeed:
        return self

    def __next__(self) -> str:
        with self.cond:
            while True:
                if self.due and self.due[0][0] <= time.monotonic():
                    return heapq.heappop(self.due)[1]
                if not self.due and self.closed:
                    raise StopIteration
                wait = self.due[0][0] - time.monotonic() if self.due else None
                self.cond.wait(timeout=wait)


def in_threads(
    c: ProcCluster, n: int, todo: Iterator[Any], call: Callable[[Any, Any], Any]
) -> list[Any]:
    """`call(client, item)` for every item, from n threads with a client each; the answers.
    The first error fails the test, after every thread has stopped."""
    lock = threading.Lock()
    out: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        with c.new_client() as client:
            while not errors:
                with lock:
                    item = next(todo, None)
                if item is None:
                    return
                try:
                    answer = call(client, item)
                except Exception as exc:  # reported below, in the test's thread
                    errors.append(exc)
                    return
                with lock:
                    out.append(answer)

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return out
