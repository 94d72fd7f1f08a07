"""`task run`'s options for time limits, retries, priority and preemption, and the master's
`--max-task-time`: argparse definitions kept out of cli/main.py, parsed with core/policy.py."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cloudai.core.policy import (
    PRIORITY_DEFAULT,
    PRIORITY_MAX,
    RETRIES_MAX,
    RunPolicy,
    parse_duration,
)

__all__ = ["add_master_options", "add_run_options", "duration", "run_policy"]

RETRY_ON = ("failure", "timeout")


def duration(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{name}: {exc}") from None

    return parse


def _whole(name: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be a whole number, got {text[:32]!r}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{name} must be between {low} and {high}, got {value}"
            )
        return value

    return parse


def add_run_options(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--timeout",
        type=duration("--timeout"),
        default=None,
        metavar="DURATION",
        help="time limit once started (90s, 2h, 1h30m): then it is stopped like a cancel and "
        "ends failed, reason 'deadline exceeded' (default: the master's --max-task-time, if set)",
    )
    run.add_argument(
        "--retries",
        type=_whole("--retries", 0, RETRIES_MAX),
        default=0,
        metavar="N",
        help="run it again after a failure (non-zero exit, OOM, worker lost, preemption), up to "
        "N more times, with exponential backoff (1s, 2s, 4s, ...); never after a cancel (0)",
    )
    run.add_argument(
        "--retry-on",
        choices=RETRY_ON,
        default="failure",
        help="'timeout': a time limit that ran out counts as a failure to retry too "
        "(default: failure only)",
    )
    run.add_argument(
        "--priority",
        type=_whole("--priority", 0, PRIORITY_MAX),
        default=PRIORITY_DEFAULT,
        metavar="N",
        help=f"0-{PRIORITY_MAX}: the queue places higher first; then the user with the fewest "
        f"running tasks; then the oldest ({PRIORITY_DEFAULT})",
    )
    run.add_argument(
        "--preemptible",
        action="store_true",
        help="it may be stopped (its own signal and grace) to make room for a task of higher "
        "priority; with retries left it goes back to the queue",
    )


def run_policy(args: argparse.Namespace) -> RunPolicy:
    return RunPolicy(
        timeout_seconds=args.timeout,
        retries=args.retries,
        retry_on_timeout=args.retry_on == "timeout",
        priority=args.priority,
        preemptible=args.preemptible,
    )


def add_master_options(m: argparse.ArgumentParser) -> None:
    m.add_argument(
        "--max-task-time",
        type=duration("--max-task-time"),
        default=0.0,
        metavar="DURATION",
        help="the time limit of a task that names none, and the longest --timeout accepted "
        "(90s, 2h, 1d; default: no limit)",
    )
