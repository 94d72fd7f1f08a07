"""master/beats.py alone: when a heartbeat may be answered from memory, and the batch."""

from __future__ import annotations

from cloudai.core.gpus import GpuDevice
from cloudai.master.beats import FULL_EVERY, GAP, Beats, Touch

INTERVAL = 5.0
T0 = 1_000_000.0


def touch(at: float, gpus: tuple[GpuDevice, ...] = ()) -> Touch:
    return Touch(at, {"cpu_percent": 1.0}, gpus, ())


def seen_quiet(beats: Beats, at: float = T0, running: tuple[str, ...] = ("t1",)) -> None:
    gen = beats.generation("w1")
    beats.after_full("w1", gen, running, (), (), at, quiet=True)


def test_nothing_is_answered_from_memory_before_a_quiet_full_pass() -> None:
    beats = Beats(INTERVAL)
    assert not beats.answer("w1", ["t1"], [], touch(T0))
    beats.after_full("w1", beats.generation("w1"), ["t1"], [], [], T0, quiet=False)
    assert not beats.answer("w1", ["t1"], [], touch(T0 + INTERVAL))
    seen_quiet(beats)
    assert beats.answer("w1", ["t1"], [], touch(T0 + INTERVAL))


def test_a_changed_task_set_or_busy_gpu_takes_the_full_pass() -> None:
    beats = Beats(INTERVAL)
    seen_quiet(beats)
    assert not beats.answer("w1", ["t1", "t2"], [], touch(T0 + 1))
    assert not beats.answer("w1", [], ["t1"], touch(T0 + 1))
    busy = (GpuDevice("0", busy=True),)
    assert not beats.answer("w1", ["t1"], [], touch(T0 + 1, busy))
    assert beats.answer("w1", ["t1"], [], touch(T0 + 1, (GpuDevice("0"),)))


def test_a_change_in_the_store_counts_even_when_it_lands_during_the_full_pass() -> None:
    beats = Beats(INTERVAL)
    gen = beats.generation("w1")  # the full pass reads the store...
    beats.changed("w1")  # ...a stop is decided meanwhile...
    beats.after_full("w1", gen, ["t1"], [], [], T0, quiet=True)  # ...and the pass ends
    assert not beats.answer("w1", ["t1"], [], touch(T0 + 1))
    seen_quiet(beats, T0 + 1)
    assert beats.answer("w1", ["t1"], [], touch(T0 + 2))


def test_a_gap_or_an_old_full_pass_takes_the_full_pass() -> None:
    beats = Beats(INTERVAL)
    seen_quiet(beats)
    assert not beats.answer("w1", ["t1"], [], touch(T0 + GAP * INTERVAL + 0.1))
    seen_quiet(beats)
    at = T0
    while at + INTERVAL <= T0 + FULL_EVERY * INTERVAL:
        at += INTERVAL
        assert beats.answer("w1", ["t1"], [], touch(at))
    assert not beats.answer("w1", ["t1"], [], touch(at + INTERVAL))


def test_the_batch_holds_the_newest_heartbeat_and_a_failed_write_keeps_it() -> None:
    beats = Beats(INTERVAL)
    seen_quiet(beats)
    assert beats.answer("w1", ["t1"], [], touch(T0 + 1))
    assert beats.answer("w1", ["t1"], [], touch(T0 + 2))
    assert beats.last("w1") == T0 + 2 and beats.heard() == {"w1": T0 + 2}
    batch = beats.take()
    assert list(batch) == ["w1"] and batch["w1"].at == T0 + 2
    assert beats.take() == {}
    assert beats.answer("w1", ["t1"], [], touch(T0 + 3))
    beats.put_back(batch)  # the write failed: the newer heartbeat stays
    latest = beats.latest("w1")
    assert latest is not None and latest.at == T0 + 3
    beats.forget("w1")
    assert beats.latest("w1") is None and beats.last("w1") is None
