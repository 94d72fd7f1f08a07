"""Loose ends of "the stop as one state machine", through the CLI as a user types it (master
and a process-runtime worker as processes; no Docker needed)."""

from __future__ import annotations

import os
import pathlib
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from tests.cluster import ProcCluster
from tests.helpers import eventually

STUBBORN = "trap '' TERM; echo ready; while :; do sleep 0.05; done"
ON_INT = "trap 'echo got INT; exit 0' INT; echo ready; while :; do sleep 0.05; done"


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[ProcCluster]:
    with ProcCluster(tmp_path) as c:
        try:
            c.add_worker("w1", runtime="process")
            yield c
        finally:
            for p in c.workers.values():
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGCONT)


def run(c: ProcCluster, script: str, *options: str) -> dict[str, Any]:
    task: dict[str, Any] = c.cli_json(
        "task", "run", "busybox", "sh", "-c", script, "--cpu", "0.1", "--mem", "0.05", *options
    )
    eventually(lambda: "ready" in c.cli("logs", task["task_id"]).stdout, what="the task to run")
    return task


def one_line(res: Any) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return str(lines[0])


def test_grace_zero_and_stop_signals_by_any_name(cluster: ProcCluster) -> None:
    c = cluster
    task = run(c, STUBBORN, "--grace", "0", "--stop-signal", "term")
    assert (task["grace_seconds"], task["stop_signal"]) == (0, "SIGTERM")
    assert c.cli("cancel", task["task_id"]).returncode == 0
    done = eventually(
        lambda: (
            (t := c.cli_json("task", "show", task["task_id"]))["cancellation"]["exited_at"] and t
        ),
        what="the task with grace 0 to be killed",
    )
    stop = done["cancellation"]
    assert (stop["grace_seconds"], stop["stop_signal"], stop["forced"]) == (0, "SIGTERM", True)

    default = c.cli_json("task", "run", "busybox", "true", "--cpu", "0.1", "--mem", "0.05")
    assert (default["grace_seconds"], default["stop_signal"]) == (10, "SIGTERM")

    bad = c.cli("task", "run", "busybox", "true", "--stop-signal", "SIGFOO")
    assert bad.returncode == 2
    assert "unknown stop signal 'SIGFOO': use one of TERM (15), INT (2)" in one_line(bad)


def test_cancel_with_a_stop_signal_of_its_own(cluster: ProcCluster) -> None:
    c = cluster
    task = run(c, ON_INT)
    res = c.cli("cancel", task["task_id"], "--stop-signal", "int")
    assert res.returncode == 0, res.stderr
    done = eventually(
        lambda: (t := c.cli_json("task", "show", task["task_id"]))["result"] and t,
        what="the result after SIGINT",
    )
    assert done["cancellation"]["stop_signal"] == "SIGINT"
    assert done["cancellation"]["forced"] is False
    assert "got INT" in done["result"]["logs"]
    both = c.cli("cancel", task["task_id"], "--force", "--stop-signal", "INT")
    assert both.returncode == 2 and "do not go together" in one_line(both)


def test_worker_rm(cluster: ProcCluster) -> None:
    c = cluster
    assert c.cli("register", "w9", "127.0.0.1:1").returncode == 0
    assert "w9" in {w["worker_id"] for w in c.cli_json("workers")}
    res = c.cli("worker", "rm", "w9")
    assert res.returncode == 0, res.stderr
    assert "worker w9 removed" in res.stdout
    assert "w9" not in {w["worker_id"] for w in c.cli_json("workers")}
    assert c.cli("worker", "rm", "w9").returncode == 3

    task = run(c, STUBBORN)
    busy = c.cli("worker", "rm", "w1")
    assert busy.returncode == 5
    assert f"worker w1 has 1 active task(s) ({task['task_id']})" in one_line(busy)
    c.cli("cancel", task["task_id"], "--force")
    help_text = c.cli("worker", "--help").stdout
    assert "worker --id ID [options]" in help_text and "worker rm ID" in help_text


def test_logs_name_a_worker_that_does_not_answer(cluster: ProcCluster) -> None:
    c = cluster
    task = run(c, STUBBORN)
    pid = c.workers["w1"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # Within the worker probe's 5 s and the CLI's start, well before the old 30 s.
        res = c.cli("logs", task["task_id"], timeout=25)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert res.returncode == 7
    line = one_line(res)
    port = c.worker_ports["w1"]
    assert f"worker w1 at 127.0.0.1:{port} did not answer within 5s" in line
    assert "cannot reach master" not in line
    c.cli("cancel", task["task_id"], "--force")


def test_master_pointed_at_a_workers_port(cluster: ProcCluster, tmp_path: pathlib.Path) -> None:
    res = cluster.cli("--master", f"127.0.0.1:{cluster.worker_ports['w1']}", "workers")
    assert res.returncode == 7
    assert "is not the cloudai master: its certificate is another's (a worker's port?)" in (
        one_line(res)
    )
    (tmp_path / "insecure").mkdir()
    c = ProcCluster(tmp_path / "insecure", secure=False)
    try:
        c.add_worker("w1", runtime="process")
        res = c.cli("--master", f"127.0.0.1:{c.worker_ports['w1']}", "workers")
        assert res.returncode == 7
        assert "is not a cloudai master (a worker's port?)" in one_line(res)
        assert "Method not found" not in res.stderr
    finally:
        c.close()


def test_task_ls_pages_the_newest_and_says_how_many_more(tmp_path: pathlib.Path) -> None:
    c = ProcCluster(tmp_path)  # no worker: every task stays pending
    try:
        spec = TaskSpec("busybox", ("true",), resources=Resources(cpu=0.1, mem_gb=0.05))
        ids = [c.client.submit(spec).task_id for _ in range(103)]
        shown = c.cli("task", "ls")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.rstrip().splitlines()[-1] == (
            "… 3 more (older) task(s) match: --limit N or --all to see them"
        )
        assert ids[0] not in shown.stdout and ids[-1] in shown.stdout
        assert [t["task_id"] for t in c.cli_json("task", "ls")] == ids[3:]
        assert [t["task_id"] for t in c.cli_json("task", "ls", "--limit", "2")] == ids[-2:]
        assert [t["task_id"] for t in c.cli_json("task", "ls", "--all")] == ids
        assert "more" not in c.cli("task", "ls", "--all").stdout
        assert "the newest 100" in c.cli("task", "ls", "--help").stdout
    finally:
        c.close()
