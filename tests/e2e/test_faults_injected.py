"""Faults injected at an exact step, as real processes on a real Docker engine: the master
killed between two steps of a cancel (fail-points, src/cloudai/failpoints.py), a result report
lost between the worker and the master (a TCP proxy), an engine call that never returns (a
proxy on the engine's socket). docs/reliability.md lists what cloudai promises for each."""

from __future__ import annotations

import pathlib
import signal
from typing import Any

import pytest

from cloudai.failpoints import ENV as FAILPOINTS_ENV
from tests.cluster import ProcCluster
from tests.e2e import test_faults
from tests.e2e.test_faults import (
    SLEEPER,
    holds_invariants,
    kinds,
    restart_master,
    run,
)
from tests.helpers import eventually

worker_id = test_faults.worker_id  # the fixture: a unique worker ID, its containers removed after


def containers_of(docker: Any, task_id: str) -> list[Any]:
    return list(docker.containers.list(all=True, filters={"label": f"cloudai.task={task_id}"}))


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
    with ProcCluster(tmp_path, master_args=("--worker-lost-after", "60")) as c:
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
