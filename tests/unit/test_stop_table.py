"""The stop's table (core/stop.py), checked exhaustively: every pair of stages."""

from __future__ import annotations

import itertools

from cloudai.core.stop import (
    RELEASED,
    STAGE_COLUMNS,
    TRANSITIONS,
    StopStage,
    can_advance,
    holds_resources,
    stage_of,
)

FORWARD = [
    StopStage.REQUESTED,
    StopStage.DELIVERED,
    StopStage.SIGNALLED,
    StopStage.KILLED,
    StopStage.EXITED,
    StopStage.REMOVED,
]


def test_every_pair_moves_only_forward() -> None:
    for src, dst in itertools.product(StopStage, StopStage):
        expected = (
            (src in FORWARD and dst in FORWARD and FORWARD.index(dst) > FORWARD.index(src))
            or (dst is StopStage.STOP_FAILED and src not in (StopStage.REMOVED, dst))
            or (src is StopStage.STOP_FAILED and dst in (StopStage.EXITED, StopStage.REMOVED))
        )
        assert can_advance(src, dst) == expected, (src, dst)


def test_removed_is_the_only_end() -> None:
    ends = [s for s in StopStage if not TRANSITIONS[s]]
    assert ends == [StopStage.REMOVED]


def test_resources_are_held_until_the_container_exited() -> None:
    held = {s for s in StopStage if holds_resources(s)}
    assert held == {
        StopStage.REQUESTED,
        StopStage.DELIVERED,
        StopStage.SIGNALLED,
        StopStage.KILLED,
        StopStage.STOP_FAILED,
    }
    assert {StopStage.EXITED, StopStage.REMOVED} == RELEASED


def test_stage_of_reads_the_furthest_recorded_time() -> None:
    none = dict.fromkeys(("delivered_at", "signal_at", "killed_at", "exited_at", "removed_at"))
    assert stage_of(**none) is StopStage.REQUESTED
    for stage in FORWARD[1:]:
        times = {**none, STAGE_COLUMNS[stage]: 1.0}
        assert stage_of(**times) is stage
    assert stage_of(**{**none, "killed_at": 1.0}, stop_error="kill failed") is StopStage.STOP_FAILED
    # An exit recorded after a failed removal still releases the resources.
    assert stage_of(**{**none, "exited_at": 2.0}, stop_error="remove failed") is StopStage.EXITED
