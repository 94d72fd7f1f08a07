"""The lease rule: a worker is lost `lost_after` seconds after the later of its last heartbeat
and this master's start."""

from __future__ import annotations

import itertools

from cloudai.core.lease import Lease


def lost(lease: Lease, last_heartbeat: float, now: float) -> bool:
    cutoff = lease.lapsed_before(now)
    return cutoff is not None and last_heartbeat < cutoff


def test_a_restarted_master_gives_a_full_deadline_however_old_the_heartbeat() -> None:
    lease = Lease(lost_after=300, master_started=10_000)
    ancient = 1_000.0  # heard from long before the master went down
    assert not lost(lease, ancient, now=10_000)
    assert not lost(lease, ancient, now=10_300)  # exactly the deadline: not yet
    assert lost(lease, ancient, now=10_300.5)


def test_a_heartbeat_to_this_master_moves_the_lease_on() -> None:
    lease = Lease(lost_after=300, master_started=10_000)
    assert not lost(lease, 10_250, now=10_500)
    assert lost(lease, 10_250, now=10_551)


def test_no_lease_can_lapse_before_the_master_has_been_up_for_a_deadline() -> None:
    lease = Lease(lost_after=6, master_started=100)
    assert lease.lapsed_before(100) is None
    assert lease.lapsed_before(106) is None
    assert lease.lapsed_before(107) == 101


def test_the_query_form_is_the_rule_max_of_heartbeat_and_start_plus_deadline() -> None:
    for started, heartbeat, now in itertools.product(range(0, 40, 3), range(0, 40, 2), range(50)):
        lease = Lease(lost_after=7, master_started=started)
        expected = max(heartbeat, started) + 7 < now
        assert lost(lease, heartbeat, now) == expected, (started, heartbeat, now)
