"""Real processes, real Docker: the CLI as a user types it."""

from __future__ import annotations

import json
import signal
from typing import Any

from tests.cluster import ProcCluster
from tests.helpers import TEST_IMAGE, eventually


def _containers(docker: Any, task_id: str) -> list[Any]:
    return docker.containers.list(
        all=True, ignore_removed=True, filters={"label": f"cloudai.task={task_id}"}
    )


def test_task_prints_and_completes(docker_cluster: ProcCluster, docker: Any) -> None:
    out = docker_cluster.cli_json(
        "task",
        "run",
        TEST_IMAGE,
        "sh",
        "-c",
        "echo hello cloudai; echo to-stderr >&2",
        "--cpu",
        "0.5",
        "--mem",
        "0.1",
        "--name",
        "hello",
    )
    task_id = out["task_id"]
    assert task_id.startswith("task-")
    done = docker_cluster.wait_status(task_id, "completed")
    assert done["exit_code"] == 0 and done["worker_id"] in ("w1", "w2")
    assert done["created_at"] and done["started_at"] and done["completed_at"]
    logs = docker_cluster.cli("logs", task_id)
    assert logs.returncode == 0 and "hello cloudai" in logs.stdout and "to-stderr" in logs.stdout
    shown = docker_cluster.cli("task", "show", task_id)
    assert shown.returncode == 0 and "completed" in shown.stdout and "hello cloudai" in shown.stdout
    assert "hello cloudai" in done["result"]["logs"] and done["result"]["exit_code"] == 0
    eventually(lambda: not _containers(docker, task_id), what="the container to be removed")


def test_exit_code_3_fails(docker_cluster: ProcCluster) -> None:
    task_id = docker_cluster.cli_json(
        "task", "run", TEST_IMAGE, "sh", "-c", "exit 3", "--mem", "0.1"
    )["task_id"]
    done = docker_cluster.wait_status(task_id, "failed")
    assert done["exit_code"] == 3


def test_image_default_command_runs(docker_cluster: ProcCluster) -> None:
    task_id = docker_cluster.cli_json("task", "run", TEST_IMAGE, "--worker", "w2")["task_id"]
    done = docker_cluster.wait_status(task_id, "completed")
    assert done["worker_id"] == "w2"
    assert "hello from cloudai" in docker_cluster.cli("logs", task_id).stdout


def test_env_and_limits_reach_the_container(docker_cluster: ProcCluster, docker: Any) -> None:
    task_id = docker_cluster.cli_json(
        "task",
        "run",
        TEST_IMAGE,
        "sh",
        "-c",
        'echo "v=$GREETING"; cat /proc/self/cgroup; while [ ! -e /tmp/never ]; do sleep 0.1; done',
        "--env",
        "GREETING=hi there",
        "--cpu",
        "0.5",
        "--mem",
        "0.25",
    )["task_id"]
    docker_cluster.wait_status(task_id, "running")
    container = eventually(lambda: _containers(docker, task_id), what="the container")[0]
    container.reload()
    host = container.attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == int(0.25 * 1024**3)
    assert container.labels["cloudai.worker"] in ("w1", "w2")
    eventually(lambda: "v=hi there" in docker_cluster.cli("logs", task_id).stdout, what="env")
    assert docker_cluster.cli("cancel", task_id).returncode == 0
    docker_cluster.wait_status(task_id, "cancelled")
    eventually(lambda: not _containers(docker, task_id), timeout=30, what="container removal")


def test_over_memory_limit_is_oom_killed(docker_cluster: ProcCluster) -> None:
    # tail keeps the current (endless) line in memory: far past a 32 MB limit.
    task_id = docker_cluster.cli_json(
        "task",
        "run",
        TEST_IMAGE,
        "sh",
        "-c",
        "head -c 500000000 /dev/zero | tail -c 400000000",
        "--mem",
        "0.03",
    )["task_id"]
    done = docker_cluster.wait_status(task_id, "failed")
    assert done["oom_killed"] is True
    assert "OOM" in done["reason"]
    assert done["exit_code"] == 137


def test_failed_pull_fails_the_task_with_the_pull_error(docker_cluster: ProcCluster) -> None:
    task_id = docker_cluster.cli_json(
        "task", "run", "registry.invalid/nothing/here:1", "--mem", "0.1"
    )["task_id"]
    done = docker_cluster.wait_status(task_id, "failed", timeout=90)
    assert "image pull failed" in done["reason"]
    assert done["exit_code"] is None


def test_master_killed_and_restarted_while_a_task_runs(
    docker_cluster: ProcCluster, docker: Any
) -> None:
    task_id = docker_cluster.cli_json(
        "task",
        "run",
        TEST_IMAGE,
        "sh",
        "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; echo finished",
        "--mem",
        "0.1",
    )["task_id"]
    docker_cluster.wait_status(task_id, "running")
    container = eventually(lambda: _containers(docker, task_id), what="the container")[0]
    docker_cluster.kill_master(signal.SIGKILL)
    container.exec_run(["touch", "/tmp/go"])  # the task ends while no master is there
    eventually(lambda: container.reload() or container.status == "exited", what="task exit")
    docker_cluster.start_master()
    done = docker_cluster.wait_status(task_id, "completed")
    assert "finished" in docker_cluster.cli("logs", task_id).stdout
    assert done["exit_code"] == 0
    eventually(lambda: not _containers(docker, task_id), what="the container to be removed")
    events = [e["kind"] for e in done["events"]]
    assert events.count("completed") == 1 and "late_report" not in events


def test_workers_json_shows_capacity_allocated_available(docker_cluster: ProcCluster) -> None:
    workers = {w["worker_id"]: w for w in docker_cluster.cli_json("workers")}
    assert set(workers) == {"w1", "w2"}
    for w in workers.values():
        assert w["state"] == "healthy"
        assert w["capacity"]["cpu"] == 2 and w["capacity"]["mem_gb"] == 2
        assert w["allocated"]["cpu"] == 0 and w["available"]["cpu"] == 2
        assert w["runtime"] == "docker"


def test_cli_bad_input_one_line_and_exit_code(docker_cluster: ProcCluster) -> None:
    cases = [
        (["task", "run", "Bad Image!"], "invalid image reference"),
        (["task", "run", TEST_IMAGE, "--cpu", "-1"], "--cpu must be at least 0"),
        (["task", "run", TEST_IMAGE, "--mem", "lots"], "--mem must be a number"),
        (["task", "run", TEST_IMAGE, "--worker", "nobody"], "unknown worker"),
        (["task", "run", TEST_IMAGE, "--cpu", "100"], "more than any worker"),
        (["task", "show", "task-0-missing"], "not found"),
        (["logs", "task-0-missing"], "not found"),
        (["cancel", "task-0-missing"], "not found"),
        (["register", "w9", "nowhere"], "expected HOST:PORT"),
        (["task", "run", TEST_IMAGE, "--env", "NOEQUALS"], "expected KEY=VALUE"),
    ]
    before = docker_cluster.cli_json("task", "ls")
    for args, message in cases:
        res = docker_cluster.cli(*args)
        assert res.returncode != 0, args
        assert message in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) <= 2, (args, res.stderr)  # argparse: usage + error; ours: one line
    assert docker_cluster.cli_json("task", "ls") == before  # nothing half-stored
    down = docker_cluster.cli("--master", "127.0.0.1:1", "workers")
    assert down.returncode == 7 and "cannot reach master" in down.stderr


def test_json_error_and_task_ls_filters(docker_cluster: ProcCluster) -> None:
    res = docker_cluster.cli("task", "show", "task-0-missing", "-o", "json")
    assert res.returncode == 3 and json.loads(res.stderr)["error"]
    t = docker_cluster.cli_json("task", "run", TEST_IMAGE, "true", "--worker", "w1")["task_id"]
    docker_cluster.wait_status(t, "completed")
    on_w1 = docker_cluster.cli_json("task", "ls", "--worker", "w1", "--status", "completed")
    assert [x["task_id"] for x in on_w1] == [t]
    assert docker_cluster.cli_json("task", "ls", "--worker", "w2") == []
