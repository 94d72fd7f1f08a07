"""Container runtimes: the driver verbs (start, wait, stop, destroy, list, logs)."""

from cloudai.core.hardening import ContainerPolicy
from cloudai.runtime.base import Exit, Handle, Runtime

__all__ = ["Exit", "Handle", "Runtime", "open_runtime"]


def open_runtime(
    name: str, worker_id: str, state_dir: str, policy: ContainerPolicy | None = None
) -> Runtime:
    """The runtime called `name` ("docker" or "process"). `policy` hardens Docker containers;
    the process runtime has no isolation to apply it to (docs/containers.md)."""
    if name == "docker":
        from cloudai.runtime.docker import DockerRuntime

        return DockerRuntime(worker_id, policy)
    if name == "process":
        from cloudai.runtime.process import ProcessRuntime

        return ProcessRuntime(worker_id, state_dir)
    from cloudai.core.limits import quote
    from cloudai.errors import InvalidArgument

    raise InvalidArgument(f"unknown runtime {quote(name)}: use docker or process")
