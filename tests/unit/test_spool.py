"""The worker's spool (src/cloudai/worker/spool.py): a run's end survives on disk, whole, until
it is deleted; an unreadable entry is set aside, never replayed."""

from __future__ import annotations

import asyncio
import pathlib

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskResult
from cloudai.worker.spool import Spool, Spooled


def entry(task_id: str = "t-1", attempt: int = 2, logs: str = "line 1\nbye ✓\n") -> Spooled:
    result = TaskResult(
        task_id=task_id,
        worker_id="w1",
        status=TaskStatus.CANCELLED,
        logs=logs,
        exit_code=0,
        completed_at=1_800_000_000.5,
        started_at=1_799_999_990.0,
    )
    return Spooled(result, attempt, stop=True, exited_at=1_800_000_000.25, ref="c0ffee")


def test_an_entry_comes_back_whole_from_a_new_spool(tmp_path: pathlib.Path) -> None:
    first, second = entry(), entry("t-0", attempt=1, logs="x" * 100_000)
    asyncio.run(Spool(tmp_path).write(first))
    asyncio.run(Spool(tmp_path).write(second))
    assert Spool(tmp_path).load() == [second, first]  # by task, then run
    (file,) = (tmp_path / "spool").glob("t-1@2.json")
    assert file.stat().st_mode & 0o777 == 0o600


def test_a_deleted_entry_is_not_replayed(tmp_path: pathlib.Path) -> None:
    spool = Spool(tmp_path)
    asyncio.run(spool.write(entry()))
    asyncio.run(spool.delete(entry()))
    assert Spool(tmp_path).load() == []


def test_a_rewrite_replaces_and_a_torn_temporary_file_is_dropped(tmp_path: pathlib.Path) -> None:
    spool = Spool(tmp_path)
    asyncio.run(spool.write(entry(logs="old")))
    asyncio.run(spool.write(entry(logs="new")))
    (tmp_path / "spool" / ".t-9@1.json.tmp").write_text('{"result": {"task_')  # cut short
    (loaded,) = spool.load()
    assert loaded.result.logs == "new"
    assert not list((tmp_path / "spool").glob(".*.tmp"))


def test_an_unreadable_entry_is_set_aside(tmp_path: pathlib.Path) -> None:
    spool = Spool(tmp_path)
    asyncio.run(spool.write(entry()))
    (tmp_path / "spool" / "bad@1.json").write_text("not json")
    bad_id = entry().to_json().replace('"t-1"', '"../etc"')
    (tmp_path / "spool" / "evil@1.json").write_text(bad_id)
    assert spool.load() == [entry()]
    assert sorted(p.name for p in (tmp_path / "spool").glob("*.broken")) == [
        "bad@1.broken",
        "evil@1.broken",
    ]


def test_without_a_directory_it_is_memory_only() -> None:
    spool = Spool(None)
    asyncio.run(spool.write(entry()))
    assert spool.load() == [entry()]
    asyncio.run(spool.delete(entry()))
    assert spool.load() == []
