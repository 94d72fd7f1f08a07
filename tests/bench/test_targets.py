"""The bench's judge (bench/targets.py) on made-up rows: issue 13's targets, each row judged by
its own statistic, and M2's "every planned call accepted at ≥ 100/s" as a target of its own."""

from __future__ import annotations

from bench.model import Measure
from bench.targets import judge


def _latency(label: str, samples: list[float]) -> Measure:
    return Measure(label[:2], label, "", "ms", samples)


def test_floor_relative_targets_use_the_issue_13_margins() -> None:
    rows = [
        _latency("F1", [100.0] * 5),
        _latency("C1", [115.0] * 5),  # F1 + 15: met
        _latency("F3", [100.0] * 5),
        _latency("C3", [121.0] * 5),  # F3 + 21: missed
        Measure("F5", "F5", "", "/s", value=10.0, headline="value"),
        Measure("C7", "C7", "", "/s", value=9.4, headline="value"),  # 94% of F5: missed
    ]
    judge(rows)
    by = {m.label: m for m in rows}
    assert by["C1"].met is True and "F1 + 15 ms" in by["C1"].target
    assert by["C3"].met is False and "F3 + 20 ms" in by["C3"].target
    assert by["C7"].met is False and "95%" in by["C7"].target


def test_m1_alone_and_with_m2_are_judged_apart() -> None:
    alone = _latency("M1 heartbeat alone", [25.0] * 100)  # p99 25 > 20
    busy = _latency("M1 heartbeat with M2", [25.0] * 100)  # p99 25 <= 30
    cpu_alone = Measure("M1", "M1 master CPU alone", "", "%", [14.0, 16.0], headline="mean")
    cpu_busy = Measure("M1", "M1 master CPU with M2", "", "%", [61.0, 61.0], headline="mean")
    judge([alone, busy, cpu_alone, cpu_busy])
    assert alone.met is False and busy.met is True
    assert cpu_alone.met is True  # mean 15
    assert cpu_busy.met is False


def _accepted(value: float, rate: float) -> Measure:
    return Measure(
        "M2",
        "M2 accepted",
        "",
        "%",
        value=value,
        headline="value",
        extra={"n": 100, "rate_per_s": rate},
    )


def test_m2_must_accept_every_planned_call_at_100_per_second() -> None:
    kept_up, behind, too_slow_an_offer = (
        _accepted(100.0, 111.0),
        _accepted(99.9, 111.0),
        _accepted(100.0, 50.0),
    )
    for row in (kept_up, behind, too_slow_an_offer):
        judge([row])
    assert kept_up.met is True
    assert behind.met is False
    assert too_slow_an_offer.met is False


def test_m5_is_judged_per_store() -> None:
    rows = [
        _latency("M5 heartbeat sqlite", [10.0] * 100),
        _latency("M5 heartbeat postgresql", [60.0] * 100),
        Measure("M5", "M5 master RSS postgresql", "", "MB", [120.0, 310.0], headline="max"),
    ]
    judge(rows)
    assert [m.met for m in rows] == [True, False, False]
