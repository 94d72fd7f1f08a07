"""What a benchmark produces: measures (one table row each) and their statistics. No I/O."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Measure", "percentile", "summarize"]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "median": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


@dataclass
class Measure:
    """One row of the table: a figure (F1, C6, M3, ...) or one aspect of it.

    `samples` are in `unit` (latencies in ms). A throughput has one `value` (its samples, when
    any, are the per-item latencies, for context). `headline` names the statistic a target
    judges (median, p99, mean, max or value)."""

    figure: str
    label: str
    title: str
    unit: str
    samples: list[float] = field(default_factory=list)
    value: float | None = None
    headline: str = "median"
    target: str = ""
    met: bool | None = None
    missing: str = ""  # why it was not produced (then there are no samples)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.extra.get("n", len(self.samples)))

    @property
    def stats(self) -> dict[str, float]:
        out = summarize(self.samples)
        if self.value is not None:
            out["value"] = self.value
        return out

    def stat(self, name: str | None = None) -> float | None:
        """The headline statistic (or another by name); None when missing."""
        got = self.stats.get(name or self.headline)
        return None if got is None or math.isnan(got) else got

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["n"] = self.n
        out["stats"] = {k: round(v, 3) for k, v in self.stats.items()}
        out["samples"] = [round(v, 3) for v in self.samples]
        return out


def missing(figure: str, label: str, title: str, unit: str, why: str) -> Measure:
    return Measure(figure, label, title, unit, missing=why)
