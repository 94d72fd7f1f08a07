"""Security seen from the command line: real `cloudai` processes, started the documented way
(`certs init`, `certs worker`, `join-token` and `worker --join`), and the CLI as a user types
it. Every refusal is one line on stderr with its exit code (9 unauthenticated, 10 permission
denied), never a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import HEARTBEAT, ProcCluster, free_port
from tests.helpers import TEST_IMAGE, eventually

UNAUTHENTICATED, PERMISSION_DENIED = 9, 10


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloudai.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def refused(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The command failed with `code` and said why in one line naming `words`."""
    err = done.stderr.strip()
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and len(err.splitlines()) == 1, done.stderr
    for word in words:
        assert word in err, (word, err)
    return err


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    """A server process's last line (its own log lines come before the error)."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines, (done.stdout, done.stderr)
    return lines[-1]


@pytest.fixture(scope="module")
def pc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    """A master process with no worker: submitted tasks stay pending, so users' tasks exist
    without any container."""
    with ProcCluster(tmp_path_factory.mktemp("sec")) as c:
        yield c


def as_user(pc: ProcCluster, token: str) -> dict[str, str]:
    return {**pc.env, "CLOUDAI_TOKEN": token}


def bare_home(tmp: pathlib.Path, pc: ProcCluster, with_ca: bool) -> dict[str, str]:
    """A fresh CLOUDAI_HOME (no token), trusting the cluster CA by CLOUDAI_CA or not at all."""
    home = tmp / f"home-{secrets.token_hex(3)}"
    home.mkdir()
    env = {**pc.env, "CLOUDAI_HOME": str(home)}
    if with_ca:
        (home / "pki").mkdir()
        shutil.copy(pc.home / "pki" / "ca.crt", home / "pki" / "ca.crt")
        env["CLOUDAI_CA"] = str(home / "pki" / "ca.crt")
    return env


def test_a_bad_token_is_refused_in_one_line(pc: ProcCluster) -> None:
    for token in ("cloudai_bad", "cloudai_" + secrets.token_urlsafe(32), pc.token[:-2]):
        done = cli(as_user(pc, token), "workers")
        refused(done, UNAUTHENTICATED, "invalid token")
        assert done.stdout == ""
    done = cli(as_user(pc, "cloudai_bad"), "workers", "-o", "json")
    assert done.returncode == UNAUTHENTICATED
    assert "invalid token" in json.loads(done.stderr)["error"]


def test_no_token_says_how_to_give_one(pc: ProcCluster, tmp_path: pathlib.Path) -> None:
    env = bare_home(tmp_path, pc, with_ca=True)
    refused(cli(env, "workers"), UNAUTHENTICATED, "no token", "--token", "CLOUDAI_TOKEN")
    # The same home with the admin's token is let in: it was only the token that was missing.
    done = cli({**env, "CLOUDAI_TOKEN": pc.token}, "whoami")
    assert done.returncode == 0 and "admin" in done.stdout, done.stderr


def test_a_missing_or_broken_ca_file_is_one_line(pc: ProcCluster, tmp_path: pathlib.Path) -> None:
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    for ca in (str(tmp_path / "nowhere.crt"), str(garbage)):
        env = {**pc.env, "CLOUDAI_CA": ca}
        refused(cli(env, "workers"), 2, "no CA certificate at", ca)


def test_a_plaintext_client_is_told_the_master_uses_tls(
    pc: ProcCluster, tmp_path: pathlib.Path
) -> None:
    env = {**bare_home(tmp_path, pc, with_ca=False), "CLOUDAI_TOKEN": pc.token}
    refused(cli(env, "workers"), 7, "in plaintext", "TLS", "CLOUDAI_CA")


def test_users_act_only_on_their_own_tasks(pc: ProcCluster) -> None:
    added = pc.cli_json("user", "add", "bob")
    assert {"name", "token"} <= added.keys() and added["name"] == "bob"
    assert added["token"].startswith("cloudai_") and not added["admin"]
    bob = as_user(pc, added["token"])
    theirs = pc.cli_json("task", "run", TEST_IMAGE, "echo", "admin's", "--cpu", "0.1")["task_id"]
    done = cli(bob, "task", "run", TEST_IMAGE, "echo", "bob's", "--cpu", "0.1", "-o", "json")
    mine = json.loads(done.stdout)["task_id"]

    refused(cli(bob, "task", "show", theirs), PERMISSION_DENIED, "bob may not show task")
    refused(cli(bob, "cancel", theirs), PERMISSION_DENIED, "bob may not cancel task")
    refused(cli(bob, "logs", theirs), PERMISSION_DENIED, "bob may not read the logs of task")

    others = sum(t["owner"] != "bob" for t in pc.cli_json("task", "ls"))
    listed = cli(bob, "task", "ls")
    assert listed.returncode == 0 and mine in listed.stdout and theirs not in listed.stdout
    assert f"{others} matching task(s) of other users not shown" in listed.stdout, listed.stdout
    assert [t["task_id"] for t in json.loads(cli(bob, "task", "ls", "-o", "json").stdout)] == [mine]
    bulk = cli(bob, "cancel", "--all", "--yes")
    assert bulk.returncode == 0, bulk.stderr
    active = sum(
        t["owner"] != "bob" and t["status"] in ("pending", "running")
        for t in pc.cli_json("task", "ls")
    )
    assert f"{active} task(s) of other users skipped" in bulk.stdout, bulk.stdout
    assert pc.cli_json("task", "show", mine)["status"] == "cancelled"

    shown = pc.cli_json("task", "show", theirs)
    assert shown["status"] == "pending"
    denied = [e for e in shown["events"] if e["kind"] == "denied"]
    assert [e["actor"] for e in denied] == ["bob"] * 3, shown["events"]
    assert [e["message"].split(" refused")[0] for e in denied] == [
        "show",
        "cancel",
        "read the logs of",
    ]

    removed = cli(pc.env, "user", "rm", "bob")
    assert removed.returncode == 0, removed.stderr
    refused(cli(bob, "whoami"), UNAUTHENTICATED, "unknown or revoked")
    refused(cli(bob, "task", "ls"), UNAUTHENTICATED)


def test_a_user_may_not_run_admin_commands(pc: ProcCluster) -> None:
    carol = as_user(pc, pc.cli_json("user", "add", "carol")["token"])
    for command in (
        ("user", "add", "mallory", "--admin"),
        ("user", "ls"),
        ("join-token",),
        ("drain", "w1"),
        ("register", "w1", "127.0.0.1:1"),
    ):
        refused(cli(carol, *command), PERMISSION_DENIED, "is for admins only")
    assert "mallory" not in [u["name"] for u in pc.cli_json("user", "ls")]


def test_secrets_on_disk_are_mode_0600(pc: ProcCluster) -> None:
    secrets_on_disk = [*(pc.home / "pki").glob("*.key"), pc.home / "token"]
    assert len(secrets_on_disk) >= 3  # the CA's, the master's, the admin's token
    for path in secrets_on_disk:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((pc.home / "pki").stat().st_mode) == 0o700


def test_a_worker_without_its_certificate_does_not_start(pc: ProcCluster) -> None:
    done = cli(
        pc.env,
        "worker",
        "--id",
        "nocert",
        "--master",
        f"127.0.0.1:{pc.port}",
        "--listen",
        "127.0.0.1:0",
        "--runtime",
        "process",
        "--metrics-listen",
        "off",
    )
    assert done.returncode != 0
    line = last_line(done)
    assert "cloudai certs init" in line and "cloudai certs worker nocert" in line, line


def test_a_master_without_a_pki_does_not_start(tmp_path: pathlib.Path) -> None:
    home = tmp_path / "empty"
    home.mkdir()
    env = {**os.environ, "CLOUDAI_HOME": str(home)}
    env.pop("CLOUDAI_TOKEN", None)
    done = cli(
        env,
        "master",
        "--listen",
        "127.0.0.1:0",
        "--worker-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
    )
    assert done.returncode != 0
    assert "cloudai certs init" in last_line(done)


# ---- a worker on another machine joins with a join token ------------------------------------


def _worker(c: ProcCluster, worker_id: str, token: str, port: int) -> list[str]:
    """`cloudai worker` joining with `token`, as typed on the new machine."""
    return [
        "worker",
        "--id",
        worker_id,
        "--join",
        token,
        "--master",
        f"127.0.0.1:{c.port}",
        "--listen",
        f"127.0.0.1:{port}",
        "--runtime",
        "docker",
        "--cpu",
        "1",
        "--mem",
        "1",
        "--storage",
        "10",
        "--heartbeat-interval",
        str(HEARTBEAT),
        "--metrics-listen",
        "off",
    ]


def _env(c: ProcCluster, home: pathlib.Path) -> dict[str, str]:
    """Another machine: its own CLOUDAI_HOME, nothing of the master's."""
    home.mkdir(exist_ok=True)
    return {**c.env, "CLOUDAI_HOME": str(home)}


def _healthy(c: ProcCluster, worker_id: str) -> bool:
    return any(
        w["worker_id"] == worker_id and w["state"] == "healthy" for w in c.cli_json("workers")
    )


def _run_on(c: ProcCluster, worker_id: str, text: str) -> None:
    task = c.cli_json(
        "task", "run", TEST_IMAGE, "echo", text, "--worker", worker_id, "--cpu", "0.2"
    )
    done = c.wait_status(task["task_id"], "completed", "failed")
    assert done["status"] == "completed", done
    logs = c.cli("logs", task["task_id"])
    assert logs.returncode == 0 and text in logs.stdout, logs.stderr


@pytest.fixture
def join_cluster(docker: Any, tmp_path: pathlib.Path) -> Iterator[tuple[ProcCluster, str]]:
    c = ProcCluster(tmp_path)
    worker_id = f"joined-{secrets.token_hex(3)}"
    try:
        yield c, worker_id
    except BaseException:
        print(c.logs())
        raise
    finally:
        for p in c.workers.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        c.close()
        for found in docker.api.containers(
            all=True, filters={"label": f"cloudai.worker={worker_id}"}
        ):
            with contextlib.suppress(Exception):  # gone already
                docker.api.remove_container(found["Id"], force=True)


def test_a_worker_joins_with_a_join_token_once(
    join_cluster: tuple[ProcCluster, str], tmp_path: pathlib.Path
) -> None:
    c, worker_id = join_cluster
    made = c.cli("join-token")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("cloudai-join.") and len(token.splitlines()) == 1

    home = tmp_path / "machine-2"
    port = free_port()
    command = [sys.executable, "-m", "cloudai.cli.main", *_worker(c, worker_id, token, port)]
    log = open(tmp_path / f"worker-{worker_id}.log", "ab")  # noqa: SIM115 - the child owns it
    c.workers[worker_id] = subprocess.Popen(
        command, env=_env(c, home), stdout=log, stderr=subprocess.STDOUT
    )
    eventually(lambda: _healthy(c, worker_id), timeout=30, what=f"{worker_id} to register")
    pki = home / "pki"
    assert stat.S_IMODE((pki / f"worker-{worker_id}.key").stat().st_mode) == 0o600
    assert not (pki / "ca.key").exists()  # a joined worker never holds the CA's key
    _run_on(c, worker_id, "hello from a joined worker")

    # Restarted with the same command line, it keeps its certificate and serves again.
    proc = c.workers.pop(worker_id)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    eventually(lambda: not _healthy(c, worker_id), timeout=30, what=f"{worker_id} to go quiet")
    c.workers[worker_id] = subprocess.Popen(
        command, env=_env(c, home), stdout=log, stderr=subprocess.STDOUT
    )
    eventually(lambda: _healthy(c, worker_id), timeout=30, what=f"{worker_id} to come back")
    assert "joined this cluster before" in (tmp_path / f"worker-{worker_id}.log").read_text()
    _run_on(c, worker_id, "hello again")

    # The token is spent: a third machine cannot use it.
    third = tmp_path / "machine-3"
    done = cli(_env(c, third), *_worker(c, "third", token, free_port()))
    assert done.returncode == PERMISSION_DENIED
    assert "used already" in last_line(done)
    assert not (third / "pki" / "worker-third.key").exists()
    assert not any(w["worker_id"] == "third" for w in c.cli_json("workers"))


def test_an_expired_join_token_is_refused(
    join_cluster: tuple[ProcCluster, str], tmp_path: pathlib.Path
) -> None:
    c, worker_id = join_cluster
    made = c.cli_json("join-token", "--ttl", "1s")
    eventually(lambda: time.time() > made["expires_at"] + 0.1, what="the join token to expire")
    home = tmp_path / "late"
    done = cli(_env(c, home), *_worker(c, worker_id, made["token"], free_port()))
    assert done.returncode == PERMISSION_DENIED
    assert "expired" in last_line(done)
    assert not any(w["worker_id"] == worker_id for w in c.cli_json("workers"))
