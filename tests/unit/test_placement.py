"""Placement proposals: pure, over Worker records."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cloudai.core.models import Worker, WorkerState
from cloudai.core.resources import Resources
from cloudai.scheduler.placement import fits_anywhere, propose

HEALTHY, UNHEALTHY, OFFLINE = WorkerState.HEALTHY, WorkerState.UNHEALTHY, WorkerState.OFFLINE
SMALL = Resources(cpu=1.0, mem_gb=0.5)


def _worker(
    worker_id: str,
    cpu: float = 4.0,
    mem: float = 8.0,
    *,
    used_cpu: float = 0.0,
    used_mem: float = 0.0,
    storage: float = 10.0,
    gpu: int = 0,
    state: str = HEALTHY,
) -> Worker:
    return Worker(
        worker_id=worker_id,
        address=f"{worker_id}:50052",
        capacity=Resources(cpu=cpu, mem_gb=mem, storage_gb=storage, gpu=gpu),
        allocated=Resources(cpu=used_cpu, mem_gb=used_mem),
        state=state,
    )


# --- propose ----------------------------------------------------------------------------------


def test_no_workers_no_proposal() -> None:
    assert propose(SMALL, []) is None


def test_a_single_healthy_worker_with_room_is_chosen() -> None:
    assert propose(SMALL, [_worker("w1")]) == "w1"


def test_the_least_loaded_worker_wins() -> None:
    workers = [
        _worker("busy", used_cpu=3.0),
        _worker("idle"),
        _worker("half", used_cpu=2.0),
    ]
    assert propose(SMALL, workers) == "idle"


def test_load_is_relative_to_capacity() -> None:
    # Both have 2 CPUs in use; on the 16-CPU machine that is the lighter share.
    workers = [_worker("small", cpu=4.0, used_cpu=2.0), _worker("big", cpu=16.0, used_cpu=2.0)]
    assert propose(SMALL, workers) == "big"


def test_load_is_the_busiest_axis() -> None:
    # "memfull" has idle CPUs but its memory is 75% used; "cpuhalf" is at most 50% on any axis.
    workers = [
        _worker("memfull", cpu=4.0, mem=8.0, used_mem=6.0),
        _worker("cpuhalf", cpu=4.0, mem=8.0, used_cpu=2.0),
    ]
    assert propose(SMALL, workers) == "cpuhalf"


def test_ties_break_on_worker_id_whatever_the_order() -> None:
    workers = [_worker("w3"), _worker("w1"), _worker("w2")]
    assert propose(SMALL, workers) == "w1"
    assert propose(SMALL, list(reversed(workers))) == "w1"


def test_unhealthy_and_offline_workers_are_skipped() -> None:
    workers = [
        _worker("a-unhealthy", state=UNHEALTHY),
        _worker("b-offline", state=OFFLINE),
        _worker("c-healthy", used_cpu=3.0),
    ]
    assert propose(SMALL, workers) == "c-healthy"
    assert propose(SMALL, workers[:2]) is None


def test_workers_too_small_are_skipped() -> None:
    request = Resources(cpu=2.0, mem_gb=4.0, storage_gb=5.0, gpu=1)
    workers = [
        _worker("a-cpu", cpu=1.0, gpu=1),
        _worker("b-mem", mem=2.0, gpu=1),
        _worker("c-storage", storage=1.0, gpu=1),
        _worker("d-nogpu", gpu=0),
        _worker("e-full", used_cpu=3.0, gpu=1),  # 1 CPU left of 4
        _worker("f-fits", cpu=2.0, mem=4.0, storage=5.0, gpu=1, used_cpu=0.0),
    ]
    assert propose(request, workers) == "f-fits"
    assert propose(request, workers[:-1]) is None


def test_an_exact_fit_is_accepted() -> None:
    assert propose(Resources(cpu=1.0, mem_gb=1.0), [_worker("w1", cpu=4.0, used_cpu=3.0)]) == "w1"


def test_overcommitted_worker_has_no_room() -> None:
    # allocated beyond capacity (e.g. capacity lowered on re-register): available clamps to 0
    assert propose(SMALL, [_worker("w1", cpu=2.0, used_cpu=5.0)]) is None


# --- fits_anywhere ----------------------------------------------------------------------------


def test_fits_anywhere_ignores_current_allocations() -> None:
    full = _worker("w1", cpu=4.0, used_cpu=4.0)
    assert propose(Resources(cpu=2.0), [full]) is None
    assert fits_anywhere(Resources(cpu=2.0), [full])


def test_fits_anywhere_needs_one_worker_big_enough_on_every_axis() -> None:
    workers = [_worker("cpu-rich", cpu=32.0, mem=1.0), _worker("mem-rich", cpu=1.0, mem=64.0)]
    assert not fits_anywhere(Resources(cpu=8.0, mem_gb=8.0), workers)
    assert fits_anywhere(Resources(cpu=8.0, mem_gb=1.0), workers)
    assert fits_anywhere(Resources(cpu=1.0, mem_gb=8.0), workers)


def test_fits_anywhere_with_no_workers_is_false() -> None:
    assert not fits_anywhere(SMALL, [])


# --- properties -------------------------------------------------------------------------------

_amount = st.floats(min_value=0.0, max_value=64.0, allow_nan=False)
_gpu = st.integers(min_value=0, max_value=4)
_res = st.builds(Resources, cpu=_amount, mem_gb=_amount, storage_gb=_amount, gpu=_gpu)
_request = st.builds(
    Resources,
    cpu=st.floats(min_value=0.01, max_value=32.0),
    mem_gb=st.floats(min_value=0.0, max_value=32.0),
    storage_gb=st.floats(min_value=0.0, max_value=32.0),
    gpu=st.integers(min_value=0, max_value=2),
)


@st.composite
def _workers(draw: st.DrawFn) -> list[Worker]:
    n = draw(st.integers(min_value=0, max_value=6))
    return [
        Worker(
            worker_id=f"w{i}",
            address=f"w{i}:1",
            capacity=draw(_res),
            allocated=draw(_res),
            state=draw(st.sampled_from([HEALTHY, UNHEALTHY, OFFLINE])),
        )
        for i in range(n)
    ]


@given(request=_request, workers=_workers())
def test_a_proposal_is_a_healthy_worker_that_fits(
    request: Resources, workers: list[Worker]
) -> None:
    chosen = propose(request, workers)
    by_id = {w.worker_id: w for w in workers}
    if chosen is None:
        assert not any(w.state == HEALTHY and request.fits_in(w.available) for w in workers)
    else:
        w = by_id[chosen]
        assert w.state == HEALTHY
        assert request.fits_in(w.available)
        assert request.fits_in(w.capacity)


@given(request=_request, workers=_workers(), data=st.data())
def test_the_proposal_does_not_depend_on_list_order(
    request: Resources, workers: list[Worker], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(workers))
    assert propose(request, shuffled) == propose(request, workers)


@given(request=_request, workers=_workers())
def test_a_proposal_implies_it_fits_anywhere(request: Resources, workers: list[Worker]) -> None:
    if propose(request, workers) is not None:
        assert fits_anywhere(request, workers)
    if not fits_anywhere(request, workers):
        assert propose(request, workers) is None
