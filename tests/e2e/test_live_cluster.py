"""A live cluster, as real processes: telemetry, liveness, reconciliation, logs --follow,
monitor under a pseudo-terminal, drain, and /metrics checked by Prometheus' own promtool."""

from __future__ import annotations

import os
import pathlib
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import HEARTBEAT, ProcCluster, free_port
from tests.helpers import TEST_IMAGE, eventually, need

BURN = ("sh", "-c", "echo ready; while true; do :; done")
SLEEPER = ("sh", "-c", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done")


@pytest.fixture
def proc_cluster(tmp_path: pathlib.Path) -> Iterator[ProcCluster]:
    """Master and two process-runtime workers as processes (no Docker needed)."""
    c = ProcCluster(tmp_path, master_args=("--worker-lost-after", "60"))
    try:
        c.add_worker("w1", runtime="process")
        c.add_worker("w2", runtime="process")
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        for p in c.workers.values():
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
        c.close()


def run(c: ProcCluster, *command: str, worker: str = "", cpu: str = "0.5") -> str:
    args = ["task", "run", TEST_IMAGE, *command, "--cpu", cpu, "--mem", "0.05"]
    if worker:
        args += ["--worker", worker]
    return str(c.cli_json(*args)["task_id"])


def worker_view(c: ProcCluster, worker_id: str) -> dict[str, Any]:
    return next(w for w in c.cli_json("workers") if w["worker_id"] == worker_id)


def test_heartbeats_carry_real_telemetry(proc_cluster: ProcCluster) -> None:
    c = proc_cluster
    task_id = run(c, *BURN, worker="w1", cpu="1")
    busy = eventually(
        lambda: (
            ((t := c.cli_json("task", "show", task_id))["usage"]["cpu_percent"] or 0) > 20 and t
        ),
        timeout=20,
        what="the burning task's CPU use in its view",
    )
    assert busy["usage"]["cpu_percent"] > 20 and busy["usage"]["mem_used_gb"] > 0
    w1 = eventually(
        lambda: (w := worker_view(c, "w1"))["cpu_percent"] and w["cpu_percent"] > 10 and w,
        what="node CPU use in workers -o json",
    )
    assert w1["mem_used_gb"] > 0 and w1["disk_free_gb"] > 0
    assert w1["allocated"]["cpu"] == 1 and w1["available"]["cpu"] == 1
    c.cli("cancel", task_id, "--force")


def test_sigstopped_worker_turns_unhealthy_then_offline_and_back(proc_cluster: ProcCluster) -> None:
    c = proc_cluster
    task_id = run(c, *SLEEPER, worker="w1")
    c.wait_status(task_id, "running")
    pid = c.workers["w1"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        eventually(lambda: worker_view(c, "w1")["state"] == "unhealthy", what="w1 unhealthy")
        assert time.monotonic() - stopped_at < 3 * HEARTBEAT + 2
        # No new placement on it: a task that fits only on w1 (w2 is full) stays pending.
        filler = run(c, *SLEEPER, worker="w2", cpu="2")
        waiting = run(c, *SLEEPER, cpu="1")
        assert c.cli_json("task", "show", waiting)["status"] == "pending"
        eventually(lambda: worker_view(c, "w1")["state"] == "offline", what="w1 offline")
        assert c.cli_json("task", "show", waiting)["status"] == "pending"
        assert c.cli_json("task", "show", task_id)["status"] == "running"
    finally:
        os.kill(pid, signal.SIGCONT)
    eventually(lambda: worker_view(c, "w1")["state"] == "healthy", what="w1 healthy again")
    assert c.cli_json("task", "show", task_id)["status"] == "running"  # it kept running
    assert c.wait_status(waiting, "running")["worker_id"] == "w1"
    c.cli("cancel", "--all", "--yes", "--force")
    for t in (task_id, filler, waiting):
        c.wait_status(t, "cancelled")


def test_worker_lost_fails_its_tasks_and_stops_them_when_back(tmp_path: pathlib.Path) -> None:
    c = ProcCluster(tmp_path, master_args=("--worker-lost-after", "3"))
    try:
        c.add_worker("w1", runtime="process")
        _worker_lost(c)
    finally:
        c.close()


def _worker_lost(c: ProcCluster) -> None:
    task_id = run(c, *SLEEPER, worker="w1")
    eventually(lambda: "ready" in c.cli("logs", task_id).stdout, what="the task to run")
    pid = c.workers["w1"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        lost = c.wait_status(task_id, "failed", timeout=20)  # --worker-lost-after 3
        assert "worker lost" in lost["reason"]
        assert worker_view(c, "w1")["allocated"]["cpu"] == 0
    finally:
        os.kill(pid, signal.SIGCONT)
    # Back: its heartbeat gets a stop order for the task; the worker stops and forgets it.
    eventually(lambda: task_id not in worker_view(c, "w1")["running_tasks"], what="no tasks")

    def late_report() -> Any:
        task = c.cli_json("task", "show", task_id)
        return any(e["kind"] == "late_report" for e in task["events"]) and task

    done = eventually(late_report, timeout=20, what="the worker's own report, kept as an event")
    assert done["status"] == "failed"  # decided, never overwritten


def test_logs_follow_streams_while_the_task_runs(proc_cluster: ProcCluster) -> None:
    c = proc_cluster
    task_id = run(c, "sh", "-c", "for i in 1 2 3 4; do echo line $i; sleep 1; done")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudai.cli.main", "logs", task_id, "--follow"],
        env=c.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    got_first = time.monotonic()
    assert first.strip() == "line 1"
    assert c.cli_json("task", "show", task_id)["status"] == "running"  # streamed live
    rest = proc.stdout.read()
    assert proc.wait(30) == 0
    assert [ln.strip() for ln in rest.splitlines()] == ["line 2", "line 3", "line 4"]
    assert time.monotonic() - got_first > 2  # the lines came as they were printed
    assert c.cli_json("task", "show", task_id)["status"] == "completed"


def test_monitor_renders_under_a_terminal_and_exits_at_the_end(proc_cluster: ProcCluster) -> None:
    c = proc_cluster
    task_id = run(c, "sh", "-c", "echo tick; sleep 2; echo tock")
    pid, fd = pty.fork()
    if pid == 0:  # the child: monitor on a pseudo-terminal
        os.execve(
            sys.executable, [sys.executable, "-m", "cloudai.cli.main", "monitor", task_id], c.env
        )
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal: it exited
                break
            if not chunk:
                break
            out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert f"monitor {task_id}" in text and "tock" in text
    assert f"{task_id} completed" in text


def test_drain_and_undrain_change_placement(proc_cluster: ProcCluster) -> None:
    c = proc_cluster
    res = c.cli("drain", "w1")
    assert res.returncode == 0 and "drained" in res.stdout
    assert worker_view(c, "w1")["drained"] is True
    placed = [c.wait_status(run(c, *SLEEPER, cpu="0.2"), "running")["worker_id"] for _ in range(4)]
    assert placed == ["w2"] * 4
    named = c.cli("task", "run", TEST_IMAGE, "true", "--worker", "w1")
    assert named.returncode == 5 and "drained" in named.stderr
    assert c.cli("undrain", "w1").returncode == 0
    assert c.wait_status(run(c, *SLEEPER, cpu="0.2"), "running")["worker_id"] == "w1"
    # drain --cancel: no new tasks, and its running tasks cancelled (after --yes)
    res = c.cli("drain", "w2", "--cancel", "--yes", "-o", "json")
    assert res.returncode == 0, res.stderr
    for t in c.cli_json("task", "ls", "--worker", "w2"):
        c.wait_status(t["task_id"], "cancelled")
    c.cli("cancel", "--all", "--yes", "--force")


def _scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        return resp.read().decode()


def _value(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_move_with_what_happened_and_pass_promtool(tmp_path: pathlib.Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        need("promtool", "Debian's prometheus package (scripts/test.sh installs it)")
    master_metrics = f"127.0.0.1:{free_port()}"
    worker_metrics = f"127.0.0.1:{free_port()}"
    c = ProcCluster(tmp_path, master_args=("--metrics-listen", master_metrics))
    try:
        c.add_worker("w1", runtime="process", extra=("--metrics-listen", worker_metrics))
        before = _scrape(master_metrics)
        done = run(c, "sh", "-c", "echo hi")
        c.wait_status(done, "completed")
        victim = run(c, *SLEEPER)
        eventually(lambda: "ready" in c.cli("logs", victim).stdout, what="the task to run")
        assert c.cli("cancel", victim).returncode == 0
        assert c.cli("cancel", "task-0-nope").returncode == 3
        eventually(
            lambda: _value(_scrape(worker_metrics), "cloudai_worker_stops_total") >= 1,
            what="the worker to count the stop",
        )
        after = _scrape(master_metrics)
        assert (
            _value(after, "cloudai_tasks_submitted_total")
            - _value(before, "cloudai_tasks_submitted_total")
            == 2
        )
        assert _value(after, 'cloudai_cancels_total{outcome="cancelled"}') == 1
        assert _value(after, 'cloudai_cancels_total{outcome="not_found"}') == 1
        assert _value(after, 'cloudai_tasks{status="completed"}') == 1
        assert _value(after, "cloudai_heartbeats_total") > _value(
            before, "cloudai_heartbeats_total"
        )
        assert _value(after, "cloudai_store_transaction_seconds_count") > 0
        for address in (master_metrics, worker_metrics):
            check = subprocess.run(
                [promtool, "check", "metrics"],
                input=_scrape(address),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert check.returncode == 0, check.stdout + check.stderr
    finally:
        c.close()


def test_lost_on_worker_when_its_container_vanished(docker: Any, tmp_path: pathlib.Path) -> None:
    """The store says running, the restarted worker does not have it: failed, room freed."""
    c = ProcCluster(tmp_path)
    try:
        c.add_worker("w1")
        task_id = run(c, *SLEEPER, worker="w1")
        eventually(lambda: "ready" in c.cli("logs", task_id).stdout, what="the task to run")
        c.workers["w1"].kill()
        c.workers["w1"].wait(10)
        for container in docker.containers.list(
            all=True, ignore_removed=True, filters={"label": f"cloudai.task={task_id}"}
        ):
            container.remove(force=True)  # behind the worker's back
        c.add_worker("w1")
        lost = c.wait_status(task_id, "failed", timeout=30)
        assert "lost on worker" in lost["reason"]
        assert worker_view(c, "w1")["allocated"]["cpu"] == 0
    finally:
        c.close()


def test_lost_worker_containers_are_stopped_when_it_returns(
    docker: Any, tmp_path: pathlib.Path
) -> None:
    c = ProcCluster(tmp_path, master_args=("--worker-lost-after", "2"))
    try:
        c.add_worker("w1")
        task_id = run(c, *SLEEPER, worker="w1")
        eventually(lambda: "ready" in c.cli("logs", task_id).stdout, what="the task to run")
        pid = c.workers["w1"].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            assert "worker lost" in c.wait_status(task_id, "failed", timeout=20)["reason"]
        finally:
            os.kill(pid, signal.SIGCONT)
        eventually(
            lambda: (
                not docker.containers.list(
                    all=True, ignore_removed=True, filters={"label": f"cloudai.task={task_id}"}
                )
            ),
            timeout=30,
            what="the lost task's container to be stopped by order and removed",
        )
        assert c.cli_json("task", "show", task_id)["status"] == "failed"
    finally:
        c.close()


def test_docker_task_usage_comes_from_the_engine(docker: Any, tmp_path: pathlib.Path) -> None:
    """The task's view agrees with the engine's own stats for the container."""
    c = ProcCluster(tmp_path)
    try:
        c.add_worker("w1")
        task_id = run(c, *BURN, worker="w1", cpu="1")
        shown = eventually(
            lambda: (
                ((t := c.cli_json("task", "show", task_id))["usage"]["cpu_percent"] or 0) > 20 and t
            ),
            timeout=30,
            what="the container's CPU use in the task's view",
        )
        (container,) = docker.containers.list(filters={"label": f"cloudai.task={task_id}"})
        engine = container.stats(stream=False)
        assert engine["memory_stats"]["usage"] > 0
        assert 20 < shown["usage"]["cpu_percent"] <= 100 * 1.5  # limited to one core (+noise)
        c.cli("cancel", task_id, "--force")
        c.wait_status(task_id, "cancelled")
    finally:
        c.close()
