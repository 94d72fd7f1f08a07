"""Faults a cluster must survive, as real processes on a real Docker engine (docs/reliability.md
lists each fault, what cloudai promises, and the test here that holds it to it)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from docker.errors import APIError as DockerAPIError

from tests.cluster import HEARTBEAT, ProcCluster, free_port
from tests.helpers import TEST_IMAGE, eventually

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
    c = ProcCluster(tmp_path, master_args=master_args)
    try:
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()


def run(c: ProcCluster, worker_id: str, *command: str) -> str:
    task = c.cli_json("task", "run", TEST_IMAGE, *command, "--worker", worker_id, "--mem", "0.05")
    task_id = str(task["task_id"])
    eventually(lambda: "ready" in c.cli("logs", task_id).stdout, timeout=30, what="the task")
    return task_id


def container(docker: Any, task_id: str) -> Any:
    (found,) = docker.containers.list(all=True, filters={"label": f"cloudai.task={task_id}"})
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
            lambda: container(docker, short).status == "exited",
            what="the short task's container to exit while the master is down",
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
    args += ["--cpu", "1", "--mem", "1", "--storage", "1", "--insecure"]  # no PKI needed here
    env = {**os.environ, "CLOUDAI_HOME": str(tmp_path / "home")}
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
