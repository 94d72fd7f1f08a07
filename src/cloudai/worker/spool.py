"""The worker's spool: a task run's end, kept on disk from the moment it is known until the
master has acknowledged it.

A run's end (its result, last log lines included, and how it ended) is written here before its
container is removed, so the removal never waits on the master, and a worker killed between
the removal and the report loses nothing: at start it replays every spooled end
(`Supervisor.adopt`) and removes an entry only once the master has answered for it.

One file per task run, `<state_dir>/spool/<task_id>@<attempt>.json` (a task ID never holds
'@'), written to a temporary file, fsync'd, renamed into place and the directory fsync'd: a
crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pathlib
from dataclasses import asdict, dataclass
from typing import Any

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskResult

__all__ = ["DIR", "Spool", "Spooled"]

log = logging.getLogger("cloudai.worker.spool")
DIR = "spool"


@dataclass(frozen=True, slots=True)
class Spooled:
    """A run's end, as the master is to hear it."""

    result: TaskResult
    attempt: int = 0
    stop: bool = False  # the end of a stop: told as its `exited` (or `removed`) update
    exited_at: float | None = None  # when its process ended; None: it never started
    ref: str = ""  # its container (or process group); "": it never started

    @property
    def task_id(self) -> str:
        return self.result.task_id

    @property
    def name(self) -> str:
        return f"{self.task_id}@{self.attempt}.json"

    def to_json(self) -> str:
        d = asdict(self)
        d["result"]["status"] = self.result.status.value
        return json.dumps(d, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> Spooled:
        d: dict[str, Any] = json.loads(text)
        r = dict(d.pop("result"))
        result = TaskResult(**{**r, "status": TaskStatus(r["status"])})
        if problems := result.problems():
            raise ValueError("; ".join(problems))
        return Spooled(result=result, **d)


class Spool:
    """The spool directory; `None`: kept in memory only (tests of the supervisor alone)."""

    def __init__(self, state_dir: str | os.PathLike[str] | None) -> None:
        self.dir = pathlib.Path(state_dir) / DIR if state_dir is not None else None
        self._memory: dict[str, Spooled] = {}

    async def write(self, entry: Spooled) -> None:
        if self.dir is None:
            self._memory[entry.name] = entry
            return
        await asyncio.to_thread(_write_sync, self.dir, entry)

    async def delete(self, entry: Spooled) -> None:
        """The master has answered for this run: forget it."""
        if self.dir is None:
            self._memory.pop(entry.name, None)
            return
        await asyncio.to_thread(_delete_sync, self.dir, entry)

    def load(self) -> list[Spooled]:
        """Every spooled end, oldest run first. An unreadable file is set aside (renamed
        `.broken`) with an error line, never replayed and never silently dropped."""
        if self.dir is None:
            return sorted(self._memory.values(), key=lambda e: (e.task_id, e.attempt))
        if not self.dir.is_dir():
            return []
        out: list[Spooled] = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                out.append(Spooled.from_json(path.read_text()))
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.error("✗ spool entry %s unreadable (%s): set aside as .broken", path, exc)
                path.rename(path.with_suffix(".broken"))
        for tmp in self.dir.glob(".*.tmp"):  # a write cut short: its entry was never written
            tmp.unlink(missing_ok=True)
        return sorted(out, key=lambda e: (e.task_id, e.attempt))


def _write_sync(directory: pathlib.Path, entry: Spooled) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = directory / f".{entry.name}.tmp"
    with open(tmp, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as out:
        out.write(entry.to_json().encode())
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, directory / entry.name)
    _fsync_dir(directory)


def _delete_sync(directory: pathlib.Path, entry: Spooled) -> None:
    (directory / entry.name).unlink(missing_ok=True)  # a delete lost to a crash: replayed again


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
