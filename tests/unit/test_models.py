"""Typed records and their validators: TaskSpec.problems, image / worker / address checks,
task IDs and the heartbeat-lease worker states."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudai.core.models import (
    DEFAULT_GRACE_SECONDS,
    STOP_SIGNALS,
    TaskSpec,
    Worker,
    WorkerState,
    new_task_id,
    validate_address,
    validate_image,
    validate_worker_id,
    worker_state,
)
from cloudai.core.resources import Resources

DIGEST = "sha256:" + "0123456789abcdef" * 4

# --- validate_image ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "busybox:latest",
        "cloudai-test/busybox:latest",
        "registry:5000/a/b:tag",
        "localhost:5000/ns/img",
        "ghcr.io/owner/repo:v1.2.3",
        f"img@{DIGEST}",
        f"img:tag@{DIGEST}",
        "a_b__c-d.e/f---g",
        "ubuntu:22.04",
    ],
)
def test_valid_images(image: str) -> None:
    assert validate_image(image) is None


@pytest.mark.parametrize(
    "image",
    [
        "a b",
        "bad::tag",
        "Busybox",
        "library/UPPER",
        "ns/Repo:tag",
        "busybox:",
        ":latest",
        "/busybox",
        "busybox/",
        "a//b",
        "-busybox",
        "busybox:-tag",
        "img@sha256:xyz",
        "img@sha256:" + "0" * 31,  # digest too short
        "busybox:" + "t" * 129,  # tag too long
        "a" * 256,  # reference too long
        "img;rm -rf",
    ],
)
def test_invalid_images(image: str) -> None:
    err = validate_image(image)
    assert err is not None
    assert "invalid image reference" in err


def test_empty_image_is_required() -> None:
    assert validate_image("") == "image is required"


def test_uppercase_first_component_is_a_registry_host() -> None:
    # Docker's grammar (distribution/reference splitDockerDomain): an upper-case first part is
    # a registry host, so "UPPER/case" is valid; an upper-case repository name is not.
    assert validate_image("UPPER/case") is None
    assert validate_image("library/UPPER") is not None


@pytest.mark.parametrize("image", ["busybox\n", "busybox:latest\n"])
def test_image_with_trailing_newline_is_invalid(image: str) -> None:
    assert validate_image(image) is not None


# --- validate_worker_id -----------------------------------------------------------------------


@pytest.mark.parametrize("worker_id", ["w", "worker-1", "W_2.a-b", "0abc", "a" * 63])
def test_valid_worker_ids(worker_id: str) -> None:
    assert validate_worker_id(worker_id) is None


@pytest.mark.parametrize(
    "worker_id", ["", "-w", ".w", "_w", "a" * 64, "a b", "w/1", "w:1", "wörker"]
)
def test_invalid_worker_ids(worker_id: str) -> None:
    err = validate_worker_id(worker_id)
    assert err is not None
    assert "invalid worker id" in err


def test_worker_id_with_trailing_newline_is_invalid() -> None:
    assert validate_worker_id("worker-1\n") is not None


# --- validate_address -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["localhost:50051", "10.0.0.7:1", "host.example:65535", "[::1]:50052", "w1:8080"],
)
def test_valid_addresses(address: str) -> None:
    assert validate_address(address) is None


@pytest.mark.parametrize(
    "address",
    [
        "",
        "localhost",
        "localhost:",
        ":50051",
        "host:0",
        "host:65536",
        "host:99999",
        "host:-1",
        "host:+80",
        "host:http",
        "host:80 ",
    ],
)
def test_invalid_addresses(address: str) -> None:
    err = validate_address(address)
    assert err is not None
    assert "expected HOST:PORT" in err


@given(port=st.integers(min_value=1, max_value=65535))
def test_every_port_in_range_is_accepted(port: int) -> None:
    assert validate_address(f"h:{port}") is None


@given(port=st.one_of(st.integers(max_value=0), st.integers(min_value=65536)))
def test_every_port_out_of_range_is_rejected(port: int) -> None:
    assert validate_address(f"h:{port}") is not None


def test_non_ascii_port_digits_are_rejected() -> None:
    assert validate_address("host:５００５１") is not None


# --- new_task_id ------------------------------------------------------------------------------

_TASK_ID = re.compile(r"^task-(\d+)-([0-9a-f]{8})$")


def test_task_id_format_uses_the_given_time() -> None:
    match = _TASK_ID.match(new_task_id(now=1_700_000_000.9))
    assert match is not None
    assert match.group(1) == "1700000000"  # whole seconds, truncated


def test_task_id_defaults_to_now() -> None:
    import time

    before = int(time.time())
    match = _TASK_ID.match(new_task_id())
    after = int(time.time())
    assert match is not None
    assert before <= int(match.group(1)) <= after


def test_task_ids_are_unique_within_one_second() -> None:
    ids = [new_task_id(now=42.0) for _ in range(200)]
    assert all(_TASK_ID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


# --- TaskSpec ---------------------------------------------------------------------------------


def _spec(**kw: object) -> TaskSpec:
    return TaskSpec(**{"image": "busybox", **kw})  # type: ignore[arg-type]


def test_default_spec_is_valid() -> None:
    spec = _spec()
    assert spec.problems() == []
    assert spec.resources == Resources(cpu=1.0, mem_gb=0.5)
    assert spec.grace == DEFAULT_GRACE_SECONDS
    assert spec.signal == "SIGTERM"


def test_a_fully_specified_spec_is_valid() -> None:
    spec = _spec(
        image="cloudai-test/busybox:latest",
        command=("sh", "-c", "echo hi"),
        env={"A": "1", "_B2": "x y"},
        resources=Resources(cpu=0.5, mem_gb=1.0, storage_gb=2.0, gpu=1),
        name="n" * 128,
        worker_id="worker-1",
        grace_seconds=3600.0,
        stop_signal="SIGINT",
    )
    assert spec.problems() == []
    assert spec.grace == 3600.0
    assert spec.signal == "SIGINT"


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"image": ""}, "image is required"),
        ({"image": "bad::tag"}, "invalid image reference"),
        ({"resources": Resources(cpu=-1.0)}, "cpu must be a non-negative number"),
        ({"resources": Resources(cpu=1.0, mem_gb=-1.0)}, "mem must be a non-negative number"),
        ({"resources": Resources(cpu=0.0)}, "cpu must be at least 0.01 cores"),
        ({"resources": Resources(cpu=1.0, gpu=-2)}, "gpu must be a non-negative integer"),
        ({"env": {"1BAD": "x"}}, "invalid environment variable name '1BAD'"),
        ({"env": {"A-B": "x"}}, "invalid environment variable name 'A-B'"),
        ({"env": {"": "x"}}, "invalid environment variable name ''"),
        ({"env": {"A B": "x"}}, "invalid environment variable name 'A B'"),
        ({"worker_id": "bad id"}, "invalid worker id"),
        ({"grace_seconds": -0.1}, "grace must be between 0 and 3600"),
        ({"grace_seconds": 3600.5}, "grace must be between 0 and 3600"),
        ({"grace_seconds": math.inf}, "grace must be between 0 and 3600"),
        ({"stop_signal": "SIGFOO"}, "unknown stop signal 'SIGFOO'"),
        ({"stop_signal": "sigterm"}, "unknown stop signal"),
        ({"name": "n" * 129}, "name is longer than 128 characters"),
    ],
)
def test_each_problem_is_reported(kw: dict[str, object], fragment: str) -> None:
    problems = _spec(**kw).problems()
    assert len(problems) == 1, problems
    assert fragment in problems[0]


def test_all_problems_are_reported_together() -> None:
    spec = _spec(
        image="a b",
        resources=Resources(cpu=-1.0),
        env={"9": "x"},
        worker_id="-w",
        grace_seconds=-1.0,
        stop_signal="NOPE",
        name="x" * 200,
    )
    assert len(spec.problems()) == 7


@pytest.mark.parametrize("signal", sorted(STOP_SIGNALS))
def test_every_known_stop_signal_is_accepted(signal: str) -> None:
    assert _spec(stop_signal=signal).problems() == []


def test_an_empty_worker_id_means_any_worker() -> None:
    assert _spec(worker_id="").problems() == []


def test_nan_grace_is_rejected() -> None:
    assert _spec(grace_seconds=math.nan).problems() != []


def test_env_name_with_trailing_newline_is_rejected() -> None:
    assert _spec(env={"A\n": "x"}).problems() != []


# --- Worker and worker_state ------------------------------------------------------------------


def test_available_is_capacity_minus_allocated_never_negative() -> None:
    w = Worker(
        "w1",
        "h:1",
        capacity=Resources(cpu=4.0, mem_gb=8.0, storage_gb=10.0, gpu=1),
        allocated=Resources(cpu=1.5, mem_gb=9.0, storage_gb=0.0, gpu=2),
    )
    assert w.available == Resources(cpu=2.5, mem_gb=0.0, storage_gb=10.0, gpu=0)


def test_a_new_worker_is_offline_and_empty() -> None:
    w = Worker("w1", "h:1", capacity=Resources(cpu=1.0))
    assert w.state == WorkerState.OFFLINE
    assert w.allocated == Resources()
    assert w.available == Resources(cpu=1.0)


INTERVAL = 5.0
T0 = 1000.0


@pytest.mark.parametrize(
    ("age", "state"),
    [
        (0.0, WorkerState.HEALTHY),
        (3 * INTERVAL, WorkerState.HEALTHY),  # the boundary is still healthy
        (3 * INTERVAL + 0.001, WorkerState.UNHEALTHY),
        (12 * INTERVAL, WorkerState.UNHEALTHY),  # the boundary is still unhealthy
        (12 * INTERVAL + 0.001, WorkerState.OFFLINE),
        (1e9, WorkerState.OFFLINE),
    ],
)
def test_worker_state_thresholds(age: float, state: str) -> None:
    assert worker_state(T0, T0 + age, INTERVAL) == state


def test_a_worker_never_heard_from_is_offline() -> None:
    assert worker_state(None, T0, INTERVAL) == WorkerState.OFFLINE


@given(
    interval=st.floats(min_value=0.05, max_value=60.0),
    a=st.floats(min_value=0.0, max_value=10_000.0),
    b=st.floats(min_value=0.0, max_value=10_000.0),
)
def test_an_older_heartbeat_is_never_healthier(interval: float, a: float, b: float) -> None:
    rank = {WorkerState.HEALTHY: 0, WorkerState.UNHEALTHY: 1, WorkerState.OFFLINE: 2}
    young, old = sorted((a, b))
    fresher = worker_state(T0, T0 + young, interval)
    staler = worker_state(T0, T0 + old, interval)
    assert rank[fresher] <= rank[staler]
