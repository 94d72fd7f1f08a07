"""The pure parts of security: token formats, durations, user names, the rate-limit bucket."""

from __future__ import annotations

import pytest

from cloudai.cli.main import build_parser
from cloudai.cli.secure import parse_duration
from cloudai.errors import InvalidArgument
from cloudai.master import auth
from cloudai.master.auth import RateLimit, _Buckets
from cloudai.security.tokens import (
    looks_like_user_token,
    new_join_token,
    new_user_token,
    parse_join_token,
    validate_user_name,
)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("1.5d", 129600)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1w", "-1s", "0", "0s", "0.0h"])
def test_bad_durations_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("ttl", ["abc", "0"])
def test_a_bad_ttl_is_a_one_line_usage_error(ttl: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Not a traceback: argparse turns the type's ValueError into its usage line, exit 2."""
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["join-token", "--ttl", ttl])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--ttl" in err


def test_user_tokens_have_one_shape() -> None:
    token = new_user_token()
    assert looks_like_user_token(token) and token != new_user_token()
    for bad in ("", "cloudai_", token[:-1], token + "x", token.replace("cloudai_", "cloudai-")):
        assert not looks_like_user_token(bad), bad


def test_join_tokens_round_trip_and_reject_anything_else() -> None:
    token = new_join_token("ab" * 32)
    parsed = parse_join_token(f"  {token}\n")
    assert parsed == token and str(parsed).endswith("." + "ab" * 32)
    text = str(token)
    for bad in (text[:-1], text + "0", text.replace("cloudai-join.", "cloudai."), "x.y.z.w"):
        with pytest.raises(InvalidArgument, match="not a join token"):
            parse_join_token(bad)


@pytest.mark.parametrize("name", ["alice", "_ci", "bob.smith-2", "a" * 32])
def test_good_user_names(name: str) -> None:
    assert validate_user_name(name) is None


@pytest.mark.parametrize("name", ["", "Alice", "1bob", "a" * 33, "bob smith", "bob\n", "ünï"])
def test_bad_user_names(name: str) -> None:
    assert validate_user_name(name) is not None


def test_the_bucket_refuses_past_its_burst_per_user_then_refills(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    buckets = _Buckets(RateLimit(rate=2, burst=4))
    assert [buckets.take("bob") for _ in range(4)] == [0.0] * 4
    wait = buckets.take("bob")
    assert wait == pytest.approx(0.5)  # one token at 2 per second
    assert buckets.take("carol") == 0.0  # another user's bucket is full
    now[0] += wait
    assert buckets.take("bob") == 0.0
    assert buckets.take("bob") > 0
    assert buckets.take("bob", 10) > 0  # a bulk request larger than a burst needs a full one
    now[0] += 10
    assert buckets.take("bob", 10) == 0.0


def test_rate_zero_means_no_limit() -> None:
    buckets = _Buckets(RateLimit(rate=0, burst=0))
    assert all(buckets.take("bob") == 0.0 for _ in range(1000))
