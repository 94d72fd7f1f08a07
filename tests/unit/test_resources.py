"""Resource vectors: arithmetic, fitting and request validation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudai.core.resources import Resources

amounts = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
signed = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
gpus = st.integers(min_value=0, max_value=64)

nonneg = st.builds(Resources, cpu=amounts, mem_gb=amounts, storage_gb=amounts, gpu=gpus)
anysign = st.builds(
    Resources,
    cpu=signed,
    mem_gb=signed,
    storage_gb=signed,
    gpu=st.integers(min_value=-64, max_value=64),
)


def _close(a: Resources, b: Resources) -> bool:
    return (
        math.isclose(a.cpu, b.cpu, rel_tol=1e-9, abs_tol=1e-6)
        and math.isclose(a.mem_gb, b.mem_gb, rel_tol=1e-9, abs_tol=1e-6)
        and math.isclose(a.storage_gb, b.storage_gb, rel_tol=1e-9, abs_tol=1e-6)
        and a.gpu == b.gpu
    )


# --- arithmetic -------------------------------------------------------------------------------


def test_defaults_are_zero() -> None:
    assert Resources() == Resources(0.0, 0.0, 0.0, 0)


def test_add_and_sub_are_per_axis() -> None:
    a = Resources(cpu=2.0, mem_gb=4.0, storage_gb=10.0, gpu=1)
    b = Resources(cpu=0.5, mem_gb=1.0, storage_gb=2.5, gpu=1)
    assert a + b == Resources(2.5, 5.0, 12.5, 2)
    assert a - b == Resources(1.5, 3.0, 7.5, 0)
    assert b - a == Resources(-1.5, -3.0, -7.5, 0)


def test_is_immutable_and_hashable() -> None:
    r = Resources(cpu=1.0)
    with pytest.raises(AttributeError):
        r.cpu = 2.0  # type: ignore[misc]
    assert len({Resources(cpu=1.0), Resources(cpu=1.0), Resources(cpu=2.0)}) == 2


@given(a=anysign, b=anysign)
def test_addition_commutes(a: Resources, b: Resources) -> None:
    assert a + b == b + a


@given(a=anysign)
def test_zero_is_the_identity(a: Resources) -> None:
    assert a + Resources() == a
    assert a - Resources() == a
    assert a - a == Resources()


@given(a=anysign, b=anysign)
def test_subtraction_undoes_addition(a: Resources, b: Resources) -> None:
    assert _close((a + b) - b, a)


@given(a=anysign, b=anysign, c=anysign)
def test_addition_associates(a: Resources, b: Resources, c: Resources) -> None:
    assert _close((a + b) + c, a + (b + c))


@given(items=st.lists(nonneg, max_size=8))
def test_total_is_the_sum(items: list[Resources]) -> None:
    expected = Resources()
    for item in items:
        expected = expected + item
    assert Resources.total(items) == expected
    assert Resources.total(iter(items)) == expected  # any iterable, consumed once


def test_total_of_nothing_is_zero() -> None:
    assert Resources.total([]) == Resources()


@given(a=anysign)
def test_clamp_zero(a: Resources) -> None:
    c = a.clamp_zero()
    assert min(c.cpu, c.mem_gb, c.storage_gb, c.gpu) >= 0
    assert c.cpu == max(a.cpu, 0.0)
    assert c.mem_gb == max(a.mem_gb, 0.0)
    assert c.storage_gb == max(a.storage_gb, 0.0)
    assert c.gpu == max(a.gpu, 0)
    assert c.clamp_zero() == c


def test_str_is_readable() -> None:
    assert str(Resources(1.5, 0.5, 10, 2)) == "cpu=1.5 mem=0.5GB storage=10GB gpu=2"


# --- fits_in ----------------------------------------------------------------------------------


@given(a=nonneg)
def test_a_request_fits_in_itself(a: Resources) -> None:
    assert a.fits_in(a)


@given(a=nonneg, extra=nonneg)
def test_a_request_fits_in_anything_bigger(a: Resources, extra: Resources) -> None:
    assert a.fits_in(a + extra)


@given(room=nonneg, used=nonneg)
def test_what_is_left_after_a_request_still_fits(room: Resources, used: Resources) -> None:
    """If `used` fits in `room`, then room - used is non-negative (within float tolerance)."""
    if used.fits_in(room):
        left = room - used
        assert left.gpu >= 0
        assert min(left.cpu, left.mem_gb, left.storage_gb) >= -1e-6


@pytest.mark.parametrize(
    "request_",
    [
        Resources(cpu=2.01),
        Resources(mem_gb=4.01),
        Resources(storage_gb=10.01),
        Resources(gpu=2),
    ],
    ids=["cpu", "mem", "storage", "gpu"],
)
def test_one_axis_too_big_does_not_fit(request_: Resources) -> None:
    room = Resources(cpu=2.0, mem_gb=4.0, storage_gb=10.0, gpu=1)
    assert not request_.fits_in(room)


@given(room=nonneg, axis=st.sampled_from(["cpu", "mem_gb", "storage_gb"]))
def test_exceeding_any_float_axis_does_not_fit(room: Resources, axis: str) -> None:
    fields = {"cpu": room.cpu, "mem_gb": room.mem_gb, "storage_gb": room.storage_gb}
    fields[axis] += 0.001 + fields[axis] * 1e-6
    assert not Resources(**fields, gpu=room.gpu).fits_in(room)


def test_float_noise_is_tolerated() -> None:
    # 0.1 + 0.2 == 0.30000000000000004 must still fit in 0.3
    assert Resources(cpu=0.1 + 0.2).fits_in(Resources(cpu=0.3))
    assert Resources(cpu=1.0 + 1e-12, mem_gb=0.5 + 1e-12).fits_in(Resources(1.0, 0.5))


def test_gpus_are_compared_exactly() -> None:
    assert Resources(gpu=1).fits_in(Resources(gpu=1))
    assert not Resources(gpu=2).fits_in(Resources(gpu=1))


def test_nothing_fits_in_negative_room() -> None:
    assert not Resources(cpu=0.5).fits_in(Resources(cpu=-1.0, mem_gb=10))


# --- validate_request -------------------------------------------------------------------------


@given(
    cpu=st.floats(min_value=0.01, max_value=4096),
    mem=st.just(0.0) | st.floats(min_value=0.01, max_value=65536),
    storage=st.floats(min_value=0.0, max_value=1048576),
    gpu=gpus,
)
def test_requests_within_the_limits_are_valid(
    cpu: float, mem: float, storage: float, gpu: int
) -> None:
    assert Resources(cpu, mem, storage, gpu).validate_request() == []


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (Resources(cpu=-1.0), "cpu must be a non-negative number"),
        (Resources(cpu=1.0, mem_gb=-0.5), "mem must be a non-negative number"),
        (Resources(cpu=1.0, storage_gb=-2.0), "storage must be a non-negative number"),
        (Resources(cpu=1.0, gpu=-1), "gpu must be a non-negative integer"),
        (Resources(cpu=math.nan), "cpu must be a finite number"),
        (Resources(cpu=math.inf), "cpu must be a finite number"),
        (Resources(cpu=1.0, mem_gb=math.nan), "mem must be a finite number"),
        (Resources(cpu=1.0, storage_gb=-math.inf), "storage must be a finite number"),
        (Resources(cpu=0.001), "cpu must be at least 0.01 cores"),
        (Resources(cpu=4097.0), "cpu must be at most 4096 cores"),
        (Resources(cpu=1.0, mem_gb=0.001), "mem must be 0 (no limit) or at least 0.01 GB"),
        (Resources(cpu=1.0, mem_gb=65537.0), "mem must be at most 65536 GB"),
        (Resources(cpu=1.0, storage_gb=2e6), "storage must be at most 1048576 GB"),
        (Resources(cpu=1.0, gpu=65), "gpu must be at most 64"),
        (Resources(cpu=1.0, gpu=2**31), "gpu must be at most 64"),
        (Resources(cpu=0.0), "cpu must be at least 0.01 cores"),
        (Resources(), "cpu must be at least 0.01 cores"),
    ],
)
def test_bad_requests_are_reported(request_: Resources, fragment: str) -> None:
    problems = request_.validate_request()
    assert len(problems) == 1, problems
    assert fragment in problems[0]


def test_every_bad_axis_is_reported_at_once() -> None:
    problems = Resources(cpu=-1.0, mem_gb=-1.0, storage_gb=-1.0, gpu=-1).validate_request()
    assert [p.split()[0] for p in problems] == ["cpu", "mem", "storage", "gpu"]


@given(
    r=anysign.filter(lambda r: min(r.cpu, r.mem_gb, r.storage_gb) < 0 or r.gpu < 0 or r.cpu == 0)
)
def test_any_negative_or_zero_cpu_request_is_invalid(r: Resources) -> None:
    assert r.validate_request() != []


@pytest.mark.parametrize(
    "request_",
    [
        Resources(cpu="1"),  # type: ignore[arg-type]
        Resources(cpu=1.0, mem_gb=None),  # type: ignore[arg-type]
        Resources(cpu=1.0, gpu="2"),  # type: ignore[arg-type]
    ],
    ids=["cpu-str", "mem-none", "gpu-str"],
)
def test_non_numbers_are_never_silently_accepted(request_: Resources) -> None:
    try:
        problems = request_.validate_request()
    except TypeError:
        return
    assert problems != []


def test_fractional_gpu_is_invalid() -> None:
    assert Resources(cpu=1.0, gpu=1.5).validate_request() != []  # type: ignore[arg-type]
