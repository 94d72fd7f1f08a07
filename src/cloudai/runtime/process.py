"""The process runtime: each task is a local process group, without isolation or limits.

For machines with no Docker engine. The command runs under a small shell wrapper that records
its exit code in a file, and the group is detached from the worker, so a restarted worker finds
its tasks again (state in `state_dir/<task_id>/`) and still learns how they ended.

Nothing stops a process from using any GPU: its devices are named in CUDA_VISIBLE_DEVICES
(with CUDA_DEVICE_ORDER=PCI_BUS_ID, so CUDA numbers them as NVML and nvidia-smi do) and
NVIDIA_VISIBLE_DEVICES; a task without GPUs gets them empty, which hides every GPU from
CUDA."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import shutil
import signal as signals
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psutil

from cloudai.core.limits import log_tail, quote
from cloudai.core.models import TaskSpec, validate_task_id
from cloudai.errors import InvalidArgument, RuntimeFailure
from cloudai.runtime.base import LOG_LIMIT, Exit, Handle, Runtime

__all__ = ["ProcessRuntime", "gpu_environment"]

# Catch (not ignore) the stop signals, so the wrapper outlives them and records the child's
# exit code; a caught signal is reset to its default in the exec'd child.
_WRAPPER = (
    'trap : TERM INT HUP QUIT USR1 USR2; "$@"; code=$?; '
    'echo $code > "$CLOUDAI_EXIT_FILE.tmp" && mv "$CLOUDAI_EXIT_FILE.tmp" "$CLOUDAI_EXIT_FILE"'
)
_POLL = 0.05


def gpu_environment(gpu_ids: Sequence[str]) -> dict[str, str]:
    """What a process is told of its GPUs (it cannot override it)."""
    visible = ",".join(gpu_ids)
    return {
        "CUDA_VISIBLE_DEVICES": visible,
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "NVIDIA_VISIBLE_DEVICES": visible or "void",
    }


def _task_group(handle: Handle) -> int:
    """The process group a handle names, only if it can be a task's: each task leads its own
    group, so never 0 (the caller's group), 1 (init's) or the worker's own, whatever a handle
    or a meta.json file says."""
    try:
        pgid = int(handle.ref)
    except ValueError:
        raise RuntimeFailure(f"invalid process group {quote(handle.ref)}") from None
    if pgid <= 1 or pgid == os.getpgrp():
        raise RuntimeFailure(f"refusing to signal process group {pgid}: not a task's")
    return pgid


class ProcessRuntime(Runtime):
    name = "process"

    def __init__(self, worker_id: str, state_dir: str | os.PathLike[str]) -> None:
        self.worker_id = worker_id
        self.root = (pathlib.Path(state_dir) / "process-tasks").resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._procs: dict[str, dict[int, psutil.Process]] = {}  # for CPU % between samples

    def _dir(self, task_id: str) -> pathlib.Path:
        """The task's state directory: only ever a direct child of the root, from a valid ID
        (a task ID never becomes a path of its own, e.g. `/some/dir` or `..`)."""
        if (problem := validate_task_id(task_id)) is not None:
            raise InvalidArgument(problem)
        d = self.root / task_id
        if d.parent != self.root or d.is_symlink():
            raise InvalidArgument(f"task id {quote(task_id)} is not a plain directory name")
        return d

    async def ping(self) -> None:
        return None

    async def prepare(self, task_id: str, spec: TaskSpec) -> None:
        if not spec.command:
            raise RuntimeFailure(
                "the process runtime needs a command: it cannot run an image's own command"
            )
        if shutil.which(spec.command[0]) is None and not os.path.exists(spec.command[0]):
            raise RuntimeFailure(f"command not found: {quote(spec.command[0])}")

    async def start(self, task_id: str, spec: TaskSpec, gpu_ids: Sequence[str] = ()) -> Handle:
        await self.prepare(task_id, spec)
        if len(gpu_ids) != spec.resources.gpu:
            raise RuntimeFailure(
                f"the task asks for {spec.resources.gpu} GPU(s) but was given {len(gpu_ids)}"
            )
        d = self._dir(task_id)
        meta_path = d / "meta.json"
        if meta_path.exists():  # started before (a repeated order): the same task
            return _handle(task_id, json.loads(meta_path.read_text()))
        d.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **spec.container_env,
            **gpu_environment(gpu_ids),
            "CLOUDAI_EXIT_FILE": str(d / "exit"),
        }
        try:
            proc = await self._spawn(d, spec, env)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)  # a start that failed leaves nothing behind
            raise
        started = time.time()
        try:
            create_time: float | None = psutil.Process(proc.pid).create_time()
        except psutil.Error:  # already exited and reaped: wait() reads its exit file
            create_time = None
        meta_path.write_text(
            json.dumps(
                {
                    "pid": proc.pid,
                    "started_at": started,
                    "create_time": create_time,
                    "worker_id": self.worker_id,
                    "gpu_ids": list(gpu_ids),
                }
            )
        )
        self._children[task_id] = proc
        return Handle(task_id, str(proc.pid), started, tuple(gpu_ids))

    @staticmethod
    async def _spawn(
        d: pathlib.Path, spec: TaskSpec, env: dict[str, str]
    ) -> asyncio.subprocess.Process:
        with open(d / "out.log", "ab") as out:
            try:
                return await asyncio.create_subprocess_exec(
                    "/bin/sh",
                    "-c",
                    _WRAPPER,
                    "sh",
                    *spec.command,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    cwd=d,
                    env=env,
                    start_new_session=True,
                )
            except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL in an argument
                raise RuntimeFailure(f"cannot start process: {exc}") from exc

    def _alive(self, handle: Handle) -> bool:
        child = self._children.get(handle.task_id)
        if child is not None:
            return child.returncode is None
        try:
            meta = json.loads((self._dir(handle.task_id) / "meta.json").read_text())
            proc = psutil.Process(int(handle.ref))
            same = meta["create_time"] is None or proc.create_time() == meta["create_time"]
            alive: bool = same and proc.status() != "zombie"  # psutil is untyped
            return alive
        except (OSError, ValueError, KeyError, psutil.Error):
            return False

    async def wait(self, handle: Handle) -> Exit:
        child = self._children.get(handle.task_id)
        rc: int | None = None
        if child is not None:
            rc = await child.wait()
        else:
            while self._alive(handle):
                await asyncio.sleep(_POLL * 4)
        exit_file = self._dir(handle.task_id) / "exit"
        if exit_file.exists():
            return Exit(int(exit_file.read_text().strip() or 0))
        if rc is not None:
            return Exit(128 - rc if rc < 0 else rc)
        return Exit(None, error="the process ended without recording an exit code")

    def _signal(self, handle: Handle, sig: signals.Signals) -> None:
        pgid = _task_group(handle)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    async def usage(self, handle: Handle) -> tuple[float, float] | None:
        """Summed over the task's process group (psutil; CPU % since the last call)."""
        if not self._alive(handle):
            return None
        pgid = int(handle.ref)
        seen = self._procs.setdefault(handle.task_id, {})
        cpu = mem = 0.0
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) != pgid:
                    continue
                tracked = seen.setdefault(proc.pid, proc)
                cpu += tracked.cpu_percent(None)
                mem += tracked.memory_info().rss
            except (psutil.Error, ProcessLookupError):
                continue
        return round(cpu, 2), round(mem / 1024**3, 4)

    async def is_running(self, handle: Handle) -> bool:
        return self._alive(handle)

    async def signal(self, handle: Handle, signal: str) -> bool:
        if not self._alive(handle):
            return False
        self._signal(handle, signals.Signals[signal])
        return True

    async def destroy(self, handle: Handle) -> None:
        self._dir(handle.task_id)  # a handle with a bad ID is refused before anything is done
        self._signal(handle, signals.SIGKILL)  # whatever the task left behind in its group
        self._procs.pop(handle.task_id, None)
        child = self._children.pop(handle.task_id, None)
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                async with asyncio.timeout(5):
                    await child.wait()
        shutil.rmtree(self._dir(handle.task_id), ignore_errors=True)

    async def list(self) -> list[Handle]:
        out = []
        for meta_path in sorted(self.root.glob("*/meta.json")):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            name = meta_path.parent.name
            if validate_task_id(name) is not None or meta_path.parent.is_symlink():
                continue  # not one of ours: only valid task IDs become directories
            if meta.get("worker_id") == self.worker_id:
                out.append(_handle(meta_path.parent.name, meta))
        return out

    async def read_logs(self, handle: Handle, limit: int = LOG_LIMIT) -> str:
        """The last `limit` bytes of the output file, never more in memory (the file itself
        holds the whole output until the task is destroyed)."""
        path = self._dir(handle.task_id) / "out.log"
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(max(size - limit, 0))
                return log_tail(f.read(limit), total=size, limit=limit)
        except FileNotFoundError:
            return ""

    async def follow_logs(self, handle: Handle, follow: bool) -> AsyncIterator[bytes]:
        path = self._dir(handle.task_id) / "out.log"
        try:
            f = open(path, "rb")  # noqa: SIM115 - held across awaits
        except FileNotFoundError:
            return
        with f:
            while True:
                chunk = f.read(65536)
                if chunk:
                    yield chunk
                    continue
                if not follow or not self._alive(handle):
                    rest = f.read()
                    if rest:
                        yield rest
                    return
                await asyncio.sleep(_POLL * 4)


def _handle(task_id: str, meta: dict[str, Any]) -> Handle:
    return Handle(task_id, str(meta["pid"]), meta["started_at"], tuple(meta.get("gpu_ids") or ()))
