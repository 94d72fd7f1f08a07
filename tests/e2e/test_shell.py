"""The master> shell and `cloudai up`, driven as a user would (stdin piped)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

from tests.cluster import ProcCluster, free_port
from tests.helpers import TEST_IMAGE, eventually


def test_shell_spec_forms(tmp_path: Any) -> None:
    c = ProcCluster(tmp_path)
    try:
        c.add_worker("worker-1", runtime="process")
        script = (
            "\n".join(
                [
                    "help",
                    "workers",
                    "task worker-1 busybox echo spec-form -cpu_cores 0.5 -mem 0.1",
                    "task worker-1 busybox true -mem lots",
                    "task nobody busybox true",
                    "frobnicate",
                    "exit",
                ]
            )
            + "\n"
        )
        res = subprocess.run(
            [sys.executable, "-m", "cloudai.cli.main", "shell"],
            input=script,
            env=c.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert "cancel <task_id>" in res.stdout  # help
        assert "worker-1" in res.stdout  # workers
        task_id = re.search(r"Task (task-\S+) submitted", res.stdout).group(1)  # type: ignore[union-attr]
        assert "-mem must be a number" in res.stderr
        assert "unknown worker 'nobody'" in res.stderr
        assert "invalid choice: 'frobnicate'" in res.stderr
        assert "Traceback" not in res.stderr
        done = c.wait_status(task_id, "completed")
        assert done["worker_id"] == "worker-1"
        assert "spec-form" in c.cli("logs", task_id).stdout
    finally:
        c.close()


def test_up_starts_a_local_cluster_and_its_shell(tmp_path: Any, docker: Any) -> None:
    env = {**os.environ, "CLOUDAI_HOME": str(tmp_path / "home")}
    port, wport = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudai.cli.main",
            "up",
            "--listen",
            f"127.0.0.1:{port}",
            "--worker-listen",
            f"127.0.0.1:{wport}",
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(f"task worker-1 {TEST_IMAGE} echo via-up -cpu_cores 0.5 -mem 0.1\n")
        proc.stdin.flush()
        env["CLOUDAI_MASTER"] = f"127.0.0.1:{port}"

        def task_done() -> Any:
            res = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cloudai.cli.main",
                    "task",
                    "ls",
                    "--status",
                    "completed",
                    "-o",
                    "json",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            return res.returncode == 0 and "worker-1" in res.stdout and res.stdout

        eventually(task_done, timeout=60, interval=0.3, what="the task run from up's shell")
        proc.stdin.write("exit\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "cloudai is up" in out and "runtime: docker" in out
    assert (tmp_path / "home" / "cloudai.db").exists()
