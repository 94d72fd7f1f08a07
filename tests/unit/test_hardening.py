"""Container hardening rules (core/hardening.py): registry matching of image names, the
capability set and its mask, PIDs limits, the limits every container gets, and the HostConfig
the Docker runtime builds from them. Pure: no engine."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from docker.types import HostConfig

from cloudai.api.v1 import types_pb2
from cloudai.cli.main import _split_run, build_parser
from cloudai.core.hardening import (
    CAPABILITIES,
    DEFAULT_CAPS,
    DEFAULT_MAX_PIDS_LIMIT,
    DEFAULT_PIDS_LIMIT,
    MIN_MEM_LIMIT_GB,
    PIDS_LIMIT_CEILING,
    ContainerPolicy,
    cap_mask,
    container_limits,
    image_registry,
    normalize_cap,
    parse_registries,
)
from cloudai.core.models import TaskSpec, validate_image
from cloudai.core.resources import Resources
from cloudai.rpc.convert import spec_from_pb, spec_to_pb
from cloudai.runtime.docker import hardened_host_config

DIGEST = "sha256:" + "0123456789abcdef" * 4

# --- image_registry: Docker's rule for where a name pulls from --------------------------------


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("busybox", "docker.io"),
        ("busybox:1.36", "docker.io"),
        (f"busybox@{DIGEST}", "docker.io"),
        ("library/busybox", "docker.io"),
        ("docker.io/library/busybox", "docker.io"),
        ("index.docker.io/library/busybox:latest", "docker.io"),
        ("cloudai-test/busybox:latest", "docker.io"),  # a local-only name is still Docker Hub's
        ("ghcr.io/x/y:tag", "ghcr.io"),
        (f"ghcr.io/x/y:tag@{DIGEST}", "ghcr.io"),
        ("localhost:5000/img", "localhost:5000"),
        ("localhost/img", "localhost"),
        ("registry.local:5000/team/app:v2", "registry.local:5000"),
        ("registry:5000/a/b", "registry:5000"),  # a port makes it a host, dots or not
        ("Registry/img", "registry"),  # upper case: not a Hub namespace (those are lower case)
        ("[::1]:5000/img", "[::1]:5000"),
    ],
)
def test_image_registry(image: str, registry: str) -> None:
    assert validate_image(image) is None  # only valid references reach the rule
    assert image_registry(image) == registry


def test_parse_registries_normalizes_and_dedupes() -> None:
    text = " docker.io, Registry.Local:5000,,index.docker.io ,ghcr.io,localhost"
    assert parse_registries(text) == ("docker.io", "registry.local:5000", "ghcr.io", "localhost")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("myreg", "invalid registry 'myreg'"),  # `myreg/img` is a Docker Hub namespace
        ("docker.io,team", "invalid registry 'team'"),
        ("ghcr.io/owner", "invalid registry 'ghcr.io/owner'"),
        ("https://ghcr.io", "invalid registry"),
        ("reg istry.io", "invalid registry"),
        ("", "no registry given"),
        (" , ", "no registry given"),
    ],
)
def test_parse_registries_refuses_what_is_not_a_registry_host(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_registries(text)


# --- capabilities -----------------------------------------------------------------------------


def test_capability_numbers_match_the_kernel() -> None:
    """Spot checks against include/uapi/linux/capability.h; the table is dense from 0."""
    assert sorted(CAPABILITIES.values()) == list(range(len(CAPABILITIES)))
    assert (CAPABILITIES["CHOWN"], CAPABILITIES["NET_RAW"], CAPABILITIES["SYS_ADMIN"]) == (
        0,
        13,
        21,
    )
    assert CAPABILITIES["CHECKPOINT_RESTORE"] == 40


def test_the_default_set_and_its_mask() -> None:
    assert set(DEFAULT_CAPS) == {
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "NET_BIND_SERVICE",
    }
    assert cap_mask(DEFAULT_CAPS) == 0x4FB
    dangerous = {"SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_PTRACE", "SYS_MODULE", "MKNOD"}
    assert not dangerous & set(DEFAULT_CAPS)


@pytest.mark.parametrize("text", ["NET_RAW", "net_raw", "CAP_NET_RAW", " cap_net_raw "])
def test_normalize_cap(text: str) -> None:
    assert normalize_cap(text) == "NET_RAW"


@pytest.mark.parametrize(
    ("text", "fragment"), [("ALL", "ALL is not accepted"), ("NET_RAWR", "unknown capability")]
)
def test_normalize_cap_refuses_unknown_names_and_all(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        normalize_cap(text)


def test_policy_caps_add_to_the_defaults_in_kernel_order() -> None:
    policy = ContainerPolicy(extra_caps=("sys_ptrace", "NET_RAW", "CHOWN"))
    assert policy.caps[0] == "CHOWN" and policy.caps.count("CHOWN") == 1
    assert [CAPABILITIES[c] for c in policy.caps] == sorted(CAPABILITIES[c] for c in policy.caps)
    assert cap_mask(policy.caps) == 0x4FB | 1 << 13 | 1 << 19
    assert ContainerPolicy().caps == tuple(sorted(DEFAULT_CAPS, key=CAPABILITIES.__getitem__))


# --- PIDs limits and refusals -----------------------------------------------------------------


def test_pids_limit_default_is_capped_by_the_worker_maximum() -> None:
    assert ContainerPolicy().pids_limit(0) == DEFAULT_PIDS_LIMIT == 1024
    assert ContainerPolicy().max_pids_limit == DEFAULT_MAX_PIDS_LIMIT == 4096
    assert ContainerPolicy(max_pids_limit=256).pids_limit(0) == 256
    assert ContainerPolicy(max_pids_limit=256).pids_limit(64) == 64


def test_refusals() -> None:
    open_policy = ContainerPolicy()
    assert open_policy.refusal("anything.example/x:1", 4096) is None
    assert "above this worker's maximum of 4096" in (open_policy.refusal("busybox", 4097) or "")
    locked = ContainerPolicy(allowed_registries=("registry.local:5000",))
    assert locked.refusal("registry.local:5000/app", 0) is None
    reason = locked.refusal("cloudai-test/busybox:latest", 0)
    assert reason == (
        "image cloudai-test/busybox:latest is from registry docker.io, which this worker does "
        "not allow (allowed: registry.local:5000)"
    )
    assert "\n" not in reason


def test_policy_problems() -> None:
    assert ContainerPolicy().problems() == []
    assert "max pids limit" in ContainerPolicy(max_pids_limit=0).problems()[0]
    assert "unknown capability" in ContainerPolicy(extra_caps=("BOGUS",)).problems()[0]


@pytest.mark.parametrize(
    ("pids", "ok"),
    [
        (0, True),
        (1, True),
        (PIDS_LIMIT_CEILING, True),
        (-1, False),
        (PIDS_LIMIT_CEILING + 1, False),
    ],
)
def test_spec_pids_limit_range(pids: int, ok: bool) -> None:
    problems = TaskSpec(image="busybox", pids_limit=pids).problems()
    assert (problems == []) is ok, problems


def test_pids_limit_crosses_the_wire() -> None:
    spec = TaskSpec(image="busybox", pids_limit=64)
    assert spec_from_pb(types_pb2.TaskSpec.FromString(spec_to_pb(spec).SerializeToString())) == spec


# --- limits and the HostConfig ----------------------------------------------------------------


def test_every_container_gets_cpu_and_memory_limits() -> None:
    assert container_limits(Resources(cpu=0.5, mem_gb=0.25)) == (0.5, 256 * 1024**2)
    cpu, mem = container_limits(Resources(cpu=0.0, mem_gb=0.0))
    assert cpu == 0.01 and mem == int(MIN_MEM_LIMIT_GB * 1024**3) == 64 * 1024**2


def _host_config(spec: TaskSpec, policy: ContainerPolicy) -> dict[str, Any]:
    """What the SDK sends the engine (built offline, as the runtime's create_host_config does)."""
    return dict(HostConfig(version="1.41", **hardened_host_config(spec, policy)))


def test_host_config_is_hardened() -> None:
    hc = _host_config(
        TaskSpec(image="busybox", resources=Resources(cpu=1.5, mem_gb=0)), ContainerPolicy()
    )
    assert hc.get("Privileged", False) is False  # the SDK leaves out a False
    assert hc["CapDrop"] == ["ALL"]
    assert hc["CapAdd"] == list(ContainerPolicy().caps)
    assert hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["PidsLimit"] == 1024
    assert hc["NanoCpus"] == 1_500_000_000
    assert hc["Memory"] == hc["MemorySwap"] == 64 * 1024**2
    assert hc["IpcMode"] == "private"
    assert hc["NetworkMode"] == "default"  # the engine's bridge: the container's own stack
    for absent in (
        "Binds",
        "Mounts",
        "VolumesFrom",
        "PidMode",
        "UTSMode",
        "UsernsMode",
        "Devices",
        "DeviceRequests",
        "PortBindings",
        "CgroupParent",
    ):
        assert absent not in hc, absent


def test_host_config_follows_the_policy_and_the_task() -> None:
    policy = ContainerPolicy(extra_caps=("NET_RAW",), max_pids_limit=100)
    spec = TaskSpec(image="busybox", pids_limit=64, resources=Resources(cpu=1, gpu=2))
    hc = dict(HostConfig(version="1.41", **hardened_host_config(spec, policy, ("1", "3"))))
    assert "NET_RAW" in hc["CapAdd"] and hc["PidsLimit"] == 64
    # The task's GPUs by ID (tests/unit/test_gpus.py), and no other device.
    assert [r["DeviceIDs"] for r in hc["DeviceRequests"]] == [["1", "3"]]
    assert _host_config(TaskSpec(image="busybox"), policy)["PidsLimit"] == 100


# --- the CLI ----------------------------------------------------------------------------------


def _parse(argv: list[str]) -> Any:
    return build_parser().parse_args(_split_run(argv))


def test_task_run_pids_limit_before_or_after_the_command() -> None:
    assert _parse(["task", "run", "img", "sh", "--pids-limit", "64"]).pids_limit == 64
    assert _parse(["task", "run", "--pids-limit=64", "img", "sh"]).cmd == ["sh"]
    assert _parse(["task", "run", "img"]).pids_limit == 0  # the worker's default


def test_worker_policy_flags() -> None:
    args = _parse(
        [
            "worker",
            "--id",
            "w",
            "--allow-cap",
            "net_raw",
            "--allow-cap",
            "CAP_SYS_PTRACE",
            "--allowed-registries",
            "Docker.io,registry.local:5000",
            "--max-pids-limit",
            "128",
        ]
    )
    assert args.allow_cap == ["NET_RAW", "SYS_PTRACE"]
    assert args.allowed_registries == ("docker.io", "registry.local:5000")
    assert args.max_pids_limit == 128
    defaults = _parse(["worker", "--id", "w"])
    assert (defaults.allow_cap, defaults.allowed_registries) == ([], ())
    assert defaults.max_pids_limit == DEFAULT_MAX_PIDS_LIMIT


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["task", "run", "img", "--pids-limit", "0"], "--pids-limit must be at least 1"),
        (["task", "run", "img", "--pids-limit", "1.5"], "--pids-limit must be a whole number"),
        (["worker", "--id", "w", "--allow-cap", "ALL"], "--allow-cap: unknown capability 'ALL'"),
        (["worker", "--id", "w", "--allowed-registries", "team"], "invalid registry 'team'"),
        (["worker", "--id", "w", "--max-pids-limit", "0"], "--max-pids-limit must be at least 1"),
    ],
)
def test_flag_errors_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(argv)
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


# --- what the worker says at start ------------------------------------------------------------


def _config(runtime: str, policy: ContainerPolicy) -> Any:
    from cloudai.worker.app import WorkerConfig

    return WorkerConfig("w", "m:1", "127.0.0.1:0", runtime, Resources(1, 1), "/tmp", policy=policy)


def test_worker_start_warns_that_the_process_runtime_has_no_isolation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cloudai.worker.app import _log_isolation

    caplog.set_level(logging.INFO, "cloudai.worker")
    _log_isolation(_config("process", ContainerPolicy()))
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "NO isolation" in record.getMessage()
    caplog.clear()
    _log_isolation(_config("docker", ContainerPolicy(extra_caps=("NET_RAW",))))
    (record,) = caplog.records
    assert record.levelname == "INFO" and "NET_RAW" in record.getMessage()
    assert "registries any" in record.getMessage()
