"""The scaling curve as a PNG: master CPU, RSS and heartbeat p99 against the number of
workers, one line per store. Needs matplotlib (`pip install -e .[bench]`; it is in
requirements.lock)."""

from __future__ import annotations

import pathlib
from typing import Any

__all__ = ["draw_curve", "md_curve"]

_PANELS = (
    ("master_cpu_mean_pct", "master CPU, mean (% of a core)"),
    ("master_rss_max_mb", "master RSS, max (MB)"),
    ("heartbeat_p99_ms", "heartbeat p99 (ms)"),
)


def draw_curve(points: list[dict[str, Any]], path: pathlib.Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(_PANELS), figsize=(13, 4), constrained_layout=True)
    stores = sorted({p["store"] for p in points})
    for ax, (key, label) in zip(axes, _PANELS, strict=True):
        for store in stores:
            mine = sorted(
                (p for p in points if p["store"] == store and p[key] is not None),
                key=lambda p: p["workers"],
            )
            ax.plot([p["workers"] for p in mine], [p[key] for p in mine], marker="o", label=store)
        ax.set_xlabel("simulated workers (heartbeat every 5 s)")
        ax.set_title(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def md_curve(points: list[dict[str, Any]]) -> list[str]:
    """The curve's numbers as a Markdown table."""
    out = [
        "| store | workers | master CPU mean % | RSS max MB | heartbeat p99 ms | "
        "CPU µs per heartbeat (less idle) | load generators' CPU mean % |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in sorted(points, key=lambda p: (p["store"], p["workers"])):
        gens = ", ".join(f"{x:.0f}" for x in p["loadgen_cpu_mean_pct"])
        if p["loadgen_saturated"]:
            gens += " (saturated)"
        out.append(
            f"| {p['store']} | {p['workers']:,} | {p['master_cpu_mean_pct']} | "
            f"{p['master_rss_max_mb']} | {p['heartbeat_p99_ms']} | "
            f"{p['cpu_us_per_heartbeat']:.0f} | {gens} |"
        )
    return out
