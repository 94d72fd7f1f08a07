"""UpdateStops: the stages of a stop that queued while the worker's last call was out go in
one call, applied in order in one transaction, all or none (SQLite, then PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest

from cloudai.api.v1 import master_pb2
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskResult, TaskSpec
from cloudai.core.resources import Resources
from cloudai.rpc.convert import result_to_pb
from tests.cluster import LocalCluster
from tests.helpers import eventually
from tests.integration.test_cancel import LONG, confirmed, started
from tests.integration.test_security import stored_result


def spec(worker: str) -> TaskSpec:
    return TaskSpec(
        image="busybox", command=LONG, resources=Resources(cpu=0.5, mem_gb=0.1), worker_id=worker
    )


def test_a_stops_exit_and_removal_go_in_one_call(cluster: LocalCluster) -> None:
    """The real worker: its link sends the exit and the removal that queue together in one
    UpdateStops; the master applies both (result, `stopped`, `removed`, room freed)."""
    link = cluster.workers["w1"].link
    sent: list[tuple[str, list[str]]] = []
    call = link._call

    async def spy(method: str, request: Any) -> Any:  # the call still goes to the master
        stages = [u.stage for u in request.updates] if method == "UpdateStops" else []
        sent.append((method, stages or [getattr(request, "stage", "")]))
        return await call(method, request)

    link._call = spy  # type: ignore[method-assign]
    task = cluster.client.submit(spec("w1"))
    started(cluster, task.task_id)
    cluster.client.cancel(task.task_id)
    done = confirmed(cluster, task.task_id)
    assert done.cancellation.state == "removed" and done.result.status.value == "cancelled"
    kinds = [e.kind for e in done.events]
    assert kinds.index("stopped") < kinds.index("removed")
    stops = [s for m, s in sent if m in ("UpdateStop", "UpdateStops")]
    # Together, in order, in one call (signalled may join them when it queued behind delivered).
    assert any(s[i : i + 2] == ["exited", "removed"] for s in stops for i in range(len(s))), sent
    eventually(
        lambda: (
            next(w for w in cluster.client.list_workers() if w.worker_id == "w1").allocated.cpu == 0
        ),
        what="w1's room to be freed",
    )


def test_a_refused_update_refuses_its_whole_call(cluster: LocalCluster) -> None:
    """All or none: a report on w1's own running task, then an update on w2's task, in one
    call from w1: PERMISSION_DENIED, and the first did not happen either."""
    mine = cluster.client.submit(spec("w1"))
    theirs = cluster.client.submit(spec("w2"))
    started(cluster, mine.task_id)
    started(cluster, theirs.task_id)
    forged = TaskResult(mine.task_id, "w1", TaskStatus.FAILED, "forged\n", 1, time.time())
    exited = master_pb2.StopUpdate(
        task_id=mine.task_id, worker_id="w1", stage="exited", at=time.time()
    )
    exited.result.CopyFrom(result_to_pb(forged))
    removed = master_pb2.StopUpdate(
        task_id=theirs.task_id, worker_id="w1", stage="removed", at=time.time()
    )
    raw = cluster.raw_master()
    with pytest.raises(grpc.RpcError) as refused:
        raw.UpdateStops(master_pb2.StopUpdates(worker_id="w1", updates=[exited, removed]))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert stored_result(cluster, mine.task_id) is None
    assert cluster.client.get_task(mine.task_id).status.value == "running"


@pytest.mark.parametrize("count", [0, 17])
def test_an_empty_or_oversized_call_is_refused(cluster: LocalCluster, count: int) -> None:
    update = master_pb2.StopUpdate(task_id="t-none", worker_id="w1", stage="removed", at=1.0)
    raw = cluster.raw_master()
    with pytest.raises(grpc.RpcError) as refused:
        raw.UpdateStops(master_pb2.StopUpdates(worker_id="w1", updates=[update] * count))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "1 to 16 stop updates" in (refused.value.details() or "")
