"""A cancelled task holds its worker's resources until its container is gone, not until the
request (core/stop.py): a second task waits for them, and `workers` shows them releasing."""

from __future__ import annotations

import pathlib
from typing import Any

from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.core.stop import StopStage
from tests.cluster import HEARTBEAT, LocalCluster
from tests.helpers import eventually


def worker(c: LocalCluster) -> Any:
    return next(w for w in c.client.list_workers() if w.worker_id == "w1")


def test_a_second_task_waits_until_the_first_ones_container_is_gone(
    one_slot: LocalCluster, tmp_path: pathlib.Path
) -> None:
    c = one_slot
    gate = tmp_path / "let-it-exit"
    # It ignores the stop signal until the gate opens: a container in its grace period.
    slow = TaskSpec(
        image="busybox",
        command=(
            "sh",
            "-c",
            f"trap 'echo got TERM' TERM; echo ready; while [ ! -e {gate} ]; do sleep 0.05; done",
        ),
        resources=Resources(cpu=1, mem_gb=0.1),
        grace_seconds=600,
    )
    first = c.client.submit(slow)
    c.wait_status(first.task_id, "running")
    eventually(
        lambda: "ready" in b"".join(c.client.logs(first.task_id)).decode(),
        what="the first task to start",
    )
    c.client.cancel(first.task_id)
    eventually(
        lambda: (
            (t := c.client.get_task(first.task_id)).cancellation is not None
            and t.cancellation.stage is StopStage.SIGNALLED
        ),
        what="the first task's stop signal",
    )

    second = c.client.submit(TaskSpec(image="busybox", command=("true",), resources=slow.resources))
    beat = worker(c).last_heartbeat or 0.0
    # Several heartbeats and dispatch rounds later, the second is still waiting: its room is
    # held by a container that still runs.
    eventually(
        lambda: (worker(c).last_heartbeat or 0) > beat + 2 * HEARTBEAT,
        what="two more heartbeats",
    )
    assert c.client.get_task(second.task_id).status.value == "pending"
    w = worker(c)
    assert w.releasing_tasks == (first.task_id,) and w.releasing.cpu == 1
    assert w.allocated.cpu == 1 and w.available.cpu == 0
    assert c.client.get_task(first.task_id).status.value == "cancelled"  # desired: at once

    gate.touch()  # the container exits at last
    c.wait_status(second.task_id, "running", "completed")
    assert worker(c).releasing_tasks == ()
    done = c.client.get_task(first.task_id)
    assert done.cancellation is not None and done.cancellation.stage in (
        StopStage.EXITED,
        StopStage.REMOVED,
    )
