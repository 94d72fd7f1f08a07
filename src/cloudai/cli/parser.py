"""`cloudai`'s argument parser, one command group per module (parse_*.py), and the rule
that lets `task run` take its options before or after the command."""

from __future__ import annotations

import argparse
import functools

from cloudai import __version__
from cloudai.cli.options import Parser, _client_options
from cloudai.cli.parse_admin import add_admin_commands
from cloudai.cli.parse_servers import add_server_commands
from cloudai.cli.parse_tasks import add_task_commands

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="cloudai",
        description="Run containers across a cluster of machines; watch and cancel them.",
    )
    p.add_argument("--version", action="version", version=f"cloudai {__version__}")
    _client_options(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    add_server_commands(sub)
    add_admin_commands(sub)
    add_task_commands(sub)
    return p


def _run_options(parser: argparse.ArgumentParser) -> tuple[frozenset[str], frozenset[str]]:
    """The option strings of `task run`, as its parser knows them: those that take a value,
    and those that do not (`-h`)."""
    for name in ("task", "run"):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    valued = [a for a in parser._actions if a.option_strings and a.nargs != 0]
    bare = [a for a in parser._actions if a.option_strings and a.nargs == 0]
    return (
        frozenset(o for a in valued for o in a.option_strings),
        frozenset(o for a in bare for o in a.option_strings),
    )


@functools.cache
def _default_run_options() -> tuple[frozenset[str], frozenset[str]]:
    return _run_options(build_parser())


def _split_run(argv: list[str], parser: argparse.ArgumentParser | None = None) -> list[str]:
    """Let `task run` take its options before or after the command: options its parser knows
    are moved before a `--`, everything else (IMAGE, CMD, ARG...) after it, in order."""
    try:
        start = next(i for i in range(len(argv) - 1) if argv[i : i + 2] == ["task", "run"]) + 2
    except StopIteration:
        return argv
    valued, bare = _default_run_options() if parser is None else _run_options(parser)
    options: list[str] = []
    positional: list[str] = []
    rest = argv[start:]
    i = 0
    while i < len(rest):
        tok = rest[i]
        name = tok.split("=", 1)[0]
        if tok == "--":
            positional.extend(rest[i + 1 :])
            break
        if tok in bare:
            options.append(tok)
        elif name in valued:
            if "=" in tok:
                options.append(tok)
            else:
                options.extend(rest[i : i + 2])
                i += 1
        else:
            positional.append(tok)
        i += 1
    return argv[:start] + options + ["--", *positional]
