"""The journal of cancels taken while the store is away (master/outage.py): durable lines,
read back by a restarted master, a torn last line skipped, entries dropped once recorded."""

from __future__ import annotations

import pathlib

from cloudai.master.outage import CancelJournal, JournaledCancel


def entry(task_id: str) -> JournaledCancel:
    return JournaledCancel(task_id, "w1", "admin", "why", False, None, "SIGINT", 1.5)


def test_entries_survive_a_restart_in_order(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cancel-journal.jsonl"
    journal = CancelJournal(path)
    journal.append(entry("t1"))
    journal.append(entry("t2"))
    assert CancelJournal(path).entries == [entry("t1"), entry("t2")]


def test_a_torn_last_line_is_skipped(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cancel-journal.jsonl"
    CancelJournal(path).append(entry("t1"))
    with open(path, "a") as f:
        f.write('{"task_id": "t2", "work')  # a crash mid-append: never answered
    assert CancelJournal(path).entries == [entry("t1")]


def test_dropped_entries_are_gone_and_the_file_with_the_last(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cancel-journal.jsonl"
    journal = CancelJournal(path)
    for t in ("t1", "t2", "t3"):
        journal.append(entry(t))
    journal.drop(entry("t2"))
    assert CancelJournal(path).entries == [entry("t1"), entry("t3")]
    journal.drop(entry("t1"))
    journal.drop(entry("t3"))
    assert not path.exists() and CancelJournal(path).entries == []
