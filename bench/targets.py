"""The issue's targets, judged on one run's measures (ratios to the floor measured in it)."""

from __future__ import annotations

from collections.abc import Callable

from bench.model import Measure

__all__ = ["judge"]


def _by_label(measures: list[Measure]) -> dict[str, Measure]:
    return {m.label: m for m in measures}


def _floor_plus(floor: str, extra_ms: float) -> Callable[[dict[str, Measure]], tuple[float, str]]:
    def limit(rows: dict[str, Measure]) -> tuple[float, str]:
        row = rows.get(floor)
        base = None if row is None else row.stat("median")
        if base is None:
            raise LookupError(f"{floor} not measured")
        return base + extra_ms, f"≤ {floor} + {extra_ms:g} ms = {base + extra_ms:.0f} ms"

    return limit


def _fixed(limit: float, unit: str) -> Callable[[dict[str, Measure]], tuple[float, str]]:
    return lambda _rows: (limit, f"≤ {limit:g} {unit}")


# label: (statistic judged, at most / at least, limit)
_AT_MOST: dict[str, tuple[str, Callable[[dict[str, Measure]], tuple[float, str]]]] = {
    "C1": ("median", _floor_plus("F1", 30)),
    "C2": ("median", _floor_plus("F2", 20)),
    "C3": ("median", _floor_plus("F3", 30)),
    "C4": ("median", _floor_plus("F4", 50)),
    "C5": ("median", _fixed(150, "ms")),
    "C6 reachable": ("p99", _fixed(50, "ms")),
    "C6 worker stopped": ("p99", _fixed(100, "ms")),
    "M1 heartbeat": ("p99", _fixed(50, "ms")),
    "M1 master CPU": ("mean", _fixed(50, "% of a core")),
    "M1 master RSS": ("max", _fixed(300, "MB")),
    "M2 submit": ("p99", _fixed(100, "ms")),
    "M2 cancel": ("p99", _fixed(100, "ms")),
    "M3 ls sqlite": ("p99", _fixed(100, "ms")),
    "M3 show sqlite": ("p99", _fixed(100, "ms")),
    "M3 ls postgresql": ("p99", _fixed(100, "ms")),
    "M3 show postgresql": ("p99", _fixed(100, "ms")),
    "M4 sqlite": ("max", _fixed(10, "s")),
    "M4 postgresql": ("max", _fixed(10, "s")),
}


def judge(measures: list[Measure]) -> None:
    """Fill in each judged row's target text and met flag (None when it cannot be judged)."""
    rows = _by_label(measures)
    for label, (stat, limit_of) in _AT_MOST.items():
        row = rows.get(label)
        if row is None or row.missing:
            continue
        row.headline = stat
        try:
            limit, text = limit_of(rows)
        except LookupError as exc:
            row.target, row.met = f"n/a ({exc})", None
            continue
        row.target = f"{stat} {text}"
        got = row.stat(stat)
        row.met = None if got is None else got <= limit
    c7, f5 = rows.get("C7"), rows.get("F5")
    if c7 is not None and not c7.missing:
        if f5 is None or f5.missing or f5.value is None or c7.value is None:
            c7.target, c7.met = "n/a (F5 not measured)", None
        else:
            c7.target = f"≥ 90% of F5 = {0.9 * f5.value:.2f}/s"
            c7.met = c7.value >= 0.9 * f5.value
