"""The CLI's shared option types and option groups (client, metrics, logs, TLS)."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import Any, NoReturn

from cloudai.cli.render import one_line
from cloudai.core.limits import quote
from cloudai.core.models import (
    STOP_SIGNALS,
    normalize_signal,
    validate_worker_id,
)

__all__ = ["DEFAULT_LS_LIMIT", "DEFAULT_PEER_PORT", "Parser"]

DEFAULT_PEER_PORT = 50053
DEFAULT_LS_LIMIT = 100  # `task ls` shows the newest this many unless told otherwise


def _client_options(parser: argparse.ArgumentParser, top: bool) -> None:
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    parser.add_argument(
        "--master",
        metavar="HOST:PORT",
        default=default(None),
        help="master address (default: $CLOUDAI_MASTER, else localhost:50051)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=["text", "json"],
        default=default("text"),
        help="output format (default: text)",
    )
    parser.add_argument(
        "--token",
        default=default(None),
        help="user token (default: $CLOUDAI_TOKEN, else $CLOUDAI_HOME/token); the CA comes "
        "from $CLOUDAI_CA, else $CLOUDAI_HOME/pki/ca.crt",
    )


def _number(kind: type, name: str, minimum: float = 0.0, maximum: float = math.inf):  # type: ignore[no-untyped-def]
    def parse(text: str) -> float:
        try:
            value: float = kind(text)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{name} must be {noun}, got {quote(text)}") from None
        if not math.isfinite(value) or value < minimum:  # NaN, infinity or below the minimum
            raise argparse.ArgumentTypeError(
                f"{name} must be at least {minimum:.15g}, got {quote(text)}"
                if math.isfinite(value)
                else f"{name} must be a finite number, got {quote(text)}"
            )
        if value > maximum:
            raise argparse.ArgumentTypeError(
                f"{name} must be at most {maximum:.15g}, got {quote(text)}"
            )
        return value

    return parse


def _checked(fn, name: str):  # type: ignore[no-untyped-def]
    """An argparse type from a core parser that raises ValueError with the reason."""

    def parse(text: str) -> Any:
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{name}: {exc}") from None

    return parse


_SIGNALS_HELP = "TERM, term, SIGTERM and 15 are the same; " + ", ".join(
    sorted(n.removeprefix("SIG") for n in STOP_SIGNALS)
)


def _stop_signal(text: str) -> str:
    try:
        return normalize_signal(text)
    except ValueError as exc:  # names the accepted signals
        raise argparse.ArgumentTypeError(str(exc)) from None


def _worker_check(args: argparse.Namespace) -> str | None:
    """`worker --id ID ...` runs a worker; `worker rm ID` removes one."""
    if args.action == "rm":
        if args.worker_id:
            return "worker rm takes the worker's ID, not --id: cloudai worker rm ID"
        return None if args.rm_id else "worker rm needs the worker's ID: cloudai worker rm ID"
    if args.rm_id is not None:
        return f"unrecognized arguments: {args.rm_id}"
    return None if args.worker_id else "the following arguments are required: --id"


def _worker_id(text: str) -> str:
    """--id: it names the worker's state directory, so it is checked before anything else."""
    if problem := validate_worker_id(text):
        raise argparse.ArgumentTypeError(problem)
    return text


def _metrics_option(parser: argparse.ArgumentParser, default: str, whose: str = "") -> None:
    parser.add_argument(
        "--metrics-listen",
        default=None,
        metavar="ADDR",
        help=f"where {whose}Prometheus /metrics is served (default: {default}; off: none)",
    )


def _log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="log format (default: text)"
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("CLOUDAI_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )


def _insecure_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext gRPC with no authentication: anyone who reaches the port can run "
        "containers. For development only",
    )


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `cloudai task run: error: ... (see --help)`, exit 2.

    Options must be spelled out (no `--work` for `--worker`): `task run` moves the options it
    knows out of the command, and an abbreviation would silently become part of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        # check(namespace) -> a usage error or None, once this (sub)command's arguments parsed
        self._check: Callable[[argparse.Namespace], str | None] | None = kwargs.pop("check", None)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        parsed, extras = super().parse_known_args(*args, **kwargs)
        if self._check is not None and (problem := self._check(parsed)) is not None:
            self.error(problem)
        return parsed, extras

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # argparse (before Python 3.13) drops a lone "--" given as an option's value
        # (`--name=--`) and leaves the option an empty list: take the value as written.
        if action.nargs is None and action.option_strings and arg_strings == ["--"]:
            return self._get_value(action, "--")
        return super()._get_values(action, arg_strings)

    def error(self, message: str) -> NoReturn:
        # argparse quotes the user's words raw: escape control characters (a newline or a
        # terminal escape in argv) and keep it short, so the error stays one plain line.
        message = one_line(message[:500]) + ("…" if len(message) > 500 else "")
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
