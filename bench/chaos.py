"""`python -m bench chaos`: the chaos soak of docs/reliability.md. A real secure cluster (a
master and 3 Docker workers as processes) under a steady load, faults injected at random, the
invariants checked every 10 s; a summary printed and written to bench/results/."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

from bench import machine
from bench.chaos_run import FAULTS, Settings, Soak
from bench.plan import IMAGE
from bench.report import RESULTS
from tests.invariants import read_store

__all__ = ["main"]

ENDED = ("completed", "failed", "cancelled")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench chaos",
        description="The chaos soak: a master and 3 Docker workers (real processes, TLS and "
        "tokens) under a steady load of submits, cancels and completions, while faults are "
        f"injected at random ({', '.join(FAULTS)}); the invariants of tests/invariants.py "
        "are checked every 10 s. Exit status 1 when any invariant was violated (or the soak "
        "itself broke).",
    )
    p.add_argument("--minutes", type=float, default=30.0, help="how long (default 30; 2: short)")
    p.add_argument("--seed", type=int, default=None, help="for the load and the faults")
    p.add_argument(
        "--fault-gap",
        type=float,
        default=20.0,
        metavar="S",
        help="mean seconds between faults (default 20)",
    )
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=RESULTS,
        metavar="DIR",
        help="where chaos-<timestamp>.json and .md go (default: bench/results)",
    )
    return p


def _docker() -> Any:
    import docker

    client = docker.from_env()
    client.images.get(IMAGE)  # raises: the test image is needed (scripts/test.sh builds it)
    return client


def _tasks_by_status(db_url: str, acked: set[str]) -> tuple[Counter[str], Counter[str]]:
    """The acknowledged tasks by status, and the failed ones by reason's first words."""
    store_tasks, _ = read_store(db_url)
    statuses = Counter(t.status.value for t in store_tasks.values() if t.task_id in acked)
    from sqlalchemy import create_engine

    from cloudai.store import normalize_url, tasks

    reasons: Counter[str] = Counter()
    engine = create_engine(normalize_url(db_url))
    try:
        with engine.connect() as conn:
            for t in tasks.list_tasks(conn):
                if t.status.value == "failed" and t.task_id in acked:
                    why = " ".join(t.reason.split()[:3]) or f"exit code {t.exit_code}"
                    reasons[why] += 1
    finally:
        engine.dispose()
    return statuses, reasons


def run_soak(settings: Settings, say: Any) -> dict[str, Any]:
    docker = _docker()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="cloudai-chaos-"))
    soak = Soak(settings, tmp, docker, say)
    try:
        soak.start()
        soak.note(f"cluster up: workers {', '.join(soak.worker_ids)}; {settings.seconds:g}s to go")
        result = _drive(soak, settings, say)
        soak.note("done; stopping the cluster")
        return result
    except BaseException:
        say((soak.c.logs() if soak.c else "")[-6000:])
        raise
    finally:
        soak.close()
        docker.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _drive(soak: Soak, s: Settings, say: Any) -> dict[str, Any]:
    judge = soak.judge()
    threads = [
        threading.Thread(target=soak.guarded(f), name=n, daemon=True)
        for f, n in (
            (soak.load_loop, "load"),
            (soak.cancel_loop, "cancels"),
            (soak.fault_loop, "faults"),
        )
    ]
    for t in threads:
        t.start()
    t0 = soak.t0
    end = time.monotonic() + s.seconds
    while time.monotonic() < end:
        for v in judge.check(t0):
            soak.note(f"VIOLATION {v}")
        store_tasks, _ = read_store(soak.cluster.db_url)
        soak.forget_finished({t for t, v in store_tasks.items() if v.status.value in ENDED})
        time.sleep(max(0.0, min(s.check_every, end - time.monotonic())))
    soak.note(f"load and faults stop; faults so far: {soak.summary_of_faults()}")
    soak.stop.set()
    for t in threads:
        t.join(120)
    _heal(soak)
    drained = _drain(soak, timeout=120)
    soak.note(f"tasks drained ({len(drained)} unfinished); the final check")
    # The final check: every fault healed, nothing excused; what is still wrong after 60 s
    # (four reconciliation intervals) counts.
    soak.faults.clear()
    judge.grace = 60.0
    for v in judge.check(t0):
        soak.note(f"VIOLATION (final check) {v}")
    acked = set(soak.acknowledged())
    statuses, reasons = _tasks_by_status(soak.cluster.db_url, acked)
    return {
        "faults": {k: soak.tally.faults.get(k, 0) for k in FAULTS},
        "tasks": {
            "acknowledged": len(acked),
            "ended": sum(statuses[k] for k in ENDED),
            "by_status": dict(sorted(statuses.items())),
            "failed_reasons": dict(reasons.most_common(8)),
            "unfinished_at_end": sorted(drained),
            "submits_refused": soak.tally.submit_errors,
            "cancels_sent": soak.tally.cancels,
            "cancels_refused": soak.tally.cancel_errors,
        },
        "checks": judge.checks,
        "excused_while_a_fault_lasted": judge.excused,
        "violations": [
            {"rule": rule, "subject": subject, "at_s": at, "detail": detail}
            for (rule, subject), (at, detail) in sorted(judge.found.items(), key=lambda x: x[1])
        ],
        "broken": soak.tally.broken,
        "log": soak.tally.log,
        "workers": list(soak.worker_ids),
    }


def _heal(soak: Soak) -> None:
    """Whatever a fault left down comes back (a fault that broke half way included)."""
    c = soak.cluster
    if c.master is None or c.master.poll() is not None:
        soak.note("healing: the master is started again")
        c.master = None
        soak.restart_master()
    for w in soak.worker_ids:
        if c.workers[w].poll() is not None:
            soak.note(f"healing: worker {w} is started again")
            soak.restart_worker(w)


def _drain(soak: Soak, timeout: float) -> set[str]:
    """Wait for every acknowledged task to end; the ones that did not."""
    acked = set(soak.acknowledged())
    deadline = time.monotonic() + timeout
    while True:
        store_tasks, _ = read_store(soak.cluster.db_url)
        left = {t for t in acked if t in store_tasks and store_tasks[t].status.value not in ENDED}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1.0)


def _write(out: pathlib.Path, run: dict[str, Any]) -> tuple[pathlib.Path, pathlib.Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"chaos-{run['stamp']}"
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(json.dumps(run, indent=1) + "\n")
    md_path.write_text(summary_md(run) + "\n")
    return json_path, md_path


def summary_md(run: dict[str, Any]) -> str:
    tasks, m = run["tasks"], run["machine"]
    faults = ", ".join(f"{k} {n}" for k, n in run["faults"].items())
    statuses = ", ".join(f"{k} {n}" for k, n in tasks["by_status"].items()) or "none"
    reasons = "; ".join(f"{k}: {n}" for k, n in tasks["failed_reasons"].items()) or "none"
    lines = [
        f"# cloudai chaos soak, {run['started']}",
        "",
        f"`{run['command']}`: {run['duration_s']:.0f} s in all ({run['seconds']:g} s of load "
        f"and faults), seed {run['seed']}; commit {m.get('source', {}).get('commit')}.",
        f"Machine: {m.get('cores')} cores, load average {m.get('load_at_start')} at start, "
        f"{run['load_at_end']} at end (shared with other work).",
        "",
        f"- faults injected ({sum(run['faults'].values())}): {faults}",
        f"- tasks: {tasks['acknowledged']} acknowledged, {tasks['ended']} ended ({statuses}); "
        f"failed by reason: {reasons}; unfinished at the end: {len(tasks['unfinished_at_end'])}",
        f"- submits refused while the master was down: {tasks['submits_refused']}; cancels "
        f"sent {tasks['cancels_sent']}, refused {tasks['cancels_refused']}",
        f"- invariant checks: {run['checks']} (every 10 s, and a final one); convergence "
        f"violations excused while their fault lasted: {run['excused_while_a_fault_lasted']}",
        f"- **invariant violations: {len(run['violations'])}**",
    ]
    for b in run["broken"]:
        lines.append(f"- **the soak itself broke**: {b}")
    for v in run["violations"]:
        lines.append(f"  - at {v['at_s']} s [{v['rule']}] {v['subject']}: {v['detail']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.minutes <= 0 or args.fault_gap <= 0:
        raise SystemExit("--minutes and --fault-gap take a positive number")
    seed = args.seed if args.seed is not None else int(time.time())
    settings = Settings(seconds=args.minutes * 60, seed=seed, fault_gap=args.fault_gap)
    started = dt.datetime.now().astimezone()
    t0 = time.monotonic()
    info = machine.describe(None)

    def say(text: str) -> None:
        print(text, flush=True)

    result = run_soak(settings, say)
    run = {
        "started": started.isoformat(timespec="seconds"),
        "stamp": started.strftime("%Y%m%d-%H%M%S"),
        "command": shlex.join(["python", "-m", "bench", "chaos", *argv]),
        "seconds": settings.seconds,
        "seed": seed,
        "settings": settings.__dict__,
        "duration_s": round(time.monotonic() - t0, 1),
        "machine": info,
        "load_at_end": machine.load(),
        "source_at_end": machine.source_state(),
        **result,
    }
    json_path, md_path = _write(args.out, run)
    print(summary_md(run))
    print(f"wrote {json_path} and {md_path}")
    return 1 if run["violations"] or run["broken"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
