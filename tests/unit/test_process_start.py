"""The process runtime leaves nothing behind when a task cannot start."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

from cloudai.core.models import TaskSpec
from cloudai.errors import RuntimeFailure
from cloudai.runtime.process import ProcessRuntime


def test_a_start_refused_by_the_os_leaves_no_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", refuse)
    runtime = ProcessRuntime("w1", tmp_path)
    with pytest.raises(RuntimeFailure, match="cannot start process: .*Too many open files"):
        asyncio.run(runtime.start("task-1", TaskSpec("busybox", ("true",))))
    assert not (runtime.root / "task-1").exists()
    assert list(runtime.root.iterdir()) == []


def test_an_argument_the_os_cannot_take_is_a_runtime_failure_and_leaves_nothing(
    tmp_path: pathlib.Path,
) -> None:
    runtime = ProcessRuntime("w1", tmp_path)
    spec = TaskSpec("busybox", ("echo", "a\x00b"))
    with pytest.raises(RuntimeFailure, match="cannot start process"):
        asyncio.run(runtime.start("task-2", spec))
    assert list(runtime.root.iterdir()) == []
    assert asyncio.run(runtime.list()) == []
