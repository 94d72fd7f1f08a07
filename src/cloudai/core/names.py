"""Names and references a user or a peer gives, each with its check: images, worker IDs,
addresses, task IDs, stop signals. Pure: no I/O."""

from __future__ import annotations

import re
import secrets
import time

from cloudai.core.limits import (
    ADDRESS_MAX,
    IMAGE_MAX,
    quote,
)

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "STOP_SIGNALS",
    "new_task_id",
    "normalize_signal",
    "validate_address",
    "validate_image",
    "validate_worker_id",
]

DEFAULT_GRACE_SECONDS = 10.0
# The stop signals a task may name, with their numbers on Linux (where every task runs).
_SIGNAL_NUMBERS = {
    "SIGTERM": 15,
    "SIGINT": 2,
    "SIGQUIT": 3,
    "SIGHUP": 1,
    "SIGUSR1": 10,
    "SIGUSR2": 12,
    "SIGKILL": 9,
}
STOP_SIGNALS = frozenset(_SIGNAL_NUMBERS)


def _signal_problem(text: str) -> str:
    accepted = ", ".join(f"{name[3:]} ({number})" for name, number in _SIGNAL_NUMBERS.items())
    return (
        f"unknown stop signal {text[:32]!r}: use one of {accepted}, with or without SIG, "
        "in any case, or its number"
    )


def normalize_signal(text: str) -> str:
    """A stop signal as the user wrote it (`TERM`, `term`, `SIGTERM`, `15`) as its one name
    (`SIGTERM`); "" stays "" (not given). ValueError names the accepted signals."""
    name = text.strip().upper()
    if not name:
        return ""
    if name.isdigit():
        name = next((n for n, number in _SIGNAL_NUMBERS.items() if str(number) == name), name)
    elif not name.startswith("SIG"):
        name = "SIG" + name
    if name not in STOP_SIGNALS:
        raise ValueError(_signal_problem(text))
    return name


# Docker's reference grammar (distribution/reference), anchored.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
_IMAGE_RE = re.compile(rf"^{_NAME}(?::{_TAG})?(?:@{_DIGEST})?$")
_WORKER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOST_RE = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]")


def validate_image(image: str) -> str | None:
    """None when `image` is a valid Docker image reference, else the problem."""
    if not image:
        return "image is required"
    if len(image) > IMAGE_MAX:
        return f"invalid image reference {quote(image)}: longer than {IMAGE_MAX} characters"
    if not _IMAGE_RE.fullmatch(image):
        return f"invalid image reference {quote(image)}"
    return None


def validate_worker_id(worker_id: str) -> str | None:
    if not _WORKER_ID_RE.fullmatch(worker_id or ""):
        return (
            f"invalid worker id {quote(worker_id)}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return None


def validate_address(address: str) -> str | None:
    """None when `address` is HOST:PORT with a port in 1..65535."""
    host, sep, port = (address or "").rpartition(":")
    if (
        len(address) > ADDRESS_MAX
        or not sep
        or not _HOST_RE.fullmatch(host)
        or not (port.isascii() and port.isdigit())
        or not 0 < int(port) < 65536
    ):
        return f"invalid address {quote(address)}: expected HOST:PORT"
    return None


def new_task_id(now: float | None = None) -> str:
    """`task-<unix seconds>-<random>`: readable like the spec's, unique under concurrency."""
    seconds = int(time.time() if now is None else now)
    return f"task-{seconds}-{secrets.token_hex(4)}"
