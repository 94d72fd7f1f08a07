"""The task lifecycle table: pure, no I/O."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudai.core.lifecycle import (
    ACTIVE,
    HOLDS_RESOURCES,
    TERMINAL,
    TRANSITIONS,
    TaskStatus,
    allowed_sources,
    can_transition,
)

S = TaskStatus
statuses = st.sampled_from(list(TaskStatus))


def test_status_values_are_the_wire_strings() -> None:
    assert [s.value for s in TaskStatus] == [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
    ]
    assert S("running") is S.RUNNING


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(TaskStatus)


def test_terminal_and_active_partition_the_states() -> None:
    assert frozenset({S.COMPLETED, S.FAILED, S.CANCELLED}) == TERMINAL
    assert frozenset({S.PENDING, S.RUNNING}) == ACTIVE
    assert frozenset(TaskStatus) == TERMINAL | ACTIVE
    assert not TERMINAL & ACTIVE


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_states_have_no_way_out(status: TaskStatus) -> None:
    assert TRANSITIONS[status] == frozenset()
    assert not any(can_transition(status, dst) for dst in TaskStatus)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (S.PENDING, S.RUNNING),
        (S.PENDING, S.CANCELLED),
        (S.PENDING, S.FAILED),
        (S.RUNNING, S.COMPLETED),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.CANCELLED),
        (S.RUNNING, S.PENDING),  # a retry: the run is kept as an attempt (master/retries.py)
    ],
)
def test_allowed_transitions(src: TaskStatus, dst: TaskStatus) -> None:
    assert can_transition(src, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (S.PENDING, S.PENDING),
        (S.PENDING, S.COMPLETED),  # a task never completes without having run
        (S.RUNNING, S.RUNNING),
        *((S.COMPLETED, dst) for dst in TaskStatus),
        (S.CANCELLED, S.RUNNING),
        (S.FAILED, S.COMPLETED),
    ],
)
def test_forbidden_transitions(src: TaskStatus, dst: TaskStatus) -> None:
    assert not can_transition(src, dst)


def test_no_self_loops() -> None:
    assert not any(s in TRANSITIONS[s] for s in TaskStatus)


def test_allowed_sources_examples() -> None:
    assert allowed_sources(S.RUNNING) == frozenset({S.PENDING})
    assert allowed_sources(S.CANCELLED) == frozenset({S.PENDING, S.RUNNING})
    assert allowed_sources(S.FAILED) == frozenset({S.PENDING, S.RUNNING})
    assert allowed_sources(S.COMPLETED) == frozenset({S.RUNNING})
    assert allowed_sources(S.PENDING) == frozenset({S.RUNNING})  # a retry


def test_only_running_holds_resources() -> None:
    assert frozenset({S.RUNNING}) == HOLDS_RESOURCES
    assert HOLDS_RESOURCES <= ACTIVE


@given(src=statuses, dst=statuses)
def test_allowed_sources_is_the_inverse_of_the_table(src: TaskStatus, dst: TaskStatus) -> None:
    assert (src in allowed_sources(dst)) == (dst in TRANSITIONS[src]) == can_transition(src, dst)


@given(src=statuses, dst=statuses)
def test_terminal_sources_never_move(src: TaskStatus, dst: TaskStatus) -> None:
    if src in TERMINAL:
        assert not can_transition(src, dst)
        assert src not in allowed_sources(dst)


@given(path=st.lists(statuses, min_size=1, max_size=8))
def test_every_legal_path_is_short_and_ends_for_good(path: list[TaskStatus]) -> None:
    """A walk that follows the table stays active until its last step, and its only way back
    is a retry (running→pending): without retries it is pending→running→terminal at most."""
    legal = all(can_transition(a, b) for a, b in pairwise(path))
    if legal:
        assert all(s in ACTIVE for s in path[:-1])
        backs = [(a, b) for a, b in pairwise(path) if (a, b) == (S.RUNNING, S.PENDING)]
        assert len(path) - 2 * len(backs) <= 3
