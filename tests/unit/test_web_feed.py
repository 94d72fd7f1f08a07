"""The console's feed: a subscriber that falls behind is told to resync, never grows without
bound; the HTTP status of each error and each cancel ack."""

from __future__ import annotations

from cloudai.errors import (
    Conflict,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
)
from cloudai.master.canceller import CancelOutcome
from cloudai.web.errors import http_status, outcome_status
from cloudai.web.feed import QUEUE_MAX, Subscriber
from cloudai.web.session import csrf_of


def test_a_subscriber_that_falls_behind_gets_one_resync() -> None:
    sub = Subscriber("ann", admin=False)
    for i in range(QUEUE_MAX + 10):
        sub.offer("task", {"n": i})
    assert sub.queue.qsize() <= QUEUE_MAX
    items = []
    while not sub.queue.empty():
        items.append(sub.queue.get_nowait())
    kinds = [k for k, _ in items]
    assert kinds.count("resync") == 1
    # after the resync, the newest changes follow it, in order
    after = [d["n"] for k, d in items[kinds.index("resync") + 1 :]]
    assert after == sorted(after) and after[-1] == QUEUE_MAX + 9


def test_http_statuses() -> None:
    assert http_status(Unauthenticated("x")) == 401
    assert http_status(PermissionDenied("x")) == 403
    assert http_status(NotFound("x")) == 404
    assert http_status(Conflict("x")) == 409
    assert http_status(InvalidArgument("x")) == 422
    assert http_status(LimitExceeded("x")) == 413
    assert http_status(RateLimited("x")) == 429
    ok = CancelOutcome("t", True, "cancelled", "cancelled")
    assert outcome_status(ok) == 200
    for exc, status in [(NotFound("x"), 404), (Conflict("x"), 409), (PermissionDenied("x"), 403)]:
        assert outcome_status(CancelOutcome("t", False, "no", error_code=exc.code.name)) == status


def test_csrf_tokens_differ_per_user_token() -> None:
    assert csrf_of("cloudai_a") != csrf_of("cloudai_b")
    assert csrf_of("cloudai_a") == csrf_of("cloudai_a")
