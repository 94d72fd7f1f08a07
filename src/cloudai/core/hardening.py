"""What every task container gets, and what a worker's admin (never a task) may relax.

The one place for these rules: the Docker runtime applies them, the worker refuses assignments
by them, the CLI checks its flags against them, and the tests compute their expectations from
them. docs/containers.md explains each choice. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cloudai.core.resources import Resources

__all__ = [
    "CAPABILITIES",
    "DEFAULT_CAPS",
    "DEFAULT_MAX_PIDS_LIMIT",
    "DEFAULT_PIDS_LIMIT",
    "DOCKER_HUB",
    "MIN_CPU_LIMIT",
    "MIN_MEM_LIMIT_GB",
    "PIDS_LIMIT_CEILING",
    "ContainerPolicy",
    "cap_mask",
    "container_limits",
    "image_registry",
    "normalize_cap",
    "parse_registries",
]

# Linux capability numbers (include/uapi/linux/capability.h): bit N of /proc/PID/status CapEff.
CAPABILITIES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "CHOWN",
            "DAC_OVERRIDE",
            "DAC_READ_SEARCH",
            "FOWNER",
            "FSETID",
            "KILL",
            "SETGID",
            "SETUID",
            "SETPCAP",
            "LINUX_IMMUTABLE",
            "NET_BIND_SERVICE",
            "NET_BROADCAST",
            "NET_ADMIN",
            "NET_RAW",
            "IPC_LOCK",
            "IPC_OWNER",
            "SYS_MODULE",
            "SYS_RAWIO",
            "SYS_CHROOT",
            "SYS_PTRACE",
            "SYS_PACCT",
            "SYS_ADMIN",
            "SYS_BOOT",
            "SYS_NICE",
            "SYS_RESOURCE",
            "SYS_TIME",
            "SYS_TTY_CONFIG",
            "MKNOD",
            "LEASE",
            "AUDIT_WRITE",
            "AUDIT_CONTROL",
            "SETFCAP",
            "MAC_OVERRIDE",
            "MAC_ADMIN",
            "SYSLOG",
            "WAKE_ALARM",
            "BLOCK_SUSPEND",
            "AUDIT_READ",
            "PERFMON",
            "BPF",
            "CHECKPOINT_RESTORE",
        )
    )
}

# Every container drops ALL capabilities, then gets back only these: what ordinary images need
# to set themselves up as root and then run as a service user. Each is limited to the
# container's own files, processes and network namespace. Docker's own default set also has
# MKNOD, NET_RAW, SETFCAP, SETPCAP, SYS_CHROOT and AUDIT_WRITE; those are dropped (why: see
# docs/containers.md). The mask of this set is 0x4fb.
DEFAULT_CAPS: tuple[str, ...] = (
    "CHOWN",  # chown files: entrypoints hand data directories to a service user
    "DAC_OVERRIDE",  # root reads and writes files whatever their mode (images assume it)
    "FOWNER",  # chmod/utime on files root does not own (tar, cp -p, package managers)
    "FSETID",  # keep setuid/setgid mode bits when copying (harmless: no-new-privileges)
    "KILL",  # signal processes of other users inside the container
    "SETGID",  # drop to a service group (su-exec, gosu, nginx, postgres)
    "SETUID",  # drop to a service user
    "NET_BIND_SERVICE",  # listen on ports below 1024 (in the container's own network)
)

DEFAULT_PIDS_LIMIT = 1024  # a task's process (and thread) limit unless it asks otherwise
DEFAULT_MAX_PIDS_LIMIT = 4096  # the most a task may ask of a worker unless its admin says
PIDS_LIMIT_CEILING = 4_194_304  # Linux's PID_MAX_LIMIT: no limit means anything above it

# Every container has a CPU and a memory limit: the task's request, never less than these.
# A request of 0 memory (or less than the floor) gets the floor, so no task is unbounded.
MIN_CPU_LIMIT = 0.01  # cores: Docker's smallest CPU quota
MIN_MEM_LIMIT_GB = 64 / 1024  # 64 MiB

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io"})
_REGISTRY_CHARS = re.compile(r"^[a-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9a-f:]+\](:[0-9]{1,5})?$")


def normalize_cap(text: str) -> str:
    """`net_raw`, `CAP_NET_RAW` -> `NET_RAW`; ValueError for an unknown name (or ALL)."""
    name = text.strip().upper().removeprefix("CAP_")
    if name not in CAPABILITIES:
        raise ValueError(
            f"unknown capability {text!r}: name one, such as NET_RAW or SYS_PTRACE"
            + (" (ALL is not accepted: name each capability)" if name == "ALL" else "")
        )
    return name


def cap_mask(names: Iterable[str]) -> int:
    """The bitmask the kernel shows (CapEff, CapBnd) for these capabilities."""
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES[normalize_cap(name)]
    return mask


def container_limits(resources: Resources) -> tuple[float, int]:
    """(CPU cores, memory bytes) a container is limited to: the request, at least the floors."""
    cpu = max(resources.cpu, MIN_CPU_LIMIT)
    mem_gb = max(resources.mem_gb, MIN_MEM_LIMIT_GB)
    return cpu, int(mem_gb * 1024**3)


def image_registry(image: str) -> str:
    """The registry an image reference pulls from, by Docker's rule: the first path component
    is a registry host when it has a `.` or a `:port`, is `localhost`, or has upper case;
    otherwise (`busybox`, `library/busybox`, `cloudai-test/busybox`) it is Docker Hub."""
    name = image.split("@", 1)[0]
    first, slash, _ = name.partition("/")
    if not slash or not (
        "." in first or ":" in first or first == "localhost" or first != first.lower()
    ):
        return DOCKER_HUB
    host = first.lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def parse_registries(text: str) -> tuple[str, ...]:
    """`docker.io, registry.local:5000` -> ("docker.io", "registry.local:5000"). Each entry
    must be what Docker counts as a registry host (else `name/image` would mean Docker Hub):
    ValueError names the first that is not."""
    out: list[str] = []
    for raw in text.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        entry = DOCKER_HUB if entry in _HUB_ALIASES else entry
        if not _REGISTRY_CHARS.fullmatch(entry) or image_registry(f"{entry}/x") != entry:
            raise ValueError(
                f"invalid registry {raw.strip()!r}: expected a host such as docker.io, "
                "ghcr.io, localhost:5000 or registry.local:5000"
            )
        if entry not in out:
            out.append(entry)
    if not out:
        raise ValueError("no registry given: list at least one, e.g. docker.io")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ContainerPolicy:
    """One worker's container rules: the defaults plus what its admin allowed. A task cannot
    change these; a task that asks for more than they allow is refused."""

    extra_caps: tuple[str, ...] = ()  # added to DEFAULT_CAPS (--allow-cap)
    allowed_registries: tuple[str, ...] = ()  # empty: any registry (--allowed-registries)
    max_pids_limit: int = DEFAULT_MAX_PIDS_LIMIT  # --max-pids-limit

    @property
    def caps(self) -> tuple[str, ...]:
        """The capabilities every container of this worker keeps, in kernel order."""
        names = {*DEFAULT_CAPS, *(normalize_cap(c) for c in self.extra_caps)}
        return tuple(sorted(names, key=CAPABILITIES.__getitem__))

    def pids_limit(self, requested: int) -> int:
        """The PIDs limit of a task that asked for `requested` (0: the default, never above
        this worker's maximum)."""
        return requested or min(DEFAULT_PIDS_LIMIT, self.max_pids_limit)

    def refusal(self, image: str, pids_limit: int) -> str | None:
        """Why this worker will not run a task with this image and PIDs limit; None if it will."""
        if pids_limit > self.max_pids_limit:
            return (
                f"pids limit {pids_limit} is above this worker's maximum of "
                f"{self.max_pids_limit} (--max-pids-limit)"
            )
        registry = image_registry(image)
        if self.allowed_registries and registry not in self.allowed_registries:
            return (
                f"image {image} is from registry {registry}, which this worker does not allow "
                f"(allowed: {', '.join(self.allowed_registries)})"
            )
        return None

    def problems(self) -> list[str]:
        out = []
        if not 1 <= self.max_pids_limit <= PIDS_LIMIT_CEILING:
            out.append(
                f"max pids limit must be between 1 and {PIDS_LIMIT_CEILING}, "
                f"got {self.max_pids_limit}"
            )
        for cap in self.extra_caps:
            try:
                normalize_cap(cap)
            except ValueError as exc:
                out.append(str(exc))
        return out
