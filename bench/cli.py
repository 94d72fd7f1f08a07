"""`python -m bench`: every section back to back, a table, and the results written down."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pathlib
import re
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from rich.console import Console

from bench import machine
from bench.grpcfloor import compare_to_floor
from bench.model import Measure, missing
from bench.plan import IMAGE, Sizes, sizes_for
from bench.report import RESULTS, print_table, write_json, write_md
from bench.targets import judge
from bench.ui import Ui

__all__ = ["main"]

SECTIONS = ("F", "C", "S", "M", "K")
# What each section produces, for the rows of a section that could not run.
EXPECTED = {
    "F": ("F1", "F2", "F3", "F4", "F5"),
    "C": ("C1", "C2", "C3", "C4", "C5", "C6", "C7"),
    "S": ("S1", "S2", "S3", "S4", "S7"),
    "M": ("M1", "M2", "G1", "M3", "M4"),
    "K": ("M5",),
}
DOCS_PNG = pathlib.Path(__file__).resolve().parents[1] / "docs" / "scaling.png"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="cloudai against the Docker engine floor and Docker Swarm, and master "
        "scale. Full sizes take about 30 minutes on 2 cores. `python -m bench chaos --help`: "
        "the chaos soak (docs/reliability.md).",
    )
    p.add_argument("--quick", action="store_true", help="each section small (about 4 minutes)")
    p.add_argument(
        "--tiny", action="store_true", help="a few of each (the smoke test's size; implies --quick)"
    )
    p.add_argument(
        "--only",
        default=",".join(SECTIONS),
        metavar="F,C,S,M,K",
        help="sections to run: F floor, C cloudai, S Swarm, M master scale (M1-M4 and G1, the "
        "gRPC floor), K workers at scale (M5 and the scaling curve, SQLite and PostgreSQL) "
        "(default: all)",
    )
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=RESULTS,
        metavar="DIR",
        help="where <timestamp>.json and .md (and <timestamp>-scaling.png, after K) go "
        "(default: bench/results)",
    )
    p.add_argument(
        "--docs",
        action="store_true",
        help="also write the scaling curve to docs/scaling.png (the one docs/performance.md shows)",
    )
    p.add_argument(
        "--pg-url",
        default=os.environ.get("CLOUDAI_TEST_PG_URL") or None,
        metavar="URL",
        help="a PostgreSQL server for M3/M4, M5 and the curve (databases are created and "
        "dropped on it; default: $CLOUDAI_TEST_PG_URL, else those run on SQLite only)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="run M1/M2, G1 and K with --insecure masters and plaintext simulated workers "
        "(default: TLS, a certificate per worker, the admin token), to see what TLS costs",
    )
    prof = p.add_mutually_exclusive_group()
    prof.add_argument(
        "--profile",
        action="store_true",
        help="after an M miss, rerun it briefly with the master under cProfile (M1/M2: the "
        "same load; M4: one more start on SQLite) and keep the summary (default in full runs)",
    )
    prof.add_argument("--no-profile", action="store_true", help="never profile")
    return p


def _sections(only: str) -> list[str]:
    picked = [s.strip().upper() for s in only.split(",") if s.strip()]
    bad = [s for s in picked if s not in SECTIONS]
    if bad or not picked:
        raise SystemExit(f"--only takes a comma list of {', '.join(SECTIONS)}; got {only!r}")
    return [s for s in SECTIONS if s in picked]


def _figure_order(m: Measure) -> tuple[int, int]:
    section = "FCSGM".find(m.figure[:1])
    return section, int(m.figure[1:]) if m.figure[1:].isdigit() else 0


def _redact(command: str) -> str:
    """A database URL's password does not go into the results."""
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", command)


def _docker_problem() -> str | None:
    """Why the Docker sections cannot run here, or None."""
    try:
        from bench.engine import api_client

        api = api_client()
        try:
            api.ping()
            api.inspect_image(IMAGE)
        finally:
            api.close()
    except Exception as exc:  # no engine, or no test image
        return f"Docker engine or image {IMAGE} not available: {str(exc).splitlines()[0]}"
    return None


Part = tuple[tuple[str, ...], Callable[[], list[Measure]]]


def _parts(
    section: str,
    sizes: Sizes,
    ui: Ui,
    args: argparse.Namespace,
    profiles: dict[str, str],
    curve: list[dict[str, Any]],
) -> list[Part]:
    """A section's parts: the figures each produces, and how to run it."""
    if section == "F":
        from bench.floors import run_floors

        return [(EXPECTED["F"], lambda: run_floors(sizes, ui))]
    if section == "C":
        from bench.cloudai_run import run_cloudai

        return [(EXPECTED["C"], lambda: run_cloudai(sizes, ui))]
    if section == "S":
        from bench.swarm import run_swarm

        return [(EXPECTED["S"], lambda: run_swarm(sizes, ui))]
    secure = not args.insecure
    if section == "K":
        from bench.m5 import run_fleet_scale

        return [(EXPECTED["K"], lambda: run_fleet_scale(sizes, ui, args.pg_url, curve, secure))]
    from bench.grpcfloor import run_grpc_floor
    from bench.scale import run_master_scale
    from bench.store_scale import run_store_scale

    keep = profiles if args.profile or (sizes.mode == "full" and not args.no_profile) else None
    return [
        (("M1", "M2"), lambda: run_master_scale(sizes, ui, keep, secure)),
        (("G1",), lambda: run_grpc_floor(sizes, ui, secure)),
        (("M3", "M4"), lambda: run_store_scale(sizes, ui, args.pg_url, keep)),
    ]


def _draw(
    curve: list[dict[str, Any]], args: argparse.Namespace, stamp: str, errors: dict[str, str]
) -> str:
    """The scaling curve's PNG next to the results (and to docs/ with --docs); its name."""
    from bench.curve import draw_curve

    png: pathlib.Path = args.out / f"{stamp}-scaling.png"
    try:
        security = "--insecure" if args.insecure else "TLS, a certificate per worker"
        draw_curve(curve, png, f"cloudai master, heartbeats only, {security} ({stamp})")
    except ImportError as exc:  # matplotlib is the bench extra's
        errors["curve"] = f"no PNG: {exc} (pip install -e .[bench])"
        return ""
    if args.docs:
        shutil.copy(png, DOCS_PNG)
    return png.name


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["chaos"]:  # the soak is its own command (bench/chaos.py)
        from bench.chaos import main as chaos

        return chaos(argv[1:])
    args = build_parser().parse_args(argv)
    sizes = sizes_for(args.quick, args.tiny)
    sections = _sections(args.only)
    console = Console()
    started = dt.datetime.now().astimezone()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    t0 = time.monotonic()
    info = machine.describe(args.pg_url)
    measures: list[Measure] = []
    errors: dict[str, str] = {}
    profiles: dict[str, str] = {}
    curve: list[dict[str, Any]] = []
    docker_problem = _docker_problem() if {"F", "C", "S"} & set(sections) else None
    with Ui() as ui:
        for section in sections:
            if section in "FCS" and docker_problem:
                measures += [missing(f, f, "", "", docker_problem) for f in EXPECTED[section]]
                continue
            for figures, run_part in _parts(section, sizes, ui, args, profiles, curve):
                try:
                    measures += run_part()
                except Exception as exc:  # one broken part must not lose the others' figures
                    why = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                    errors[",".join(figures)] = why
                    ui.log(f"section {section} failed:\n{traceback.format_exc()}", markup=False)
                    measures += [missing(f, f, "", "", why) for f in figures]
    measures.sort(key=_figure_order)  # stable: rows keep their order within a figure
    judge(measures)
    compare_to_floor(measures)
    print_table(measures, console)
    run = {
        "started": started.isoformat(timespec="seconds"),
        "command": _redact(shlex.join(["python", "-m", "bench", *(argv or sys.argv[1:])])),
        "mode": sizes.mode,
        "sizes": sizes.__dict__,
        "sections": sections,
        "duration_s": round(time.monotonic() - t0, 1),
        "machine": info,
        "load_at_end": machine.load(),
        "source_at_end": machine.source_state(),
        "errors": errors,
        "profiles": profiles,
        "curve": curve,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    if curve:
        run["curve_png"] = _draw(curve, args, stamp, errors)
    json_path, md_path = args.out / f"{stamp}.json", args.out / f"{stamp}.md"
    write_json(json_path, run, measures)
    write_md(md_path, run, measures)
    console.print(f"wrote {json_path} and {md_path} ({run['duration_s']:.0f} s)")
    return 1 if errors else 0
