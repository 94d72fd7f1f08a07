"""The Docker runtime, through the Docker SDK. Blocking SDK calls run on a private thread pool
(waits and log streams block for a task's whole life, so the pool is sized for that).

Every container is hardened (`hardened_host_config`): never privileged, all capabilities
dropped but the worker's set, no-new-privileges, a PIDs limit, CPU and memory limits, and its
own network, PID and IPC namespaces, with no host mounts and no devices but its GPUs: the
device IDs its placement picked (`device_ids`, never a count, which would let the engine choose
devices another task holds), also named in NVIDIA_VISIBLE_DEVICES ("void" for a task without
GPUs, so an image that sets it to "all" gets none on an engine whose default runtime is
nvidia). The rules live in core/hardening.py; docs/containers.md explains them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest
from docker.utils import parse_repository_tag

from cloudai.core.hardening import ContainerPolicy, container_limits
from cloudai.core.limits import log_tail
from cloudai.core.models import TaskSpec
from cloudai.errors import RuntimeFailure, Unavailable
from cloudai.runtime.base import LOG_LIMIT, Exit, Handle, Runtime

__all__ = [
    "LABEL_CLUSTER",
    "LABEL_GPUS",
    "LABEL_TASK",
    "LABEL_WORKER",
    "DockerRuntime",
    "container_environment",
    "hardened_host_config",
]

log = logging.getLogger("cloudai.runtime.docker")
T = TypeVar("T")
LABEL_TASK = "cloudai.task"
LABEL_WORKER = "cloudai.worker"
LABEL_GPUS = "cloudai.gpus"  # the devices it was started with: "0,1"
LABEL_CLUSTER = "cloudai.cluster"  # the cluster of the worker that started it
_API_TIMEOUT = 30
_WAIT_SLICE = 30
_ENGINE_RETRY = 0.5  # between two tries of an engine that is away (restarting)
_ENGINE_PATIENCE = 60.0  # how long a log read or a removal waits for it


class _ImageGone(Exception):
    """The engine no longer has an image `prepare` saw: pull it again (inside `start`)."""


def _explain(exc: Exception) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc) or type(exc).__name__


def _check_gpus(spec: TaskSpec, gpu_ids: Sequence[str]) -> None:
    if len(gpu_ids) != spec.resources.gpu:
        raise RuntimeFailure(
            f"the task asks for {spec.resources.gpu} GPU(s) but was given "
            f"{len(gpu_ids)} ({','.join(gpu_ids) or 'none'}): GPUs go by device ID only"
        )


def hardened_host_config(
    spec: TaskSpec, policy: ContainerPolicy, gpu_ids: Sequence[str] = ()
) -> dict[str, Any]:
    """The HostConfig arguments of a task's container. Nothing else reaches the engine: no
    binds or volumes, no network, PID or IPC mode but the container's own, no devices but the
    GPUs `gpu_ids` (by ID: as many as the task asks for)."""
    _check_gpus(spec, gpu_ids)
    cpu, mem_bytes = container_limits(spec.resources)
    gpus = (
        [DeviceRequest(driver="nvidia", device_ids=list(gpu_ids), capabilities=[["gpu"]])]
        if gpu_ids
        else None
    )
    return {
        "privileged": False,
        "cap_drop": ["ALL"],
        "cap_add": list(policy.caps),
        "security_opt": ["no-new-privileges"],
        "pids_limit": policy.pids_limit(spec.pids_limit),
        "nano_cpus": int(cpu * 1e9),
        "mem_limit": mem_bytes,
        "memswap_limit": mem_bytes,  # no swap beyond the memory limit
        "ipc_mode": "private",  # not shareable, whatever the engine's default-ipc-mode
        "device_requests": gpus,
    }


def container_environment(spec: TaskSpec, gpu_ids: Sequence[str] = ()) -> dict[str, str]:
    """The task's environment, with its secrets and NVIDIA_VISIBLE_DEVICES (which the task
    cannot set: its devices, or "void")."""
    return {**spec.container_env, "NVIDIA_VISIBLE_DEVICES": ",".join(gpu_ids) or "void"}


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(self, worker_id: str, policy: ContainerPolicy | None = None) -> None:
        self.worker_id = worker_id
        self.policy = policy or ContainerPolicy()
        self._pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="docker")
        try:
            self.client = docker.from_env(timeout=_API_TIMEOUT)
        except docker.errors.DockerException as exc:
            raise Unavailable(f"no Docker engine: {exc}") from exc
        self.api = self.client.api
        self._present: set[str] = set()  # images the engine had (`prepare` skips their lookup)

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    async def _patiently(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn` through an engine that may be away a while (restarting): a transport error or
        a 5xx answer is tried again every _ENGINE_RETRY s, for up to _ENGINE_PATIENCE s, then
        Unavailable; NotFound and the other 4xx answers raise at once."""
        deadline = time.monotonic() + _ENGINE_PATIENCE
        while True:
            try:
                return await self._call(fn, *args, **kwargs)
            except (requests.exceptions.RequestException, docker.errors.APIError) as exc:
                if isinstance(exc, docker.errors.APIError) and not exc.is_server_error():
                    raise
                if time.monotonic() > deadline:
                    raise Unavailable(f"the Docker engine did not answer: {_explain(exc)}") from exc
                await asyncio.sleep(_ENGINE_RETRY)

    async def ping(self) -> None:
        try:
            await self._call(self.api.ping)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise Unavailable(f"Docker engine not answering: {exc}") from exc

    async def prepare(self, task_id: str, spec: TaskSpec) -> None:
        """Pull the image if the engine lacks it. An image seen here before is not looked up
        again (one engine call less on the way to a start); one removed from the engine
        meanwhile is pulled again by `start`."""
        if spec.image in self._present:
            return
        try:
            await self._call(self.api.inspect_image, spec.image)
            self._present.add(spec.image)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"cannot inspect image {spec.image}: {_explain(exc)}") from exc
        repo, tag = parse_repository_tag(spec.image)
        log.info("[Task %s] pulling %s", task_id, spec.image)
        try:
            await self._call(self.api.pull, repo, tag=tag or "latest")
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise RuntimeFailure(f"image pull failed for {spec.image}: {_explain(exc)}") from exc
        self._present.add(spec.image)

    async def start(self, task_id: str, spec: TaskSpec, gpu_ids: Sequence[str] = ()) -> Handle:
        try:
            return await self._call(self._start_sync, task_id, spec, tuple(gpu_ids))
        except _ImageGone:  # removed from the engine since `prepare` saw it
            self._present.discard(spec.image)
            await self.prepare(task_id, spec)
            return await self._call(self._start_sync, task_id, spec, tuple(gpu_ids))

    def _start_sync(self, task_id: str, spec: TaskSpec, gpu_ids: tuple[str, ...]) -> Handle:
        host_config = self.api.create_host_config(
            **hardened_host_config(spec, self.policy, gpu_ids)
        )
        name = f"cloudai-{task_id}"
        labels = {LABEL_TASK: task_id, LABEL_WORKER: self.worker_id}
        if cluster := self.cluster():
            labels[LABEL_CLUSTER] = cluster
        if gpu_ids:
            labels[LABEL_GPUS] = ",".join(gpu_ids)
        try:
            created = self.api.create_container(
                spec.image,
                command=list(spec.command) or None,
                environment=container_environment(spec, gpu_ids),
                labels=labels,
                name=name,
                host_config=host_config,
                stop_signal=spec.signal,
            )
            cid = created["Id"]
        except docker.errors.ImageNotFound as exc:
            raise _ImageGone(spec.image) from exc
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a container of this task exists already
                raise RuntimeFailure(f"cannot create container: {_explain(exc)}") from exc
            cid = self.api.inspect_container(name)["Id"]
        try:
            self.api.start(cid)
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"cannot start container: {_explain(exc)}") from exc
        return Handle(task_id=task_id, ref=cid, started_at=time.time(), gpu_ids=gpu_ids)

    async def wait(self, handle: Handle) -> Exit:
        out = await self._waited(handle)
        return out if isinstance(out, Exit) else await self._exit_of(handle, out)

    async def wait_and_read(self, handle: Handle, limit: int = LOG_LIMIT) -> tuple[Exit, str]:
        """The exit, then its details (OOM) and the output's tail read at once: two engine
        calls side by side, not one after the other, on the way to the removal."""
        out = await self._waited(handle)
        if isinstance(out, Exit):
            return out, await self.final_logs(handle, limit)
        exit_, logs = await asyncio.gather(
            self._exit_of(handle, out), self.final_logs(handle, limit)
        )
        return exit_, logs

    async def _waited(self, handle: Handle) -> dict[str, Any] | Exit:
        """The engine's answer to a wait for the container's exit (an Exit when it is gone).
        An engine that goes away (restarted: its containers run on under live-restore) breaks
        the wait, which is taken up again once it is back: the
        container's fate is the engine's to tell, never guessed from a broken connection."""
        away = 0
        while True:
            try:
                out: dict[str, Any] = await self._call(
                    self.api.wait, handle.ref, timeout=_WAIT_SLICE
                )
                break
            except requests.exceptions.ReadTimeout:
                continue  # still running (or the engine is slow): wait on
            except docker.errors.NotFound:
                return Exit(None, error="container disappeared")
            except (requests.exceptions.RequestException, docker.errors.APIError) as exc:
                # The engine went away mid-wait (a ChunkedEncodingError as it shut down), is
                # away (ConnectionError), or answers 5xx on its way down or up.
                if isinstance(exc, docker.errors.APIError) and not exc.is_server_error():
                    raise RuntimeFailure(f"cannot wait for the container: {_explain(exc)}") from exc
                if away == 0:
                    log.warning("⚠ [Task %s] Docker engine away: %s; waiting for it to return",
                                handle.task_id, _explain(exc))  # fmt: skip
                away += 1
                await asyncio.sleep(min(0.1 * away, _ENGINE_RETRY))
        if away:
            log.info("[Task %s] Docker engine back: its container is followed again",
                     handle.task_id)  # fmt: skip
        return out

    async def _exit_of(self, handle: Handle, out: dict[str, Any]) -> Exit:
        code = out.get("StatusCode")
        try:
            state = (await self._call(self.api.inspect_container, handle.ref))["State"]
        except docker.errors.NotFound:
            return Exit(code, error="container disappeared")
        except (requests.exceptions.RequestException, docker.errors.APIError):
            state = {}  # the engine went away just now: the exit code stands, without OOM news
        oom = bool(state.get("OOMKilled"))
        error = out.get("Error") and (out["Error"].get("Message") or "") or ""
        if oom:
            error = "OOM killed: the task exceeded its memory limit"
        return Exit(code, oom_killed=oom, error=error)

    async def is_running(self, handle: Handle) -> bool:
        try:
            state = (await self._call(self.api.inspect_container, handle.ref))["State"]
        except docker.errors.NotFound:
            return False
        return bool(state.get("Running"))

    async def signal(self, handle: Handle, signal: str) -> bool:
        try:
            await self._call(self.api.kill, handle.ref, signal=signal)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            if exc.status_code == 409 or not await self.is_running(handle):  # 409: not running
                return False
            raise RuntimeFailure(f"{signal} failed: {_explain(exc)}") from exc
        except requests.exceptions.RequestException as exc:  # timed out, or the engine went away
            raise RuntimeFailure(f"{signal} failed: {_explain(exc)}") from exc
        return True

    async def usage(self, handle: Handle) -> tuple[float, float] | None:
        """From the engine's stats (two samples about a second apart, taken by the engine)."""
        try:
            s = await self._call(self.api.stats, handle.ref, stream=False)
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return None
        return _usage_from_stats(s)

    async def destroy(self, handle: Handle) -> None:
        try:
            await self._patiently(self.api.remove_container, handle.ref, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise RuntimeFailure(f"remove failed: {_explain(exc)}") from exc
        except requests.exceptions.RequestException as exc:  # timed out, or the engine went away
            raise RuntimeFailure(f"remove failed: {_explain(exc)}") from exc

    async def list(self) -> list[Handle]:
        found = await self._call(
            self.api.containers, all=True, filters={"label": f"{LABEL_WORKER}={self.worker_id}"}
        )
        return [
            Handle(
                task_id=c["Labels"][LABEL_TASK],
                ref=c["Id"],
                started_at=float(c["Created"]),
                gpu_ids=tuple(g for g in c["Labels"].get(LABEL_GPUS, "").split(",") if g),
            )
            for c in found
            if LABEL_TASK in (c.get("Labels") or {}) and self._ours(c["Labels"])
        ]

    def _ours(self, labels: dict[str, str]) -> bool:
        """Not another cluster's (a container from before cluster labels counts as ours)."""
        mine, its = self.cluster(), labels.get(LABEL_CLUSTER, "")
        return not (mine and its and its != mine)

    async def read_logs(self, handle: Handle, limit: int = LOG_LIMIT) -> str:
        """The last `limit` bytes of the container's output, streamed through a rolling buffer:
        a task that printed gigabytes never has them in the worker's memory at once."""
        try:
            kept, total = await self._patiently(self._tail, handle.ref, limit)
        except docker.errors.NotFound:
            return ""
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"cannot read the logs: {_explain(exc)}") from exc
        except Unavailable as exc:
            return f"(logs unavailable: {exc})"
        return log_tail(kept, total=total, limit=limit)

    def _tail(self, ref: str, limit: int) -> tuple[bytes, int]:
        buf, total = bytearray(), 0
        for chunk in self.api.logs(ref, stdout=True, stderr=True, stream=True, follow=False):
            total += len(chunk)
            buf += chunk
            if len(buf) > 2 * limit:  # trim now and then, not at every chunk
                del buf[: len(buf) - limit]
        return bytes(buf[-limit:]), total

    async def follow_logs(self, handle: Handle, follow: bool) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        stream_box: list[Any] = []

        def pump() -> None:
            try:
                stream = self.api.logs(
                    handle.ref, stdout=True, stderr=True, stream=True, follow=follow
                )
                stream_box.append(stream)
                for chunk in stream:
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except Exception as exc:  # the stream ends with the container, or with the engine
                log.debug("log stream for %s ended: %s", handle.task_id, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        future = loop.run_in_executor(self._pool, pump)
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
        finally:
            for stream in stream_box:
                close = getattr(stream, "close", None)
                if close:
                    close()
            future.cancel()

    async def close(self) -> None:
        self.client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _usage_from_stats(s: dict[str, Any]) -> tuple[float, float] | None:
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    total = (cpu.get("cpu_usage") or {}).get("total_usage")
    if total is None:
        return None  # not running
    cpu_delta = total - ((pre.get("cpu_usage") or {}).get("total_usage") or 0)
    sys_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    ncpu = (
        cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    )
    percent = cpu_delta / sys_delta * ncpu * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    stats = mem.get("stats") or {}
    used = (mem.get("usage") or 0) - (stats.get("inactive_file") or stats.get("cache") or 0)
    return round(percent, 2), round(max(used, 0) / 1024**3, 4)
