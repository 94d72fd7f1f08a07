"""Regressions for the hostile-input findings at the CLI, shell and worker edges: each bad
value is one line and exit code 2 (or the shell's one line, after which it goes on)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import pathlib
from typing import Any

import pytest
from rich.console import Console

from cloudai.cli import commands, shell
from cloudai.cli import main as cli_main
from cloudai.cli.main import _shell_dispatcher, _split_run, build_parser
from cloudai.cli.render import Renderer
from cloudai.core.resources import Resources
from cloudai.errors import InvalidArgument
from cloudai.worker import app as worker_app
from cloudai.worker.app import WorkerConfig
from tests.unit.test_fuzz_cli import StubClient


def _parse_error(argv: list[str]) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        build_parser().parse_args(_split_run(argv))
    assert exc.value.code == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, err.getvalue()
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["task", "run", "img", "--gpu", "2147483648"], "--gpu must be at most 64"),
        (["task", "run", "img", "--cpu", "inf"], "--cpu must be a finite number"),
        (["task", "run", "img", "--mem", "1e30"], "--mem must be at most 65536"),
        (["task", "run", "img", "--grace", "3601"], "--grace must be at most 3600"),
        (["worker", "--id", "w", "--gpu", "2147483648"], "--gpu must be at most 64"),
        (["worker", "--id", "w", "--cpu", "inf"], "--cpu must be a finite number"),
        (["worker", "--id", "w", "--cpu", "1e-300"], "--cpu must be at least 0.01"),
        (["worker", "--id", "w", "--mem", "nan"], "--mem must be a finite number"),
        (["worker", "--id", "w", "--storage", "1e300"], "--storage must be at most 1048576"),
        (["worker", "--id", "../x"], "invalid worker id '../x'"),
        (["up", "--worker-id", "/etc"], "invalid worker id '/etc'"),
        (["master", "--heartbeat-interval", "1e300"], "must be at most 3600"),
        (["task", "run", "img", "--cpu", "9" * 5000], "got '9999"),
    ],
)
def test_impossible_numbers_and_ids_are_one_line_and_exit_2(argv: list[str], fragment: str) -> None:
    line = _parse_error(argv)
    assert fragment in line and len(line) < 300, line


def test_control_characters_in_a_parse_error_are_escaped() -> None:
    line = _parse_error(["workers", "a\rb\x1b[31m\n"])
    assert "a\\rb\\x1b[31m\\n" in line


def test_an_option_given_a_lone_double_dash_takes_it_literally() -> None:
    args = build_parser().parse_args(_split_run(["task", "run", "img", "--name=--"]))
    assert args.name == "--"
    args = build_parser().parse_args(_split_run(["task", "run", "img", "--env=--"]))
    assert args.env == ["--"]


def test_task_run_with_a_huge_gpu_count_exits_2_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli_main, "Client", StubClient)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        cli_main.main(["task", "run", "busybox", "--gpu", "2147483648"])
    assert exc.value.code == 2 and "Traceback" not in err.getvalue()


def test_an_unexpected_error_at_the_cli_edge_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> int:
        raise ValueError("Value out of range: 2147483648")

    monkeypatch.setattr(cli_main, "Client", StubClient)
    monkeypatch.setattr(commands, "workers", broken)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli_main.main(["workers"])
    assert code == 1
    assert err.getvalue().strip().splitlines() == [
        "✗ Error: internal error: ValueError: 'Value out of range: 2147483648' "
        "(a bug: please report it)"
    ]


class Recording(StubClient):
    def __init__(self) -> None:
        super().__init__()
        self.specs: list[Any] = []

    def submit(self, spec: Any) -> Any:
        self.specs.append(spec)
        return super().submit(spec)


def test_the_shell_prints_each_bad_line_and_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: `task run ... --gpu 2147483648` killed the master> shell with a traceback."""
    client: Any = Recording()
    console = Console(file=io.StringIO(), width=200)
    out = Renderer("text", console)
    lines = [
        "task run busybox --gpu 2147483648",
        "task auto busybox -gpu 2147483648",
        "task auto busybox -cpu_cores inf",
        "task run busybox --stop-signal=--",
        "task run busybox true",
        "",
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines)))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = shell.run_shell(client, out, _shell_dispatcher(build_parser(), client, out))
    assert code == 0
    assert [s.command for s in client.specs] == [("true",)]  # the last line still ran
    errors = err.getvalue().strip().splitlines()
    assert "--gpu must be at most 64" in errors[0]
    assert "gpu must be at most 64" in errors[1]
    assert "cpu must be a finite number" in errors[2]
    assert "unknown stop signal '--'" in errors[3]
    assert not any("Traceback" in e or "internal error" in e for e in errors)


def test_the_shell_survives_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(tokens: list[str]) -> int:
        raise KeyError("oops")

    out = Renderer("text", Console(file=io.StringIO()))
    monkeypatch.setattr("sys.stdin", io.StringIO("workers\nexit\n"))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert shell.run_shell(StubClient(), out, broken) == 0  # type: ignore[arg-type]
    assert "internal error: KeyError" in err.getvalue()


# --- the worker refuses a bad configuration before it serves ----------------------------------


def _config(tmp: pathlib.Path, **kw: Any) -> WorkerConfig:
    base: dict[str, Any] = {
        "worker_id": "w1",
        "master": "127.0.0.1:1",
        "listen": "127.0.0.1:0",
        "runtime": "process",
        "capacity": Resources(cpu=1, mem_gb=1),
        "state_dir": str(tmp / "state"),
    }
    return WorkerConfig(**{**base, **kw})


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"capacity": Resources(cpu=1, gpu=2**31)}, "gpu must be at most 64"),
        ({"capacity": Resources(cpu=math.inf)}, "cpu must be a finite number"),
        ({"capacity": Resources(cpu=1e-300)}, "cpu must be at least 0.01"),
        ({"worker_id": "../x"}, "invalid worker id"),
    ],
)
def test_serve_worker_refuses_a_bad_config(
    tmp_path: pathlib.Path, kw: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidArgument, match=fragment.replace("(", r"\(")):
        asyncio.run(worker_app.serve_worker(_config(tmp_path, **kw)))
    assert not (tmp_path / "state").exists()  # nothing started
