"""The results: a table on the terminal, `<timestamp>.json` and `<timestamp>.md`."""

from __future__ import annotations

import json
import pathlib
from collections import OrderedDict
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.model import Measure

# Where every bench command writes its results files.
RESULTS = pathlib.Path(__file__).resolve().parent / "results"

__all__ = ["print_table", "write_json", "write_md"]

COLUMNS = ("figure", "n", "median", "p95", "p99", "min", "max", "unit", "target", "met?", "vs")
# Each cloudai figure beside its floor and its Swarm figure.
COMPARE = {
    "C1": ("F1", "S1"),
    "C2": ("F2", "F2 → trap", "S2"),
    "C3": ("F3", "S3"),
    "C4": ("F4", "S4"),
    "C7": ("F5", "S7"),
    "M1 CPU per heartbeat": ("G1 gRPC floor CPU per call",),
}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "/s":
        return f"{value:.2f}"
    if unit == "s":
        return f"{value:.2f}"
    if unit in ("MB",):
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) < 100 else f"{value:,.0f}"


def _met(m: Measure) -> str:
    if m.missing:
        return "missing"
    if not m.target:
        return ""
    return {True: "met", False: "MISSED", None: "n/a"}[m.met]


def _vs(m: Measure, rows: dict[str, Measure]) -> str:
    parts = []
    for label in COMPARE.get(m.label, ()):
        other = rows.get(label)
        if other is None or other.missing:
            parts.append(f"{label} —")
        else:
            parts.append(f"{label} {fmt(other.stat(other.headline), other.unit)}")
    return " · ".join(parts)


def cells(m: Measure, rows: dict[str, Measure]) -> list[str]:
    if m.missing:
        return [m.label, "0", "", "", "", "", "", m.unit, m.target, "missing", ""]
    s = m.stats
    if m.headline == "value":
        stats = [fmt(m.value, m.unit), "", "", "", ""]
    else:
        stats = [fmt(s.get(k), m.unit) for k in ("median", "p95", "p99", "min", "max")]
    return [m.label, str(m.n), *stats, m.unit, m.target, _met(m), _vs(m, rows)]


def print_table(measures: list[Measure], console: Console | None = None) -> None:
    rows = {m.label: m for m in measures}
    table = Table(title="cloudai benchmark", show_lines=False)
    for col in COLUMNS:
        table.add_column(
            col,
            justify="right" if col in ("n", "median", "p95", "p99", "min", "max") else "left",
            no_wrap=col in ("figure", "met?"),
        )
    for m in measures:
        c = cells(m, rows)
        style = {"MISSED": "red", "met": "green", "missing": "yellow"}.get(c[9], "")
        table.add_row(*c, style=style)
    console = console or Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)


def _grouped(measures: list[Measure]) -> OrderedDict[str, dict[str, Any]]:
    figures: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for m in measures:
        figures.setdefault(m.figure, {"rows": []})["rows"].append(m.to_json())
    return figures


def write_json(path: pathlib.Path, run: dict[str, Any], measures: list[Measure]) -> None:
    body = {**run, "figures": _grouped(measures)}
    path.write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n")


def md_table(measures: list[Measure]) -> str:
    rows = {m.label: m for m in measures}
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for m in measures:
        c = cells(m, rows)
        if c[9] == "MISSED":
            c[9] = "**MISSED**"
        out.append("| " + " | ".join(x.replace("|", "\\|") for x in c) + " |")
    return "\n".join(out)


def _source(state: dict[str, str] | None) -> str:
    if not state:
        return "unknown"
    return f"commit {state.get('commit')}, src/ digest {state.get('src_digest')}"


def _source_warning(run: dict[str, Any]) -> list[str]:
    start, end = run["machine"].get("source") or {}, run.get("source_at_end") or {}
    if not end or start == end:
        return []
    if start.get("src_digest") == end.get("src_digest"):
        return [
            f"(The commit moved to {end.get('commit')} during the run; src/ did not change.)",
            "",
        ]
    return [
        f"**Warning: src/ changed during this run** (at the end: {_source(end)}): sections "
        "may have run different versions of cloudai.",
        "",
    ]


def write_md(path: pathlib.Path, run: dict[str, Any], measures: list[Measure]) -> None:
    machine = run["machine"]
    engine = machine.get("engine", {})
    libs = ", ".join(f"{k} {v}" for k, v in machine.get("libraries", {}).items())
    lines = [
        f"# cloudai benchmark, {run['started']}",
        "",
        f"`{run['command']}` ({run['mode']} sizes; sections {', '.join(run['sections'])}), "
        f"{run['duration_s']:.0f} s; {_source(machine.get('source'))}.",
        "",
        *_source_warning(run),
        "## Machine",
        "",
        f"- {machine.get('cores')} cores ({machine.get('cpu')}), "
        f"{machine.get('memory_gb')} GB memory; {machine.get('os')}, kernel "
        f"{machine.get('kernel')}; Python {machine.get('python')}",
        f"- Docker engine {engine.get('version', engine.get('error'))} (API "
        f"{engine.get('api_version')}, containerd {engine.get('containerd')}, "
        f"{engine.get('storage_driver')}, cgroup {engine.get('cgroup')})",
        f"- PostgreSQL: {machine.get('postgresql') or 'not used'}",
        f"- libraries: {libs}",
        f"- load average at start {machine.get('load_at_start')}, at end "
        f"{run.get('load_at_end')} (other work on this machine shares its cores)",
        "",
        "## Results",
        "",
        "Latencies in ms (M4 in s); throughputs are one value over the whole batch (n "
        "items). `vs`: the floor and the Swarm figure of the same run, medians.",
        "",
        md_table(measures),
        "",
        "## Notes",
        "",
    ]
    for m in measures:
        bits = [m.title] if m.title else []
        if m.missing:
            bits.append(f"missing: {m.missing}")
        if m.note:
            bits.append(m.note)
        lines.append(f"- **{m.label}**: " + ". ".join(bits) + ".")
    for name, text in run.get("errors", {}).items():
        lines.append(f"- {name} not produced: {text}")
    if run.get("curve"):
        from bench.curve import md_curve

        png = run.get("curve_png")
        lines += [
            "",
            "## Scaling curve",
            "",
            "Heartbeats only, a fresh master and store per point, "
            + ("TLS" if run["curve"][0].get("secure") else "--insecure")
            + (f"; drawn in [{png}]({png})" if png else "")
            + ".",
            "",
            *md_curve(run["curve"]),
        ]
    for name, summary in run.get("profiles", {}).items():
        lines += ["", f"## Profile: {name}", "", "```", summary.rstrip(), "```"]
    path.write_text("\n".join(lines) + "\n")
