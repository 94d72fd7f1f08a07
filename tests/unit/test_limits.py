"""The pure rules of core/limits.py and what uses them: task IDs, quoting, text and number
bounds, the log tail, results as the master stores them, and the gRPC error mapping."""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudai import errors
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.limits import (
    COMMAND_ARGS_MAX,
    COMMAND_BYTES_MAX,
    ENV_BYTES_MAX,
    ENV_VARS_MAX,
    ERROR_MAX,
    LIST_FIELD_MAX,
    LOG_TAIL_BYTES,
    QUOTE_MAX,
    bounded_text,
    command_problems,
    ids_problems,
    log_tail,
    number_problem,
    quote,
    text_problem,
    validate_task_id,
)
from cloudai.core.models import TaskResult, TaskSpec, new_task_id
from cloudai.core.resources import Resources
from cloudai.core.stop import StopStage
from cloudai.core.stop_update import StopUpdate
from cloudai.rpc.errors import from_rpc_error

# --- task IDs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task_id", ["a", "A.b_c-1", "task-1764000000-1a2b3c4d", "t" * 64, "a.b", "9"]
)
def test_valid_task_ids(task_id: str) -> None:
    assert validate_task_id(task_id) is None


@pytest.mark.parametrize(
    "task_id",
    ["", "/some/dir", "..", ".", "a..b", ".x", "-x", "_x", "t" * 65, "a/b", "a\\b", "a\x00",
     "é", "a b", "~", "task-1/..", "\n"],
)  # fmt: skip
def test_invalid_task_ids(task_id: str) -> None:
    problem = validate_task_id(task_id)
    assert problem is not None
    assert ("task_id is required" if not task_id else "invalid task id") in problem


def test_generated_task_ids_are_valid() -> None:
    assert all(validate_task_id(new_task_id()) is None for _ in range(100))


@given(st.text(max_size=80))
def test_a_valid_task_id_is_a_plain_file_name(task_id: str) -> None:
    """Whatever it is, a task ID that passes is a direct child of any directory."""
    if validate_task_id(task_id) is not None:
        return
    root = pathlib.Path("/state/process-tasks")
    assert os.path.basename(task_id) == task_id and task_id not in (".", "..")
    assert (root / task_id).parent == root and os.path.normpath(root / task_id) == str(
        root / task_id
    )


def test_id_lists_are_bounded_and_each_checked() -> None:
    assert ids_problems("task_ids", ["a", "b"]) == []
    assert "too many task_ids: 3, at most 2" in ids_problems("task_ids", ["a"] * 3, limit=2)[0]
    assert "invalid task id '/x'" in ids_problems("task_ids", ["a", "/x"])[0]


# --- quoting ----------------------------------------------------------------------------------


def test_a_short_value_is_quoted_whole() -> None:
    assert quote("bad::tag") == "'bad::tag'"
    assert quote(3.5) == "3.5"


@given(st.text(min_size=QUOTE_MAX + 1, max_size=20_000))
def test_a_long_value_is_quoted_as_a_short_prefix(value: str) -> None:
    quoted = quote(value)
    assert quoted.startswith(repr(value[:QUOTE_MAX])) and f"… ({len(value)} characters)" in quoted
    assert len(quoted) <= 10 * QUOTE_MAX + 40  # repr() writes at most 10 characters per one


def test_a_10_kb_image_name_is_quoted_short() -> None:
    problems = TaskSpec(image="A" * 10_000).problems()
    assert problems and all(len(p) < 200 for p in problems), problems


# --- text, command, env, numbers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("o" * 65, "owner is longer than 64 characters (65)"),
        ("a\x00b", "must not contain control characters"),
        ("a\nb", "must not contain control characters"),
        ("\x1b[31m", "must not contain control characters"),
    ],
)
def test_text_problems(value: str, fragment: str) -> None:
    problem = text_problem("owner", value, 64)
    assert problem is not None and fragment in problem


def test_multiline_text_allows_line_breaks_not_nul() -> None:
    assert text_problem("reason", "a\nb\tc", 100, multiline=True) is None
    assert text_problem("reason", "a\x00", 100, multiline=True) is not None


def test_command_bounds() -> None:
    assert command_problems(["sh", "-c", "echo é"]) == []
    assert "arguments, at most" in command_problems(["x"] * (COMMAND_ARGS_MAX + 1))[0]
    assert "bytes long, at most" in command_problems(["é" * (COMMAND_BYTES_MAX // 2 + 1)])[0]
    assert "NUL" in command_problems(["a\x00b"])[0]


def test_env_bounds() -> None:
    spec = TaskSpec(image="busybox", env={f"K{i}": "v" for i in range(ENV_VARS_MAX + 1)})
    assert any("environment variables, at most" in p for p in spec.problems())
    spec = TaskSpec(image="busybox", env={"K": "v" * ENV_BYTES_MAX})
    assert any("the environment is" in p for p in spec.problems())
    assert any("NUL" in p for p in TaskSpec(image="busybox", env={"K": "\x00"}).problems())


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (math.nan, "must be a finite number, got nan"),
        (math.inf, "must be a finite number, got inf"),
        (-1.0, "must be a non-negative number, got -1"),
        (0.001, "must be at least 0.01 cores, got 0.001"),
        (5000.0, "must be at most 4096 cores, got 5000"),
    ],
)
def test_number_problems(value: float, fragment: str) -> None:
    problem = number_problem("cpu", value, 0.01, 4096, " cores")
    assert problem is not None and fragment in problem


@pytest.mark.parametrize(
    ("capacity", "fragment"),
    [
        (Resources(cpu=math.nan, mem_gb=1), "cpu must be a finite number"),
        (Resources(cpu=math.inf, mem_gb=1), "cpu must be a finite number"),
        (Resources(cpu=1e-300, mem_gb=1), "cpu must be at least 0.01"),
        (Resources(cpu=1, mem_gb=1e30), "mem must be at most 65536"),
        (Resources(cpu=1, gpu=2**31), "gpu must be at most 64"),
    ],
)
def test_capacity_must_be_finite_and_bounded(capacity: Resources, fragment: str) -> None:
    assert any(fragment in p for p in capacity.validate_capacity())


def test_a_manual_worker_capacity_of_zero_memory_is_fine() -> None:
    assert Resources(cpu=4, mem_gb=0, storage_gb=0, gpu=0).validate_capacity() == []


# --- a task in a list -------------------------------------------------------------------------


def test_a_listed_task_carries_the_start_of_its_command_and_env() -> None:
    spec = TaskSpec(
        image="busybox",
        command=("sh", "-c", "x" * 5000),
        env={f"K{i}": "v" * 100 for i in range(50)},
    )
    listed = spec.summary()
    assert listed.command[:2] == ("sh", "-c") and listed.command[2].endswith("…")
    assert sum(map(len, listed.command)) <= LIST_FIELD_MAX + 1
    assert listed.env["…"] == "40 more" and len(listed.env) == 11
    small = TaskSpec(image="busybox", command=("echo", "hi"), env={"A": "1"})
    assert small.summary() is small


# --- the log tail -----------------------------------------------------------------------------


def test_short_output_is_kept_whole() -> None:
    assert log_tail(b"hello\n") == "hello\n"


def test_long_output_keeps_the_tail_and_says_what_was_dropped() -> None:
    data = b"".join(b"line %d\n" % i for i in range(300_000))
    text = log_tail(data, limit=4096)
    note, _, rest = text.partition("\n")
    kept = len(rest.encode())
    dropped = len(data) - kept
    assert (
        note
        == f"[cloudai: {dropped} bytes of earlier output dropped; the last {kept} bytes follow]"
    )
    assert data.endswith(rest.encode()) and len(text.encode()) <= 4096


def test_the_tail_counts_what_the_reader_never_saw() -> None:
    """A runtime reads only the file's end: `total` is the whole output's size."""
    text = log_tail(b"x" * 100, total=10**9, limit=1000)
    assert text.startswith(f"[cloudai: {10**9 - 100} bytes of earlier output dropped")


@given(st.binary(max_size=5000), st.integers(min_value=256, max_value=3000))
def test_the_tail_never_exceeds_its_bound_whatever_the_bytes(data: bytes, limit: int) -> None:
    text = log_tail(data, limit=limit)
    assert len(text.encode()) <= limit and "\x00" not in text


def test_a_cut_multibyte_character_and_nul_are_handled() -> None:
    text = log_tail(("é" * 3000).encode() + b"\x00end", limit=1000)
    assert text.endswith("\ufffdend") and len(text.encode()) <= 1000
    assert "\ufffd" not in text.partition("\n")[2][:-4]  # no half "é" at the start


# --- results as the master stores them --------------------------------------------------------


def _result(**kw: Any) -> TaskResult:
    base: dict[str, Any] = {
        "task_id": "task-1",
        "worker_id": "w1",
        "status": TaskStatus.COMPLETED,
        "completed_at": 1.0,
    }
    return TaskResult(**{**base, **kw})


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"task_id": "/etc"}, "invalid task id"),
        ({"worker_id": ""}, "invalid worker id"),
        ({"completed_at": math.nan}, "completed_at must be a finite number"),
        ({"started_at": math.inf}, "started_at must be a finite number"),
        ({"completed_at": -5.0}, "completed_at must be a non-negative number"),
    ],
)
def test_a_report_that_cannot_be_stored_is_refused(kw: dict[str, Any], fragment: str) -> None:
    assert any(fragment in p for p in _result(**kw).problems()), _result(**kw).problems()


def test_a_stored_report_is_bounded() -> None:
    result = _result(
        logs="x" * (3 * LOG_TAIL_BYTES) + "\x00",
        error="e" * (ERROR_MAX * 2),
    ).bounded()
    assert len(result.logs.encode()) <= LOG_TAIL_BYTES and "bytes of earlier output" in result.logs
    assert result.logs.endswith("\ufffd")
    assert len(result.error) == ERROR_MAX
    # How a stop went now comes as stop updates (tests/unit/test_stop_updates.py), whose
    # detail is bounded the same way.
    update = StopUpdate(result.task_id, "w1", StopStage.STOP_FAILED, 1.0, "k" * 10_000)
    assert len(update.bounded().detail) <= 2000
    assert bounded_text("a\x00b", 10) == "a\ufffdb"


# --- errors at the edges ----------------------------------------------------------------------


def test_check_raises_every_problem_given() -> None:
    errors.check(None, [], "")
    with pytest.raises(errors.InvalidArgument, match="^a; b; c$"):
        errors.check("a", None, ["b", "c"])


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, kind: str = "") -> None:
        self._code, self._details = code, details
        self._trailing = (("cloudai-error", kind),) if kind else ()

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailing


def test_no_room_keeps_its_own_exit_code() -> None:
    err = from_rpc_error(
        FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "no room", "NoCapacity"), "m"
    )
    assert isinstance(err, errors.NoCapacity) and err.exit_code == 6


def test_a_message_over_the_size_limit_is_not_no_room() -> None:
    """gRPC's own RESOURCE_EXHAUSTED carries no cloudai kind: a size limit, exit 2."""
    detail = "Received message larger than max (20971594 vs. 4194304)"
    err = from_rpc_error(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, detail), "master at m")
    assert isinstance(err, errors.LimitExceeded) and err.exit_code == 2
    assert "larger than max" in err.message and "at most 4 MiB" in err.message


def test_the_kind_a_server_sent_decides_the_error() -> None:
    err = from_rpc_error(
        FakeRpcError(grpc.StatusCode.INTERNAL, "pull failed", "RuntimeFailure"), "m"
    )
    assert isinstance(err, errors.RuntimeFailure) and err.exit_code == 8
    unknown = from_rpc_error(FakeRpcError(grpc.StatusCode.INTERNAL, "boom"), "m")
    assert type(unknown) is errors.CloudAIError and unknown.exit_code == 1
