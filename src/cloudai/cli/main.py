"""`cloudai`: the one console entry point. The CLI edge of error translation lives here:
a CloudAIError becomes one line on stderr and its exit code; nothing prints a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from cloudai.cli import commands, secure
from cloudai.cli.dispatch import (
    _LOCAL_COMMANDS,
    _SERVER_COMMANDS,
    _shell_dispatcher,
    client_dispatch,
)
from cloudai.cli.options import DEFAULT_LS_LIMIT, DEFAULT_PEER_PORT
from cloudai.cli.parser import _split_run, build_parser
from cloudai.cli.render import Renderer
from cloudai.cli.serve import _run_server
from cloudai.client import Client, Credentials
from cloudai.config import home
from cloudai.errors import CloudAIError

__all__ = ["DEFAULT_LS_LIMIT", "DEFAULT_PEER_PORT", "build_parser", "client_dispatch", "main"]


def _local(args: argparse.Namespace, out: Renderer) -> int:
    if args.certs_command == "init":
        return secure.certs_init(home(), out, args.san)
    return secure.certs_worker(home(), out, args.worker_id, args.out)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(_split_run(argv, parser))
    out = Renderer(getattr(args, "output", "text") or "text")
    try:
        if args.command in _SERVER_COMMANDS and getattr(args, "action", None) != "rm":
            return _run_server(args)
        if args.command in _LOCAL_COMMANDS:
            return _local(args, out)
        with Client(args.master, credentials=Credentials.from_env(args.token)) as client:
            if args.command == "shell":
                from cloudai.cli.shell import run_shell

                client.ensure_reachable()
                return run_shell(client, out, _shell_dispatcher(parser, client, out))
            return client_dispatch(args, client, out)
    except CloudAIError as exc:
        out.error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the CLI edge: a bug is one line too, never a traceback
        out.error(commands.unexpected(exc))
        return CloudAIError.exit_code


def entry() -> None:
    logging.getLogger("grpc").setLevel(logging.ERROR)
    sys.exit(main())


if __name__ == "__main__":
    entry()
