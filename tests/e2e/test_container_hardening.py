"""Containers hardened by default, seen from inside a task: real Docker, real `cloudai`
processes, the CLI as a user types it. docs/containers.md describes what is checked here.

One cluster serves the module: a master and three workers, each a different admin's choice:
  default  no options
  relaxed  --allow-cap NET_RAW --max-pids-limit 128 --allowed-registries docker.io
  locked   --allowed-registries registry.local:5000,ghcr.io
Tasks are pinned to a worker, so the tests do not meet each other."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from docker.errors import APIError as DockerAPIError

from cloudai.core.hardening import DEFAULT_CAPS, cap_mask
from tests.cluster import ProcCluster
from tests.helpers import TEST_IMAGE, docker_client, eventually


@dataclass(frozen=True)
class Hardened:
    cluster: ProcCluster
    docker: Any
    default: str
    relaxed: str
    locked: str


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hardened]:
    docker = docker_client()  # skips locally / fails under CI when no engine answers
    suffix = secrets.token_hex(3)  # unique IDs: a parallel run's workers leave these alone
    h = Hardened(
        ProcCluster(tmp_path_factory.mktemp("hardening")),
        docker,
        f"hd-{suffix}",
        f"hr-{suffix}",
        f"hl-{suffix}",
    )
    c = h.cluster
    try:
        c.add_worker(h.default)
        relaxed = ("--allow-cap", "NET_RAW", "--max-pids-limit", "128")
        c.add_worker(h.relaxed, extra=(*relaxed, "--allowed-registries", "docker.io"))
        c.add_worker(h.locked, extra=("--allowed-registries", "registry.local:5000,ghcr.io"))
        yield h
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()
        for worker_id in (h.default, h.relaxed, h.locked):
            for found in docker.api.containers(
                all=True, filters={"label": f"cloudai.worker={worker_id}"}
            ):
                with contextlib.suppress(DockerAPIError):  # gone or going already
                    docker.api.remove_container(found["Id"], force=True)


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest, hardened: Hardened) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(hardened.cluster.logs())


def _run(h: Hardened, worker: str, *command: str, flags: tuple[str, ...] = ()) -> str:
    out = h.cluster.cli_json(
        "task", "run", TEST_IMAGE, *command, "--worker", worker, "--cpu", "0.25", *flags
    )
    return str(out["task_id"])


def _status_lines(logs: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+):\s+(\S+)$", logs, re.MULTILINE))


def _logs_with(c: ProcCluster, task_id: str, marker: str) -> str:
    def probe() -> str | None:
        out = c.cli("logs", task_id).stdout
        return out if marker in out else None

    return eventually(probe, timeout=60, interval=0.2, what=f"{marker!r} in the logs of {task_id}")


def _container(h: Hardened, task_id: str) -> Any:
    found = eventually(
        lambda: h.docker.containers.list(
            all=True, ignore_removed=True, filters={"label": f"cloudai.task={task_id}"}
        ),
        timeout=30,
        what=f"the container of {task_id}",
    )
    return found[0]


def _remove(h: Hardened, task_id: str) -> None:
    """Cancel the task if it still runs, and wait until its container is gone."""
    h.cluster.cli("cancel", task_id, "--force")  # it may have ended already: that is fine
    eventually(
        lambda: (
            not h.docker.containers.list(
                all=True, ignore_removed=True, filters={"label": f"cloudai.task={task_id}"}
            )
        ),
        timeout=30,
        what=f"the container of {task_id} to be removed",
    )


_STATUS = "grep -E '^(CapPrm|CapEff|CapBnd|NoNewPrivs):' /proc/self/status"


def test_default_capabilities_and_no_new_privileges(hardened: Hardened) -> None:
    task_id = _run(hardened, hardened.default, "sh", "-c", _STATUS)
    done = hardened.cluster.wait_status(task_id, "completed")
    status = _status_lines(done["result"]["logs"])
    expected = f"{cap_mask(DEFAULT_CAPS):016x}"
    assert status["CapEff"] == expected, status
    assert status["CapPrm"] == status["CapBnd"] == expected, status
    assert status["NoNewPrivs"] == "1", status


def test_allow_cap_adds_a_capability_for_every_task_of_that_worker(hardened: Hardened) -> None:
    task_id = _run(hardened, hardened.relaxed, "sh", "-c", _STATUS)
    done = hardened.cluster.wait_status(task_id, "completed")  # docker.io is allowed there
    status = _status_lines(done["result"]["logs"])
    assert status["CapEff"] == f"{cap_mask((*DEFAULT_CAPS, 'NET_RAW')):016x}", status
    assert status["NoNewPrivs"] == "1", status


def test_own_namespaces_no_host_mounts_and_bounded_limits(hardened: Hardened) -> None:
    """A task with a 0 memory request: its own network, PID and IPC namespaces, only its own
    processes in /proc, no mounts from the host, and every limit set in the engine."""
    script = (
        "for ns in net pid ipc; do echo ns-$ns: $(readlink /proc/self/ns/$ns); done; "
        'echo "procs: $(ls /proc | grep -E "^[0-9]+$" | tr "\\n" " ")"; '
        'echo "pid1: $(tr "\\0" " " < /proc/1/cmdline)"; '
        "echo ready; exec sleep 300"
    )
    task_id = _run(hardened, hardened.default, "sh", "-c", script, flags=("--mem", "0"))
    c = hardened.cluster
    try:
        logs = _logs_with(c, task_id, "ready")
        worker_pid = c.workers[hardened.default].pid
        for ns in ("net", "pid", "ipc"):
            inside = re.search(rf"^ns-{ns}: (\S+)$", logs, re.MULTILINE)
            assert inside is not None, logs
            assert inside.group(1) != os.readlink(f"/proc/{worker_pid}/ns/{ns}"), ns
        procs = re.search(r"^procs: (.*)$", logs, re.MULTILINE)
        assert procs is not None, logs
        pids = [int(p) for p in procs.group(1).split()]
        assert 1 in pids and len(pids) <= 6, pids  # sh and its pipeline, nothing of the host
        assert re.search(r"^pid1: sh -c for ns in net pid ipc", logs, re.MULTILINE), logs

        container = _container(hardened, task_id)
        host = container.attrs["HostConfig"]
        assert host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"]
        assert sorted(host["CapAdd"]) == sorted(DEFAULT_CAPS)
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["PidsLimit"] == 1024
        assert host["NanoCpus"] == 250_000_000
        assert host["Memory"] == host["MemorySwap"] == 64 * 1024**2  # the floor of a 0 request
        assert host["NetworkMode"] in ("default", "bridge")
        assert host["PidMode"] == "" and host["IpcMode"] == "private"
        assert not host["Binds"] and not host["Devices"] and not host["DeviceRequests"]
        assert container.attrs["Mounts"] == []
    finally:
        _remove(hardened, task_id)


# The bomb: an inner shell forks sleeps until the kernel refuses (then it exits); PID 1 starts
# another every second without forking in between (read -t on a FIFO), so the container stays
# at its limit and says so, until it is cancelled.
_FORK_BOMB = (
    "mkfifo /tmp/tick; exec 3<>/tmp/tick; "
    'while :; do sh -c "while :; do sleep 300 & done"; echo "bomb ended: $?"; '
    "read -t 1 x <&3; done"
)


def test_fork_bomb_hits_its_pids_limit_and_the_worker_stays_healthy(
    hardened: Hardened,
) -> None:
    c, worker = hardened.cluster, hardened.default
    bomb = _run(hardened, worker, "sh", "-c", _FORK_BOMB, flags=("--pids-limit", "64"))
    try:
        _logs_with(c, bomb, "can't fork")
        container = _container(hardened, bomb)
        assert container.attrs["HostConfig"]["PidsLimit"] == 64
        pids = eventually(
            lambda: (p := container.stats(stream=False)["pids_stats"])["current"] >= 63 and p,
            timeout=30,
            what="the container to be at its PIDs limit",
        )
        assert pids["limit"] == 64 and pids["current"] <= 64, pids
        assert c.cli_json("task", "show", bomb)["status"] == "running"

        (state,) = [w for w in c.cli_json("workers") if w["worker_id"] == worker]
        assert state["state"] == "healthy" and bomb in state["running_tasks"], state
        other = _run(hardened, worker, "sh", "-c", "echo still-running-tasks")
        done = c.wait_status(other, "completed")
        assert done["worker_id"] == worker and "still-running-tasks" in done["result"]["logs"]
        assert c.cli("cancel", bomb, "--force").returncode == 0
        c.wait_status(bomb, "cancelled")
    finally:
        _remove(hardened, bomb)


def test_an_image_outside_the_allowed_registries_is_refused(hardened: Hardened) -> None:
    c = hardened.cluster
    task_id = _run(hardened, hardened.locked, "sh", "-c", "echo must-not-run")
    done = c.wait_status(task_id, "failed")
    reason = (
        f"image {TEST_IMAGE} is from registry docker.io, which this worker does not allow "
        "(allowed: registry.local:5000, ghcr.io)"
    )
    assert done["reason"] == reason
    assert done["worker_id"] == hardened.locked and done["exit_code"] is None
    assert any(e["kind"] == "failed" and reason in e["message"] for e in done["events"])
    shown = c.cli("task", "show", task_id)
    assert shown.returncode == 0 and "does not allow" in shown.stdout
    assert not hardened.docker.containers.list(
        all=True, ignore_removed=True, filters={"label": f"cloudai.task={task_id}"}
    )


def test_a_pids_limit_above_the_worker_maximum_is_refused(hardened: Hardened) -> None:
    c = hardened.cluster
    task_id = _run(hardened, hardened.relaxed, "true", flags=("--pids-limit", "129"))
    done = c.wait_status(task_id, "failed")
    assert (
        done["reason"] == "pids limit 129 is above this worker's maximum of 128 (--max-pids-limit)"
    )
    assert done["pids_limit"] == 129 and done["exit_code"] is None
    refused = c.cli("task", "run", TEST_IMAGE, "--worker", hardened.relaxed, "--pids-limit", "0")
    assert refused.returncode == 2 and "--pids-limit must be at least 1" in refused.stderr
