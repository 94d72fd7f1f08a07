"""From parsed arguments to the command layer (cli/commands.py), for the CLI and the shell."""

from __future__ import annotations

import argparse

from cloudai.cli import commands, secure
from cloudai.cli.parser import _split_run
from cloudai.cli.queue_options import run_policy
from cloudai.cli.render import Renderer
from cloudai.client import Client
from cloudai.errors import InvalidArgument

__all__ = ["client_dispatch"]

_SERVER_COMMANDS = {"up", "master", "worker"}
_LOCAL_COMMANDS = {"certs"}  # files under $CLOUDAI_HOME only: no master needed


def client_dispatch(args: argparse.Namespace, client: Client, out: Renderer) -> int:
    cmd = args.command
    if cmd == "workers":
        return commands.workers(client, out)
    if cmd in ("drain", "undrain"):
        return commands.drain(
            client,
            out,
            args.worker_id,
            undo=cmd == "undrain",
            cancel_tasks=getattr(args, "cancel", False),
            yes=getattr(args, "yes", False),
            reason=getattr(args, "reason", ""),
        )
    if cmd == "register":
        return commands.register(client, out, args.worker_id, args.address)
    if cmd == "worker" and args.action == "rm":
        return commands.worker_rm(client, out, args.rm_id)
    if cmd == "user":
        if args.user_command == "add":
            return secure.user_add(client, out, args.name, args.admin)
        if args.user_command == "rm":
            return secure.user_rm(client, out, args.name)
        return secure.user_ls(client, out)
    if cmd == "join-token":
        return secure.join_token(client, out, args.ttl)
    if cmd == "whoami":
        return secure.whoami(client, out)
    if cmd == "task":
        if args.task_command == "run":
            return commands.task_run(
                client,
                out,
                args.image,
                args.cmd,
                worker=args.worker,
                cpu=args.cpu,
                mem=args.mem,
                storage=args.storage,
                gpu=args.gpu,
                env=args.env,
                secret_env=args.secret_env,
                name=args.name,
                grace=args.grace,
                stop_signal=args.stop_signal,
                pids_limit=args.pids_limit,
                policy=run_policy(args),
            )
        if args.task_command == "ls":
            return commands.task_ls(
                client,
                out,
                args.status,
                args.worker,
                args.owner,
                args.cancelled_by,
                limit=0 if args.all else args.limit,
            )
        return commands.task_show(client, out, args.task_id)
    if cmd == "logs":
        return commands.logs(client, out, args.task_id, args.follow)
    if cmd == "monitor":
        return commands.monitor(client, out, args.task_id)
    if cmd == "cancel":
        return commands.cancel(
            client,
            out,
            args.task_ids,
            selection=commands.Selection(args.worker, args.status, args.owner, args.all),
            force=args.force,
            grace=args.grace,
            reason=args.reason,
            yes=args.yes,
            stop_signal=args.stop_signal,
        )
    raise InvalidArgument(f"{cmd} is not available here")


def _shell_dispatcher(parser: argparse.ArgumentParser, client: Client, out: Renderer):  # type: ignore[no-untyped-def]
    def dispatch(tokens: list[str]) -> int:
        servers = _SERVER_COMMANDS | _LOCAL_COMMANDS | {"shell"}
        if tokens and tokens[0] in servers and tokens[:2] != ["worker", "rm"]:
            raise InvalidArgument(f"{tokens[0]} is not a shell command (type help)")
        try:
            args = parser.parse_args(_split_run(tokens, parser))
        except SystemExit as exc:  # argparse printed its usage line
            return int(exc.code or 0)
        output = getattr(args, "output", "json" if out.json_mode else "text")
        return client_dispatch(args, client, Renderer(output, out.console, interactive=True))

    return dispatch
