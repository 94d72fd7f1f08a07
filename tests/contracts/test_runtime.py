"""One contract, every runtime: Docker (real engine) and process run the same suite."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.errors import RuntimeFailure
from cloudai.runtime import Runtime, open_runtime
from tests.helpers import TEST_IMAGE, aeventually, docker_client


@pytest.fixture(params=["process", "docker"])
async def runtime(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Runtime]:
    if request.param == "docker":
        docker_client()  # skips locally / fails under CI when no engine answers
    worker_id = f"contract-{time.monotonic_ns()}"
    rt = open_runtime(request.param, worker_id, str(tmp_path))
    yield rt
    for handle in await rt.list():
        await rt.destroy(handle)
    await rt.close()


def spec(*command: str, mem: float = 0.1, stop_signal: str = "") -> TaskSpec:
    return TaskSpec(
        image=TEST_IMAGE,
        command=command,
        resources=Resources(cpu=0.5, mem_gb=mem),
        stop_signal=stop_signal,
    )


async def start(rt: Runtime, task_id: str, s: TaskSpec) -> Any:
    await rt.prepare(task_id, s)
    return await rt.start(task_id, s)


async def test_exit_code_and_logs(runtime: Runtime) -> None:
    h = await start(runtime, "t-exit", spec("sh", "-c", "echo out; echo err >&2; exit 3"))
    result = await asyncio.wait_for(runtime.wait(h), 30)
    assert result.exit_code == 3 and not result.oom_killed
    logs = await runtime.read_logs(h)
    assert "out" in logs and "err" in logs


async def test_follow_logs_streams_until_the_end(runtime: Runtime) -> None:
    h = await start(
        runtime, "t-follow", spec("sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done")
    )
    chunks = [c async for c in runtime.follow_logs(h, follow=True)]
    text = b"".join(chunks).decode()
    assert all(f"line{i}" in text for i in (1, 2, 3))
    assert (await runtime.wait(h)).exit_code == 0


async def test_stop_graceful_within_grace(runtime: Runtime) -> None:
    script = "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.05; done"
    h = await start(runtime, "t-grace", spec("sh", "-c", script))
    await _ready(runtime, h)
    how = await runtime.stop(h, "SIGTERM", 5.0)
    assert how == "exited"
    assert (await runtime.wait(h)).exit_code == 0
    assert "got-term" in await runtime.read_logs(h)


async def test_stop_kills_after_grace(runtime: Runtime) -> None:
    script = "trap '' TERM; echo ready; while true; do sleep 0.05; done"
    h = await start(runtime, "t-kill", spec("sh", "-c", script))
    await _ready(runtime, h)
    t0 = time.monotonic()
    how = await runtime.stop(h, "SIGTERM", 1.0)
    took = time.monotonic() - t0
    assert how == "killed" and took >= 1.0
    assert (await asyncio.wait_for(runtime.wait(h), 15)).exit_code == 137


async def test_list_finds_tasks_and_destroy_removes_them(runtime: Runtime, tmp_path: Any) -> None:
    h = await start(runtime, "t-list", spec("sh", "-c", "while true; do sleep 0.05; done"))
    assert "t-list" in [x.task_id for x in await runtime.list()]
    await runtime.destroy(h)
    await runtime.destroy(h)  # idempotent
    assert "t-list" not in [x.task_id for x in await runtime.list()]


async def test_a_new_runtime_instance_adopts_and_waits(runtime: Runtime, tmp_path: Any) -> None:
    h = await start(runtime, "t-adopt", spec("sh", "-c", "sleep 0.5; echo adopted; exit 4"))
    name = runtime.name
    worker_id = runtime.worker_id  # type: ignore[attr-defined]
    again = open_runtime(name, worker_id, str(tmp_path))
    try:
        found = [x for x in await again.list() if x.task_id == "t-adopt"]
        assert found and found[0].ref == h.ref
        result = await asyncio.wait_for(again.wait(found[0]), 30)
        assert result.exit_code == 4
        assert "adopted" in await again.read_logs(found[0])
    finally:
        await again.close()


async def test_unstartable_task_is_a_runtime_failure(runtime: Runtime) -> None:
    bad = (
        TaskSpec(image=TEST_IMAGE, command=("/no/such/binary",))
        if runtime.name == "process"
        else TaskSpec(image="registry.invalid/none/such:1", command=("true",))
    )
    with pytest.raises(RuntimeFailure):
        await start(runtime, "t-bad", bad)


async def _ready(rt: Runtime, h: Any) -> None:
    """Wait until the task printed "ready" (its signal traps are installed)."""

    async def said_ready() -> bool:
        return "ready" in await rt.read_logs(h)

    await aeventually(said_ready, what="the task to print ready")


async def test_docker_leaves_another_clusters_containers_alone(tmp_path: pathlib.Path) -> None:
    """Two clusters on one engine, with the same worker ID: each lists (and so re-adopts) only
    its own containers; one from before cluster labels counts as anyone's."""
    docker_client()  # skips locally / fails under CI when no engine answers
    worker_id = f"clusters-{time.monotonic_ns()}"
    ours, theirs, unlabelled = (open_runtime("docker", worker_id, str(tmp_path)) for _ in "abc")
    ours.cluster, theirs.cluster = (lambda: "cluster-a"), (lambda: "cluster-b")
    try:
        await start(ours, "t-a", spec("sleep", "30"))
        await start(theirs, "t-b", spec("sleep", "30"))
        assert [h.task_id for h in await ours.list()] == ["t-a"]
        assert [h.task_id for h in await theirs.list()] == ["t-b"]
        assert sorted(h.task_id for h in await unlabelled.list()) == ["t-a", "t-b"]
    finally:
        for h in await unlabelled.list():
            await unlabelled.destroy(h)
        for rt in (ours, theirs, unlabelled):
            await rt.close()


async def test_read_logs_keeps_the_tail_and_says_what_it_dropped(runtime: Runtime) -> None:
    """3 MiB of output read with a 64 KiB limit: the last 64 KiB at most, the end of the
    output intact, and a first line saying how many bytes were dropped."""
    script = "i=0; while [ $i -lt 3072 ]; do printf '%1023d\\n' $i; i=$((i+1)); done; echo THE-END"
    h = await start(runtime, "t-big", spec("sh", "-c", script))
    assert (await asyncio.wait_for(runtime.wait(h), 60)).exit_code == 0
    tail = await runtime.read_logs(h, limit=64 * 1024)
    assert len(tail.encode()) <= 64 * 1024
    first, _, rest = tail.partition("\n")
    assert first.startswith("[cloudai: ") and "bytes of earlier output dropped" in first, first
    assert rest.rstrip().endswith("THE-END")


async def test_wait_and_read_gives_the_exit_and_the_last_lines(runtime: Runtime) -> None:
    h = await start(runtime, "t-ended", spec("sh", "-c", "echo first; echo last; exit 4"))
    exit_, logs = await asyncio.wait_for(runtime.wait_and_read(h), 30)
    assert exit_.exit_code == 4 and not exit_.oom_killed
    assert logs.index("first") < logs.index("last")


async def test_docker_looks_an_image_up_again_once_it_is_gone(tmp_path: pathlib.Path) -> None:
    """`prepare` skips the lookup of an image it saw; one removed from the engine since (here a
    private tag of the test image, untagged) is looked up again by `start`: pulled, or, as
    here where no registry has it, a clear failure, never a stale "present"."""
    client = docker_client()
    tag = f"cloudai-contract/gone-{time.monotonic_ns()}:latest"
    client.images.get(TEST_IMAGE).tag(tag)
    rt = open_runtime("docker", f"contract-{time.monotonic_ns()}", str(tmp_path))
    try:
        s = TaskSpec(image=tag, command=("true",), resources=Resources(cpu=0.5, mem_gb=0.1))
        first = await start(rt, "t-img-1", s)
        assert (await asyncio.wait_for(rt.wait(first), 30)).exit_code == 0
        client.images.remove(tag)  # only the tag: the test image stays
        await rt.prepare("t-img-2", s)  # seen before: no lookup, no failure
        with pytest.raises(RuntimeFailure, match=f"image pull failed for {tag}"):
            await rt.start("t-img-2", s)
    finally:
        for handle in await rt.list():
            await rt.destroy(handle)
        await rt.close()
        if client.images.list(name=tag.split(":")[0]):
            client.images.remove(tag)
