"""The master> shell and `cloudai up`, driven as a user would (stdin piped)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from typing import Any

import requests

from cloudai.cli.secure import pki_of
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
    port, wport, hport = free_port(), free_port(), free_port()
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
            "--http-listen",
            f"127.0.0.1:{hport}",
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
        home = tmp_path / "home"
        console = requests.get(  # the web console's API, HTTPS with the cluster's certificate
            f"https://127.0.0.1:{hport}/api/v1/workers",
            headers={"Authorization": f"Bearer {(home / 'token').read_text().strip()}"},
            verify=str(pki_of(home).ca_cert),
            timeout=30,
        )
        assert [w["worker_id"] for w in console.json()["workers"]] == ["worker-1"]
        proc.stdin.write("exit\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "cloudai is up" in out and "runtime: docker" in out
    assert f"Web console: https://127.0.0.1:{hport}/" in out
    assert (tmp_path / "home" / "cloudai.db").exists()


def test_shell_quotes_as_a_posix_shell_and_refuses_misspelt_options(tmp_path: Any) -> None:
    c = ProcCluster(tmp_path)
    try:
        c.add_worker("worker-1", runtime="process")
        script = (
            'task worker-1 busybox sh -c "echo hi; echo there" -cpu_cores 0.5 -mem 0.1\n'
            "task worker-1 busybox true -gpu_cores 1\n"
            "exit\n"
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
        task_id = re.search(r"Task (task-\S+) submitted", res.stdout).group(1)  # type: ignore[union-attr]
        assert res.stdout.count("submitted") == 1  # the misspelt one was not run
        assert "unknown option -gpu_cores (did you mean -cpu_cores" in res.stderr
        done = c.wait_status(task_id, "completed")
        assert done["command"] == ["sh", "-c", "echo hi; echo there"]
        assert c.cli("logs", task_id).stdout.split() == ["hi", "there"]
        assert "sh -c 'echo hi; echo there'" in c.cli("task", "show", task_id).stdout
    finally:
        c.close()


def _read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {marker!r} from the shell; it printed: {bytes(seen)!r}")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError as exc:  # the shell closed the terminal: it exited
                raise AssertionError(f"the shell exited; it printed: {bytes(seen)!r}") from exc
            seen.extend(chunk)


def _exited(pid: int) -> tuple[int] | None:
    done, status = os.waitpid(pid, os.WNOHANG)
    return (status,) if done else None


def test_ctrl_c_at_the_prompt_clears_the_line_and_ctrl_d_leaves(tmp_path: Any) -> None:
    """At a terminal: Ctrl-C drops what was typed and prompts again, as in any shell; only
    Ctrl-D (or exit) leaves."""
    c = ProcCluster(tmp_path)
    try:
        env = {**c.env, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
        pid = 0
        pid, fd = pty.fork()
        if pid == 0:  # the child: the shell on a pseudo-terminal
            os.execve(sys.executable, [sys.executable, "-m", "cloudai.cli.main", "shell"], env)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        seen = bytearray()
        _read_until(fd, b"master>", seen)
        os.write(fd, b"frobnicate-half-typed")
        _read_until(fd, b"half-typed", seen)
        os.write(fd, b"\x03")  # Ctrl-C: the line is dropped, the shell stays
        del seen[:]
        _read_until(fd, b"master>", seen)
        os.write(fd, b"workers\r")
        _read_until(fd, b"No workers registered.", seen)
        assert b"invalid choice" not in seen  # the dropped line never ran
        del seen[: seen.index(b"No workers registered.")]
        _read_until(fd, b"master>", seen)  # prompting again (a Ctrl-D before is lost)
        os.write(fd, b"\x04")  # Ctrl-D: leave
        (status,) = eventually(lambda: _exited(pid), timeout=20, what="the shell to leave")
        assert os.waitstatus_to_exitcode(status) == 0
        pid = 0
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        c.close()
