"""Time limits, retries and the queue as a user drives them: real master and worker processes,
the CLI and the master> shell as typed. The time limit runs on real Docker: the container is
stopped like a cancel stops it and is gone from the engine."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

from tests.cluster import ProcCluster
from tests.helpers import TEST_IMAGE, eventually

SMALL = ("--cpu", "0.1", "--mem", "0.05")


def _containers(docker: Any, task_id: str) -> list[dict[str, Any]]:
    return list(docker.api.containers(all=True, filters={"label": f"cloudai.task={task_id}"}))


def test_timeout_on_docker_ends_failed_deadline_exceeded_container_gone(
    docker: Any, isolated_docker_cluster: ProcCluster
) -> None:
    c = isolated_docker_cluster
    out = c.cli_json(
        "task", "run", TEST_IMAGE, "sleep", "60", "--timeout", "2s", "--grace", "1", *SMALL
    )
    task_id = out["task_id"]
    assert out["timeout_seconds"] == 2
    done = c.wait_status(task_id, "failed", timeout=90)
    assert done["reason"] == "deadline exceeded"
    assert any(
        e["kind"] == "cancel_requested" and "deadline exceeded" in e["message"]
        for e in done["events"]
    )
    eventually(
        lambda: not _containers(docker, task_id),
        timeout=30,
        what="its container to be gone from the engine",
    )
    shown = eventually(
        lambda: (t := c.cli_json("task", "show", task_id))["result"] and t,
        what="its result",
    )
    assert shown["status"] == "failed" and shown["result"]["status"] == "failed"
    assert shown["cancellation"]["requested_by"] == "master"
    # It ran, and was stopped the way a cancel stops it: signal, exit, removal.
    kinds = [e["kind"] for e in shown["events"]]
    assert "delivered" in kinds and "stopped" in kinds, kinds
    assert shown["cancellation"]["state"] == "removed"
    text = c.cli("task", "show", task_id).stdout
    assert "Time limit" in text and "2s" in text and "deadline exceeded" in text


def test_retries_and_the_queue_through_the_cli_and_the_shell(tmp_path: pathlib.Path) -> None:
    c = ProcCluster(tmp_path)
    try:
        c.add_worker("p1", runtime="process", cpu=1)
        # --retries 2 on exit 3: three runs, then failed, each run shown.
        out = c.cli_json("task", "run", "busybox", "sh", "-c", "exit 3", "--retries", "2", *SMALL)
        done = c.wait_status(out["task_id"], "failed", timeout=60)
        assert [(a["attempt"], a["worker_id"], a["exit_code"]) for a in done["attempts"]] == [
            (1, "p1", 3),
            (2, "p1", 3),
            (3, "p1", 3),
        ]
        # The last run, the task's own, is worded as the earlier ones.
        assert {a["reason"] for a in done["attempts"]} == {"non-zero exit"}
        text = c.cli("task", "show", out["task_id"]).stdout
        assert "Attempts" in text and "Retries" in text

        # One slot busy; the queue shows its order and why each waits, in text and JSON.
        gate = tmp_path / "gate"
        wait = f"while [ ! -e {gate} ]; do sleep 0.05; done"
        busy = c.cli_json("task", "run", "busybox", "sh", "-c", wait, "--cpu", "1")
        c.wait_status(busy["task_id"], "running")
        low = c.cli_json(
            "task", "run", "busybox", "sh", "-c", wait, "--cpu", "1", "--priority", "100"
        )
        line = f"task auto busybox sh -c '{wait}' -cpu_cores 1 -priority 900 -timeout 1h -retries 1"
        res = subprocess.run(
            [sys.executable, "-m", "cloudai.cli.main", "shell"],
            input=f"{line}\nexit\n",
            env=c.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        queue = c.cli_json("task", "ls", "--status", "pending")
        assert [t["priority"] for t in queue] == [900, 100]
        assert [t["position"] for t in queue] == [1, 2]
        assert all(t["waiting_reason"] == "no worker with 1 free CPU core" for t in queue)
        high = queue[0]
        assert high["timeout_seconds"] == 3600 and high["retries"] == 1
        table = c.cli("task", "ls", "--status", "pending").stdout
        assert "WAITING BECAUSE" in table and "no worker with 1 free CPU core" in table
        # A priority out of range: one line, a non-zero exit, no traceback.
        bad = c.cli("task", "run", "busybox", "--priority", "1001")
        assert bad.returncode != 0 and "--priority must be between 0 and 1000" in bad.stderr
        assert "Traceback" not in bad.stderr
        gate.touch()
        c.wait_status(high["task_id"], "running", "completed", timeout=60)
        c.wait_status(low["task_id"], "running", "completed", timeout=60)
        assert (
            json.loads(c.cli("task", "show", low["task_id"], "-o", "json").stdout)["priority"]
            == 100
        )
    finally:
        c.close()


def test_help_names_the_options(tmp_path: pathlib.Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "cloudai.cli.main", "task", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    for flag in ("--timeout", "--retries", "--retry-on", "--priority", "--preemptible"):
        assert flag in res.stdout
    res = subprocess.run(
        [sys.executable, "-m", "cloudai.cli.main", "master", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "--max-task-time" in res.stdout
