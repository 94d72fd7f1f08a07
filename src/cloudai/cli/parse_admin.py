"""The parser of the cluster's admin commands: certs, users, join tokens, workers."""

from __future__ import annotations

from typing import Any

from cloudai.cli import secure
from cloudai.cli.options import _checked, _client_options

__all__ = ["add_admin_commands"]


def add_admin_commands(sub: Any) -> None:
    """certs, user, join-token, whoami, shell, register, workers, drain, undrain."""
    ce = sub.add_parser("certs", help="the cluster PKI under $CLOUDAI_HOME/pki")
    csub = ce.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    ci = csub.add_parser(
        "init",
        help="create the cluster CA, the master's certificate and the first admin's token",
    )
    ci.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name or IP address for the master's certificate (repeatable)",
    )
    ci.add_argument("-o", "--output", choices=["text", "json"], default="text")
    cw = csub.add_parser("worker", help="issue the certificate of worker ID (needs the CA key)")
    cw.add_argument("worker_id", metavar="ID")
    cw.add_argument(
        "--out", default=None, metavar="DIR", help="write here (default: $CLOUDAI_HOME/pki)"
    )
    cw.add_argument("-o", "--output", choices=["text", "json"], default="text")

    us = sub.add_parser("user", help="users and their tokens (admin)")
    usub = us.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    ua = usub.add_parser("add", help="add a user; prints its token once")
    ua.add_argument("name", metavar="NAME")
    ua.add_argument("--admin", action="store_true", help="may act on every task and worker")
    _client_options(ua, top=False)
    ul = usub.add_parser("ls", help="list users")
    _client_options(ul, top=False)
    ur = usub.add_parser("rm", help="remove a user: its token stops working at once")
    ur.add_argument("name", metavar="NAME")
    _client_options(ur, top=False)

    jt = sub.add_parser(
        "join-token", help="a one-time token for a new worker machine to join (admin)"
    )
    jt.add_argument(
        "--ttl",
        type=_checked(secure.parse_duration, "--ttl"),
        default=3600.0,
        help="valid for, e.g. 90s, 15m, 1h, 2d (default: 1h)",
    )
    _client_options(jt, top=False)

    wh = sub.add_parser("whoami", help="the user your token stands for")
    _client_options(wh, top=False)

    s = sub.add_parser("shell", help="the interactive master> prompt")
    _client_options(s, top=False)

    r = sub.add_parser("register", help="register a worker by address (ManualRegisterWorker)")
    r.add_argument("worker_id", metavar="ID")
    r.add_argument("address", metavar="HOST:PORT")
    _client_options(r, top=False)

    ws = sub.add_parser("workers", help="list workers: state, capacity, allocated, available")
    _client_options(ws, top=False)

    dr = sub.add_parser("drain", help="stop placing new tasks on a worker (its tasks go on)")
    dr.add_argument("worker_id", metavar="WORKER")
    dr.add_argument(
        "--cancel", action="store_true", help="also cancel its tasks (asks first; --yes skips)"
    )
    dr.add_argument("-y", "--yes", action="store_true", help="with --cancel: do not ask")
    dr.add_argument("--reason", default="", metavar="TEXT", help="with --cancel: why")
    _client_options(dr, top=False)
    ud = sub.add_parser("undrain", help="let a drained worker take new tasks again")
    ud.add_argument("worker_id", metavar="WORKER")
    _client_options(ud, top=False)
