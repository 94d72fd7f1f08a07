"""The pure parts of security: certificates and their roles, tokens, durations, rate buckets,
masking."""

from __future__ import annotations

import contextlib
import os
import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudai.cli.secure import parse_duration
from cloudai.errors import AlreadyExists, InvalidArgument
from cloudai.master.auth import RateLimit, _Buckets
from cloudai.security.pki import Identity, Pki, fingerprint, identity_of, new_csr
from cloudai.security.tokens import (
    hash_secret,
    looks_like_user_token,
    new_join_token,
    new_user_token,
    parse_join_token,
    validate_user_name,
)
from cloudai.store.engine import masked_url


def test_pki_roles_files_and_modes(tmp_path: pathlib.Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.init(["cluster.example", "10.1.2.3"])
    pki.issue_worker("w-1")
    assert identity_of(pki.master_cert.read_bytes()) == Identity("master")
    assert identity_of(pki.worker_cert("w-1").read_bytes()) == Identity("worker", "w-1")
    assert identity_of(pki.ca_cert.read_bytes()) is None  # the CA names no role
    for key in (pki.ca_key, pki.master_key, pki.worker_key("w-1")):
        assert os.stat(key).st_mode & 0o777 == 0o600
    with pytest.raises(AlreadyExists):
        pki.init([])  # never replaces a CA
    with pytest.raises(InvalidArgument):
        pki.issue_worker("../etc")


def test_a_san_must_be_a_host_name_or_address(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidArgument, match="--san"):
        Pki(tmp_path / "pki").init(["not a host!"])


def test_a_csr_is_signed_for_the_id_given_not_the_one_asked(tmp_path: pathlib.Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.init([])
    _, csr = new_csr("admin-wannabe")
    cert = pki.sign_worker_csr("w-2", csr)
    assert identity_of(cert) == Identity("worker", "w-2")
    with pytest.raises(InvalidArgument):
        pki.sign_worker_csr("w-2", b"-----BEGIN CERTIFICATE REQUEST-----\nnope\n")


def test_fingerprint_is_the_sha256_of_the_ca(tmp_path: pathlib.Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.init([])
    assert len(pki.ca_fingerprint()) == 64
    assert fingerprint(pki.ca_cert.read_bytes()) == pki.ca_fingerprint()


def test_tokens_round_trip_and_hash() -> None:
    token = new_user_token()
    assert looks_like_user_token(token) and not looks_like_user_token(token + "x")
    assert hash_secret(token) != token and len(hash_secret(token)) == 64
    join = new_join_token("ab" * 32)
    parsed = parse_join_token(str(join))
    assert parsed == join and parsed.matches(hash_secret(join.secret))
    assert not parsed.matches(hash_secret("other"))


@given(st.text(max_size=200))
def test_parse_join_token_never_crashes(text: str) -> None:
    with contextlib.suppress(InvalidArgument):
        parse_join_token(text)


@given(st.text(max_size=80))
def test_user_names_are_short_safe_ascii(name: str) -> None:
    if validate_user_name(name) is None:
        assert name.isascii() and name.isprintable() and 1 <= len(name) <= 32


def test_durations() -> None:
    assert parse_duration("90s") == 90 and parse_duration("2h") == 7200
    assert parse_duration("1.5m") == 90 and parse_duration("30") == 30
    for bad in ("", "1y", "-1s", "h", "0s"):
        with pytest.raises(ValueError):  # an argparse type: main turns it into a usage line
            parse_duration(bad)


def test_rate_buckets_allow_a_burst_then_ask_to_wait_per_user() -> None:
    buckets = _Buckets(RateLimit(rate=1.0, burst=3.0))
    assert [buckets.take("ann") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("ann")
    assert 0 < wait <= 1.0
    assert buckets.take("bob") == 0.0  # another user has their own bucket
    assert _Buckets(RateLimit(0, 0)).take("ann") == 0.0  # 0: no limit
    assert buckets.take("ann", n=100) > 0  # a bulk request costs at most one burst


def test_database_passwords_are_masked() -> None:
    assert masked_url("postgresql://bob:pw@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert masked_url("postgresql://bob@db/x") == "postgresql://bob@db/x"
    assert masked_url("sqlite:////tmp/c.db") == "sqlite:////tmp/c.db"
