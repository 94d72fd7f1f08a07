"""CLI and shell parsing, without a server: argv → argparse, shell lines → the command layer.

A fake client records what reaches it; nothing here opens a channel."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from cloudai.cli import main as cli_main
from cloudai.cli import shell
from cloudai.cli.main import _shell_dispatcher, _split_run, build_parser
from cloudai.cli.render import Renderer
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import Task, TaskSpec
from cloudai.core.resources import Resources
from cloudai.errors import InvalidArgument


class FakeClient:
    """Stands in for cloudai.client.Client: records calls, answers from memory."""

    master = "fake:50051"

    def __init__(self) -> None:
        self.submitted: list[TaskSpec] = []
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def submit(self, spec: TaskSpec) -> Task:
        self.submitted.append(spec)
        return Task(
            task_id=f"task-1700000000-{len(self.submitted):08x}",
            spec=spec,
            status=TaskStatus.PENDING,
            worker_id=spec.worker_id or None,
        )

    def list_tasks(self, status: str = "", worker_id: str = "", limit: int = 0) -> list[Task]:
        self.calls.append(("list_tasks", (status, worker_id)))
        return []

    def cancel(self, task_id: str) -> str:
        self.calls.append(("cancel", (task_id,)))
        return f"cancellation of {task_id} requested"


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def out() -> Renderer:
    return Renderer("text", Console(file=io.StringIO(), width=200, highlight=False))


def _printed(out: Renderer) -> str:
    file = out.console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def _parse(argv: list[str]) -> Any:
    return build_parser().parse_args(_split_run(argv))


# --- _split_run -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["workers"],
        ["task", "ls", "--status", "running"],
        ["cancel", "task-1", "task-2"],
        ["task"],
        ["run", "task"],
    ],
)
def test_argv_without_task_run_is_untouched(argv: list[str]) -> None:
    assert _split_run(list(argv)) == argv


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["task", "run", "busybox", "echo", "hi", "--cpu", "2"],
            ["task", "run", "--cpu", "2", "--", "busybox", "echo", "hi"],
        ),
        (
            ["task", "run", "--worker", "w1", "busybox", "ls", "--mem=1"],
            ["task", "run", "--worker", "w1", "--mem=1", "--", "busybox", "ls"],
        ),
        (
            ["task", "run", "busybox", "--", "ls", "--cpu", "3"],
            ["task", "run", "--", "busybox", "ls", "--cpu", "3"],
        ),
        (
            ["--master", "h:1", "task", "run", "img", "-o", "json"],
            ["--master", "h:1", "task", "run", "-o", "json", "--", "img"],
        ),
        (
            ["task", "run", "img", "sh", "-c", "echo a", "-h"],
            ["task", "run", "-h", "--", "img", "sh", "-c", "echo a"],
        ),
        (["task", "run"], ["task", "run", "--"]),
    ],
)
def test_split_run_moves_known_options_before_the_command(
    argv: list[str], expected: list[str]
) -> None:
    assert _split_run(argv) == expected


def test_split_run_keeps_positional_order() -> None:
    argv = ["task", "run", "img", "a", "--env", "K=V", "b", "--name", "n", "c"]
    out = _split_run(argv)
    assert out[out.index("--") + 1 :] == ["img", "a", "b", "c"]
    assert out[2 : out.index("--")] == ["--env", "K=V", "--name", "n"]


def test_options_after_the_command_are_parsed() -> None:
    args = _parse(
        ["task", "run", "busybox", "echo", "hi", "--cpu", "2", "--mem=1.5", "--worker", "w1"]
    )
    assert args.image == "busybox"
    assert args.cmd == ["echo", "hi"]
    assert (args.cpu, args.mem, args.worker) == (2.0, 1.5, "w1")


def test_command_flags_that_are_not_ours_stay_with_the_command() -> None:
    args = _parse(["task", "run", "busybox", "ls", "-la", "/tmp"])
    assert args.cmd == ["ls", "-la", "/tmp"]
    assert args.cpu == 1.0


def test_double_dash_protects_command_arguments_that_look_like_options() -> None:
    args = _parse(["task", "run", "--cpu", "0.5", "busybox", "--", "prog", "--cpu", "9", "-h"])
    assert args.cpu == 0.5
    assert args.image == "busybox"
    assert args.cmd == ["prog", "--cpu", "9", "-h"]


@pytest.mark.parametrize(
    "argv",
    [
        ["task", "run", "img", "--", "git", "log", "--", "README"],
        ["task", "run", "--", "img", "git", "log", "--", "README"],
    ],
)
def test_a_literal_double_dash_reaches_the_command(argv: list[str]) -> None:
    assert _parse(argv).cmd == ["git", "log", "--", "README"]


def test_run_defaults_and_repeatable_env() -> None:
    args = _parse(["task", "run", "img", "--env", "A=1", "--env=B=2"])
    assert args.cmd == []
    assert args.env == ["A=1", "B=2"]
    assert (args.cpu, args.mem, args.storage, args.gpu) == (1.0, 0.5, 0.0, 0)
    assert (args.worker, args.name, args.grace, args.stop_signal) == ("", "", None, "")
    assert args.output == "text"


def test_subcommand_client_options_override_the_top_level() -> None:
    args = _parse(["--master", "a:1", "task", "run", "img", "--master", "b:2", "-o", "json"])
    assert args.master == "b:2"
    assert args.output == "json"
    args = _parse(["--master", "a:1", "-o", "json", "workers"])
    assert (args.master, args.output) == ("a:1", "json")


# --- parser errors: exit 2, one line on stderr ------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["task"], "required: ACTION"),
        (["task", "run"], "IMAGE"),
        (["task", "run", "img", "--cpu", "abc"], "--cpu must be a number, got 'abc'"),
        (["task", "run", "img", "--cpu", "-1"], "--cpu must be at least 0, got '-1'"),
        (["task", "run", "img", "--cpu", "nan"], "--cpu must be a finite number"),
        (["task", "run", "img", "--gpu", "1.5"], "--gpu"),
        (["task", "run", "img", "--cpu"], "expected one argument"),
        (["task", "ls", "--status", "weird"], "invalid choice: 'weird'"),
        (["worker"], "required: --id"),
        (["worker", "--id", "w", "--heartbeat-interval", "0"], "at least 0.05"),
        (["-o", "xml", "workers"], "invalid choice: 'xml'"),
        (["register", "w1"], "required: HOST:PORT"),
        (["workers", "extra"], "unrecognized arguments: extra"),
        (["task", "run", "img", "--stop-signal", "SIGFOO"], "unknown stop signal 'SIGFOO': use"),
        (["cancel", "t-1", "--stop-signal", "0"], "TERM (15), INT (2), QUIT (3), HUP (1)"),
        (["task", "ls", "--limit", "0"], "--limit must be at least 1"),
        (["task", "ls", "--limit", "5", "--all"], "not allowed with argument --limit"),
        (["worker", "--listen", "x:1"], "required: --id"),
        (["worker", "rm"], "worker rm needs the worker's ID"),
        (["worker", "w9"], "invalid choice: 'w9'"),
        (["worker", "--id", "w1", "rm", "w9"], "worker rm takes the worker's ID, not --id"),
    ],
)
def test_parser_errors_are_one_line_and_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("cloudai")
    assert ": error: " in lines[0]
    assert fragment in lines[0]
    assert lines[0].endswith("--help)")


def test_subcommand_errors_name_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(["task", "run", "img", "--mem", "x"])
    err = capsys.readouterr().err
    assert err.startswith("cloudai task run: error: ")
    assert err.rstrip().endswith("(see cloudai task run --help)")


def test_version_prints_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("cloudai ")


def test_main_exits_2_on_a_parse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["task", "run", "img", "--cpu", "many"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


# --- main: the CLI edge (CloudAIError → one line + exit code), with a fake client ---------------


@pytest.fixture
def fake_cli_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClient]:
    fake = FakeClient()
    monkeypatch.setattr(cli_main, "Client", lambda master=None, **_: fake)
    yield fake


def test_main_submits_a_task_run(
    fake_cli_client: FakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main.main(["task", "run", "busybox", "echo", "hi", "--cpu", "0.5", "--env", "A=1"])
    assert code == 0
    (spec,) = fake_cli_client.submitted
    assert spec.image == "busybox"
    assert spec.command == ("echo", "hi")
    assert spec.env == {"A": "1"}
    assert spec.resources == Resources(cpu=0.5, mem_gb=0.5)
    assert "submitted" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["task", "run", "bad::tag"], "invalid image reference 'bad::tag'"),
        (["task", "run", "busybox", "--env", "NOEQUALS"], "expected KEY=VALUE"),
        (["task", "run", "busybox", "--cpu", "0"], "cpu must be at least 0.01 cores"),
        (["register", "w1", "nohostport"], "expected HOST:PORT"),
    ],
)
def test_main_reports_invalid_input_in_one_line_with_exit_2(
    fake_cli_client: FakeClient,
    argv: list[str],
    fragment: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_main.main(argv) == 2
    assert fake_cli_client.submitted == []
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert fragment in err


def test_main_json_errors_are_json(
    fake_cli_client: FakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    assert cli_main.main(["-o", "json", "task", "run", "a b"]) == 2
    err = capsys.readouterr().err
    assert "invalid image reference" in json.loads(err)["error"]


# --- shell: the spec's forms ------------------------------------------------------------------


def _no_dispatch(tokens: list[str]) -> int:
    raise AssertionError(f"should not reach the CLI dispatcher: {tokens}")


def test_shell_task_on_a_named_worker(client: FakeClient, out: Renderer) -> None:
    assert shell.execute("task worker-1 ubuntu:latest", client, out, _no_dispatch) == 0  # type: ignore[arg-type]
    (spec,) = client.submitted
    assert spec.image == "ubuntu:latest"
    assert spec.worker_id == "worker-1"
    assert spec.command == ()
    assert spec.resources == Resources(cpu=1.0, mem_gb=0.5)
    assert "submitted" in _printed(out)


def test_shell_task_auto_with_command_and_all_flags(client: FakeClient, out: Renderer) -> None:
    line = "task auto img echo hi -cpu_cores 1.0 -mem 0.5 -storage 1 -gpu 0"
    assert shell.execute(line, client, out, _no_dispatch) == 0  # type: ignore[arg-type]
    (spec,) = client.submitted
    assert spec.image == "img"
    assert spec.worker_id == ""  # auto: the master places it
    assert spec.command == ("echo", "hi")
    assert spec.resources == Resources(cpu=1.0, mem_gb=0.5, storage_gb=1.0, gpu=0)
    assert isinstance(spec.resources.gpu, int)


@pytest.mark.parametrize("anyone", ["auto", "any", "-"])
def test_shell_auto_aliases(client: FakeClient, out: Renderer, anyone: str) -> None:
    shell.execute(f"task {anyone} busybox", client, out, _no_dispatch)  # type: ignore[arg-type]
    assert client.submitted[0].worker_id == ""


def test_shell_flags_may_sit_anywhere_and_quotes_are_kept(
    client: FakeClient, out: Renderer
) -> None:
    line = "task w2 busybox -cpu 2 sh -c 'echo a b' -mem 1 -gpu 2"
    shell.execute(line, client, out, _no_dispatch)  # type: ignore[arg-type]
    (spec,) = client.submitted
    assert spec.worker_id == "w2"
    assert spec.command == ("sh", "-c", "echo a b")
    assert spec.resources == Resources(cpu=2.0, mem_gb=1.0, gpu=2)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("task w1", "usage: task <worker_id> <image>"),
        ("task auto img -mem", "-mem needs a value"),
        ("task auto img -cpu_cores lots", "-cpu_cores must be a number, got 'lots'"),
        ("task auto img -gpu 1.5", "-gpu must be a whole number"),
        ("task auto img -cpu_cores -1", "cpu must be a non-negative number"),
        ("task auto img -cpu_cores 0", "cpu must be at least 0.01 cores"),
        ("task auto bad::tag", "invalid image reference"),
        ("task 'bad worker' img", "invalid worker id"),
        ("task auto 'unclosed", "cannot parse the line"),
    ],
)
def test_shell_spec_form_errors(
    client: FakeClient, out: Renderer, line: str, fragment: str
) -> None:
    with pytest.raises(InvalidArgument) as exc:
        shell.execute(line, client, out, _no_dispatch)  # type: ignore[arg-type]
    assert fragment in exc.value.message
    assert client.submitted == []


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_shell_non_finite_gpu_is_an_invalid_argument(
    client: FakeClient, out: Renderer, value: str
) -> None:
    with pytest.raises(InvalidArgument):
        shell.execute(f"task auto img -gpu {value}", client, out, _no_dispatch)  # type: ignore[arg-type]


# --- shell: other lines -----------------------------------------------------------------------


def test_shell_help_prints_the_commands(client: FakeClient, out: Renderer) -> None:
    assert shell.execute("help", client, out, _no_dispatch) == 0  # type: ignore[arg-type]
    text = _printed(out)
    assert "Commands:" in text
    assert "task <worker_id> <image>" in text
    assert "-cpu_cores" in text
    assert client.submitted == []


@pytest.mark.parametrize("line", ["exit", "quit", "  exit  "])
def test_shell_exit_leaves(client: FakeClient, out: Renderer, line: str) -> None:
    assert shell.execute(line, client, out, _no_dispatch) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("line", ["", "   ", "\n"])
def test_shell_blank_lines_do_nothing(client: FakeClient, out: Renderer, line: str) -> None:
    assert shell.execute(line, client, out, _no_dispatch) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        ("task run img --cpu 2", ["task", "run", "img", "--cpu", "2"]),
        ("task ls", ["task", "ls"]),
        ("task show task-1", ["task", "show", "task-1"]),
        ("task", ["task"]),
        ("tasks --status running", ["task", "ls", "--status", "running"]),
        ("workers", ["workers"]),
        ("cancel a b", ["cancel", "a", "b"]),
    ],
)
def test_shell_other_lines_go_to_the_cli_layer(
    client: FakeClient, out: Renderer, line: str, tokens: list[str]
) -> None:
    seen: list[list[str]] = []

    def dispatch(t: list[str]) -> int:
        seen.append(t)
        return 7

    assert shell.execute(line, client, out, dispatch) == 7  # type: ignore[arg-type]
    assert seen == [tokens]
    assert client.submitted == []


def test_shell_task_run_reaches_the_same_command_layer(client: FakeClient, out: Renderer) -> None:
    dispatch = _shell_dispatcher(build_parser(), client, out)  # type: ignore[arg-type]
    assert shell.execute("task run busybox echo hi --cpu 2", client, out, dispatch) == 0  # type: ignore[arg-type]
    (spec,) = client.submitted
    assert spec.command == ("echo", "hi")
    assert spec.resources.cpu == 2.0


def test_shell_unknown_command_is_a_clear_one_line_error(
    client: FakeClient, out: Renderer, capsys: pytest.CaptureFixture[str]
) -> None:
    dispatch = _shell_dispatcher(build_parser(), client, out)  # type: ignore[arg-type]
    assert shell.execute("frobnicate now", client, out, dispatch) == 2  # type: ignore[arg-type]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "invalid choice: 'frobnicate'" in err[0]
    assert client.submitted == [] and client.calls == []


@pytest.mark.parametrize("head", ["up", "master", "worker", "shell"])
def test_shell_refuses_server_commands(client: FakeClient, out: Renderer, head: str) -> None:
    dispatch = _shell_dispatcher(build_parser(), client, out)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="is not a shell command"):
        shell.execute(head, client, out, dispatch)  # type: ignore[arg-type]


def test_run_shell_survives_errors_and_exits_on_exit(
    client: FakeClient,
    out: Renderer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = "task w1\nfrobnicate\ntask auto busybox echo ok\nexit\ntask auto never\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    dispatch = _shell_dispatcher(build_parser(), client, out)  # type: ignore[arg-type]
    assert shell.run_shell(client, out, dispatch) == 0  # type: ignore[arg-type]
    assert [s.image for s in client.submitted] == ["busybox"]  # nothing after `exit`
    err = capsys.readouterr().err
    assert "usage: task <worker_id> <image>" in err
    assert "invalid choice: 'frobnicate'" in err


def test_run_shell_ends_at_end_of_input(
    client: FakeClient, out: Renderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("task auto busybox\n"))
    assert shell.run_shell(client, out, _no_dispatch) == 0  # type: ignore[arg-type]
    assert len(client.submitted) == 1
