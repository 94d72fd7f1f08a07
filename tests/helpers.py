"""Test helpers: waiting on conditions with deadlines, and reaching the real engines."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_IMAGE = "cloudai-test/busybox:latest"


def need(what: str, reason: str) -> None:
    """Skip locally when `what` is missing; under CI=true a missing engine is a failure."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true: {reason}")
    pytest.skip(f"{what} not available: {reason}")


def eventually(
    probe: Callable[[], T], timeout: float = 10.0, what: str = "condition", interval: float = 0.05
) -> T:
    """Call `probe` until it returns something truthy; fail with what it last saw."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; last saw: {last!r}"
            )
        time.sleep(interval)


async def aeventually(
    probe: Callable[[], Awaitable[T]],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.05,
) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await probe()
            if last:
                return last
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; last saw: {last!r}"
            )
        await asyncio.sleep(interval)


def docker_client() -> Any:
    """A Docker SDK client with the test image present, or skip/fail."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # any failure to reach the engine means: no engine here
        need("a Docker engine", str(exc))
    try:
        client.images.get(TEST_IMAGE)
    except Exception as exc:  # the image is built by scripts/test.sh
        need(f"the test image {TEST_IMAGE}", f"{exc} (run scripts/test.sh, which builds it)")
    return client
