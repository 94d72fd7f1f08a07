"""Faults injected at an exact step, as real processes on a real Docker engine: the master
killed between two steps of a cancel (fail-points, src/cloudai/failpoints.py), a result report
lost between the worker and the master (a TCP proxy), an engine call that never returns (a
proxy on the engine's socket). docs/reliability.md lists what cloudai promises for each."""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import signal
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from cloudai.failpoints import ENV as FAILPOINTS_ENV
from tests.cluster import ProcCluster
from tests.e2e import test_faults
from tests.e2e.test_faults import (
    SLEEPER,
    cluster,
    container,
    holds_invariants,
    kinds,
    release,
    restart_master,
    run,
    spooled,
    worker_log,
)
from tests.faultproxy import EngineProxy, TcpProxy
from tests.helpers import eventually

worker_id = test_faults.worker_id  # the fixture: a unique worker ID, its containers removed after


def containers_of(docker: Any, task_id: str) -> list[str]:
    """The IDs of the task's containers on the engine (the low-level call: no inspect of
    each, which races a removal)."""
    found = docker.api.containers(all=True, filters={"label": f"cloudai.task={task_id}"})
    return [c["Id"] for c in found]


@pytest.mark.parametrize(
    "point",
    [
        "cancel.after_status_write",
        "cancel.before_worker_call",
        "cancel.after_worker_ack",
        "report.before_result_write",
    ],
)
def test_master_sigkill_at_each_step_of_a_cancel(
    docker: Any,
    tmp_path: pathlib.Path,
    worker_id: str,
    point: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fault 5. The master killed (SIGKILL) at each step of a cancel, then restarted: the
    cancel completes. The task is cancelled with one result, its container is gone, and the
    stop is confirmed; the cancel is decided once."""
    monkeypatch.setenv(FAILPOINTS_ENV, point)  # the master started below carries it
    # The master judges the worker by 1 s heartbeats (it beats every 0.2 s): offline only
    # after 12 s without one, so on a busy machine the cancel still calls the worker directly.
    args = ("--worker-lost-after", "60", "--heartbeat-interval", "1")
    with ProcCluster(tmp_path, master_args=args) as c:
        c.add_worker(worker_id)
        task_id = run(c, worker_id, *SLEEPER)
        assert c.master is not None
        master = c.master
        done = c.cli("cancel", task_id, "--reason", f"killed at {point}")
        if point.startswith("cancel."):  # the master died under the call: outcome unknown
            assert done.returncode != 0, done.stdout
            assert "Traceback" not in done.stderr and done.stderr.strip(), done.stderr
        else:  # the cancel was answered; the master dies when the worker reports the stop
            assert done.returncode == 0, done.stderr
        assert master.wait(30) == -signal.SIGKILL
        c.master = None
        assert f"fail-point {point} reached" in (c.tmp / "master.log").read_text()

        del c.env[FAILPOINTS_ENV]  # restarted without it
        restart_master(c)
        c.wait_status(task_id, "cancelled", timeout=60)
        shown = eventually(
            lambda: (
                (t := c.cli_json("task", "show", task_id))["cancellation"]["state"] == "removed"
                and t
            ),
            timeout=60,
            what="the stop to be confirmed (container removed)",
        )
        assert shown["result"]["status"] == "cancelled", shown["result"]
        assert shown["cancellation"]["reason"] == f"killed at {point}"
        assert containers_of(docker, task_id) == []
        assert kinds(c, task_id).count("cancel_requested") == 1
        holds_invariants(c, docker, worker_id, acknowledged=[task_id])


@contextlib.contextmanager
def spawn_env(c: ProcCluster, **env: str) -> Iterator[None]:
    """The processes the cluster spawns meanwhile get `env` on top of its own."""
    saved = c.env
    c.env = {**saved, **env}
    try:
        yield
    finally:
        c.env = saved


def stop_state(c: ProcCluster, task_id: str) -> str:
    """How far the task's stop has got, as `task show` says it (`cancellation.state`)."""
    cancellation = c.client.get_task(task_id).cancellation
    return cancellation.state if cancellation is not None else ""


# Its output is large enough to tell its report from the heartbeats on the wire.
BIG_UNTIL_GO = (
    "sh",
    "-c",
    "echo ready; while [ ! -e /tmp/go ]; do sleep 0.05; done; "
    "head -c 40000 /dev/zero | tr '\\0' x; echo; echo finished",
)


@pytest.mark.parametrize("lost", ["request", "reply"])
def test_a_result_report_lost_on_the_way_is_retried_and_stored_once(
    docker: Any, tmp_path: pathlib.Path, worker_id: str, lost: str
) -> None:
    """Fault 8. The worker reaches the master through a TCP proxy that loses its result
    report: the request on its way to the master ("request"), or the master's answer on its
    way back after the result was stored ("reply"). The worker retries; the result is stored
    once, with its logs, and the task completes once (a retry that finds the result stored is
    kept as an event, and changes nothing)."""
    with cluster(tmp_path, "--worker-lost-after", "60") as c:
        proxy = TcpProxy([c.port, c.peer_port])
        try:
            c.add_worker(worker_id, extra=("--master", f"127.0.0.2:{c.port}"))
            task_id = run(c, worker_id, *BIG_UNTIL_GO)
            assert proxy.accepted >= 2  # its calls go through the proxy, both ports
            before = proxy.dropped["up"]
            proxy.mode = "drop_all" if lost == "request" else "drop_replies"
            release(docker, task_id)
            ended = f"[Task {task_id}] ended completed"
            if lost == "request":  # its report (40 kB of logs) went out, and was lost
                eventually(
                    lambda: (
                        ended in worker_log(c, worker_id) and proxy.dropped["up"] - before > 30_000
                    ),
                    timeout=30,
                    what="the worker's report to be sent and dropped",
                )
                assert c.client.get_task(task_id).status.value == "running"  # never arrived
            else:  # stored; its answer dropped
                eventually(
                    lambda: c.client.get_task(task_id).status.value == "completed",
                    timeout=30,
                    what="the report to be stored while its answer is dropped",
                )
                assert "finished" in spooled(c, worker_id, task_id)  # no answer: kept
            assert proxy.cut() >= 1
            eventually(
                lambda: containers_of(docker, task_id) == [] and not spooled(c, worker_id, task_id),
                timeout=30,
                what="the container removed, and the report acknowledged (its spool entry gone)",
            )
            log = worker_log(c, worker_id)
            assert f"[Task {task_id}] ⚠ result report failed (attempt 1), retrying" in log
            done = c.cli_json("task", "show", task_id)
            assert done["status"] == "completed" and done["exit_code"] == 0
            assert done["result"]["status"] == "completed" and "finished" in done["result"]["logs"]
            assert kinds(c, task_id).count("completed") == 1
            # A retry that finds the result stored is kept as an event; nothing is overwritten.
            late = kinds(c, task_id).count("late_report")
            assert late >= 1 if lost == "reply" else late == 0, late
            holds_invariants(c, docker, worker_id, acknowledged=[task_id])
        finally:
            proxy.close()


def test_a_hung_engine_call_is_a_failed_stop(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Fault 11. The worker's engine holds its stop signal for ever (a proxy on the engine's
    socket never forwards nor answers it): after `--engine-deadline` the stop is reported as
    failed (`stop_failed`, with why, in `task show`); the worker stays healthy and keeps
    beating; the task's resources stay held while its container runs. Once the container is
    gone (the operator kills it on the engine), the task ends with its one result."""
    sock_dir = tempfile.mkdtemp(prefix="cai-", dir="/tmp")  # a unix socket path is short
    proxy = EngineProxy(f"{sock_dir}/engine.sock", hold=r"^POST /\S+/containers/[^/]+/kill")
    try:
        with cluster(tmp_path, "--worker-lost-after", "60") as c:
            with spawn_env(c, DOCKER_HOST=proxy.url):
                c.add_worker(worker_id, extra=("--engine-deadline", "2"))
            task_id = run(c, worker_id, *SLEEPER)
            assert proxy.forwarded > 0  # its engine calls go through the proxy
            seen: dict[str, str] = {}
            done = c.cli("cancel", task_id)
            assert done.returncode == 0, done.stderr
            eventually(
                lambda: stop_state(c, task_id) == "stop_failed",
                timeout=30,
                what="the stop to be reported failed",
            )
            assert len(proxy.held) == 1 and "signal=SIGTERM" in proxy.held[0], proxy.held
            shown = c.cli_json("task", "show", task_id)
            why = shown["cancellation"]["stop_error"]  # which call, and why
            assert shown["cancellation"]["state"] == "stop_failed"
            assert why.startswith("SIGTERM failed: the engine did not answer"), why
            assert shown["status"] == "cancelled" and shown["result"] is None
            with spawn_env(c, COLUMNS="250"):
                assert why in c.cli("task", "show", task_id).stdout  # "Stop error", for people
            assert container(docker, task_id).status == "running"

            beats: set[float] = set()

            def beating() -> bool:
                (w,) = [w for w in c.client.list_workers() if w.worker_id == worker_id]
                assert w.state == "healthy", w
                beats.add(w.last_heartbeat or 0.0)
                return len(beats) >= 5

            eventually(beating, timeout=30, interval=0.2, what="heartbeats after the failed stop")
            (w,) = [w for w in c.client.list_workers() if w.worker_id == worker_id]
            assert w.releasing_tasks == (task_id,)  # held while its container may run
            assert w.allocated.mem_gb == pytest.approx(0.05)
            with spawn_env(c, COLUMNS="250"):  # the table on one line a row
                shown = c.cli("workers").stdout
            assert "(+1 stopping), 1 stop failed" in shown
            assert f"the stop of {task_id} failed" in shown  # and the worker shows why
            (row,) = [r for r in c.cli_json("workers") if r["worker_id"] == worker_id]
            (failure,) = row["stop_failures"]
            assert failure["task_id"] == task_id
            assert failure["error"].startswith("SIGTERM failed: the engine did not answer")
            holds_invariants(c, docker, worker_id, seen=seen, acknowledged=[task_id])

            docker.api.kill(container(docker, task_id).id)  # the operator, on the engine
            eventually(
                lambda: stop_state(c, task_id) == "removed",
                timeout=30,
                what="the task's end to be reported once its container is gone",
            )
            ended = c.client.get_task(task_id)
            assert ended.result is not None and ended.result.status.value == "cancelled"
            assert containers_of(docker, task_id) == []
            holds_invariants(c, docker, worker_id, seen=seen, acknowledged=[task_id])
    finally:
        proxy.close()
        shutil.rmtree(sock_dir, ignore_errors=True)
