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


# label: (statistic judged, limit); the statistic must be at most the limit. Issue 13's targets.
_AT_MOST: dict[str, tuple[str, Callable[[dict[str, Measure]], tuple[float, str]]]] = {
    "C1": ("median", _floor_plus("F1", 15)),
    "C2": ("median", _floor_plus("F2", 20)),
    "C3": ("median", _floor_plus("F3", 20)),
    "C4": ("median", _floor_plus("F4", 30)),
    "C5": ("median", _fixed(150, "ms")),
    "C6 reachable": ("p99", _fixed(50, "ms")),
    "C6 worker stopped": ("p99", _fixed(100, "ms")),
    "M1 heartbeat alone": ("p99", _fixed(20, "ms")),
    "M1 master CPU alone": ("mean", _fixed(15, "% of a core")),
    "M1 heartbeat with M2": ("p99", _fixed(30, "ms")),
    "M1 master CPU with M2": ("mean", _fixed(60, "% of a core")),
    "M1 master RSS": ("max", _fixed(300, "MB")),
    "M2 submit": ("p99", _fixed(50, "ms")),
    "M2 cancel": ("p99", _fixed(50, "ms")),
    "M3 ls sqlite": ("p99", _fixed(100, "ms")),
    "M3 show sqlite": ("p99", _fixed(100, "ms")),
    "M3 ls postgresql": ("p99", _fixed(100, "ms")),
    "M3 show postgresql": ("p99", _fixed(100, "ms")),
    "M4 sqlite": ("max", _fixed(10, "s")),
    "M4 postgresql": ("max", _fixed(10, "s")),
    **{
        f"M5 {label} {store}": (stat, _fixed(limit, unit))
        for store in ("sqlite", "postgresql")
        for label, stat, limit, unit in (
            ("heartbeat", "p99", 50, "ms"),
            ("master CPU", "mean", 100, "% of a core"),
            ("master RSS", "max", 300, "MB"),
        )
    },
}
C7_SHARE = 0.95  # C7 at least this share of F5


def _judge_accepted(row: Measure) -> None:
    """M2 accepted: every planned submit and cancel, at an offered rate of at least 100/s."""
    rate = float(row.extra.get("rate_per_s", 0.0))
    row.target = f"= 100% of planned, at ≥ 100/s offered ({rate:.0f}/s)"
    if row.value is None:
        row.met = None
        return
    row.met = row.value >= 100.0 and rate >= 100.0


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
            c7.target = f"≥ {C7_SHARE:.0%} of F5 = {C7_SHARE * f5.value:.2f}/s"
            c7.met = c7.value >= C7_SHARE * f5.value
    accepted = rows.get("M2 accepted")
    if accepted is not None and not accepted.missing:
        _judge_accepted(accepted)
