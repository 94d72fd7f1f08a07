"""The CLI and shell loose ends of "the stop as one state machine": quoting in the shell,
stop signals by any name, a grace of 0, `task ls` pages, `worker rm`, Ctrl-C at the prompt,
bounded log rendering, and `task run`'s options known from its parser alone."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import grpc
import pytest
from rich.console import Console

from cloudai.cli import commands, shell
from cloudai.cli import main as cli_main
from cloudai.cli.main import _split_run, build_parser
from cloudai.cli.render import LOG_TAIL_BYTES, LOG_TAIL_LINES, Renderer, log_tail, task_json
from cloudai.client import TaskPage
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import (
    DEFAULT_GRACE_SECONDS,
    Task,
    TaskResult,
    TaskSpec,
    normalize_signal,
)
from cloudai.errors import InvalidArgument
from cloudai.rpc.convert import spec_from_pb, spec_to_pb
from tests.unit.test_cli_parse import FakeClient


class PagingClient(FakeClient):
    def __init__(self, page: TaskPage) -> None:
        super().__init__()
        self.page = page

    def list_tasks_page(self, *args: Any, limit: int = 0) -> TaskPage:
        self.calls.append(("list_tasks_page", (*args, limit)))
        return self.page


def _out() -> Renderer:
    return Renderer("text", Console(file=io.StringIO(), width=120, highlight=False))


def _printed(out: Renderer) -> str:
    file = out.console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def _no_dispatch(tokens: list[str]) -> int:
    raise AssertionError(f"should not reach the CLI dispatcher: {tokens}")


def _task(spec: TaskSpec, logs: str | None = None) -> Task:
    result = None if logs is None else TaskResult("task-1", "w1", TaskStatus.COMPLETED, logs=logs)
    return Task("task-1", spec, TaskStatus.COMPLETED, worker_id="w1", result=result)


# --- 1. the shell keeps a quoted argument whole; a misspelt option is an error ---------------


def test_shell_keeps_a_quoted_command_as_one_argument_and_show_requotes_it() -> None:
    client, out = FakeClient(), _out()
    line = 'task w1 busybox sh -c "echo hi; sleep 5" -cpu_cores 0.5'
    assert shell.execute(line, client, out, _no_dispatch) == 0  # type: ignore[arg-type]
    (spec,) = client.submitted
    assert spec.command == ("sh", "-c", "echo hi; sleep 5")
    assert spec.resources.cpu == 0.5
    shown = _out()
    shown.task_detail(_task(spec))
    assert "sh -c 'echo hi; sleep 5'" in _printed(shown)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("task w1 busybox true -gpu_cores 1", "unknown option -gpu_cores (did you mean -cpu_cores"),
        ("task w1 busybox true -cpus 2", "unknown option -cpus (did you mean -cpu?)"),
        ("task w1 busybox true -mem_gb 1", "unknown option -mem_gb"),
        ("task w1 busybox true -pids-limit 5", "did you mean -pids_limit?"),
    ],
)
def test_shell_misspelt_options_are_errors_not_the_command(line: str, fragment: str) -> None:
    client = FakeClient()
    with pytest.raises(InvalidArgument) as exc:
        shell.execute(line, client, _out(), _no_dispatch)  # type: ignore[arg-type]
    assert fragment in exc.value.message
    assert "put -- before a command" in exc.value.message
    assert client.submitted == []


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("task w1 busybox ls -la /tmp", ("ls", "-la", "/tmp")),
        ("task w1 busybox sort -k 2 -t , f", ("sort", "-k", "2", "-t", ",", "f")),
        ("task w1 busybox expr 3 + -1", ("expr", "3", "+", "-1")),
        ("task w1 busybox -mem 1 -- prog -cpus 2 -- x", ("prog", "-cpus", "2", "--", "x")),
    ],
)
def test_shell_commands_own_options_stay_with_the_command(
    line: str, command: tuple[str, ...]
) -> None:
    client = FakeClient()
    shell.execute(line, client, _out(), _no_dispatch)  # type: ignore[arg-type]
    assert client.submitted[0].command == command


# --- 2. stop signals by any name --------------------------------------------------------------


@pytest.mark.parametrize("text", ["TERM", "term", "SIGTERM", "sigterm", "15", " Term "])
def test_a_stop_signal_may_be_named_any_usual_way(text: str) -> None:
    assert normalize_signal(text) == "SIGTERM"


def test_signal_numbers_and_not_given() -> None:
    assert [normalize_signal(n) for n in ("9", "2", "kill", "usr1")] == [
        "SIGKILL",
        "SIGINT",
        "SIGKILL",
        "SIGUSR1",
    ]
    assert normalize_signal("") == ""


@pytest.mark.parametrize("text", ["SIGFOO", "0", "99", "SIGSEGV", "-15", "TERMINATE"])
def test_an_unknown_signal_is_refused_with_the_accepted_names(text: str) -> None:
    with pytest.raises(ValueError, match="use one of TERM \\(15\\), INT \\(2\\)"):
        normalize_signal(text)
    assert "unknown stop signal" in TaskSpec("busybox", stop_signal=text).problems()[0]


def test_the_cli_normalizes_stop_signals_for_run_and_cancel() -> None:
    p = build_parser()
    assert p.parse_args(_split_run(["task", "run", "img", "--stop-signal", "int"])).stop_signal == (
        "SIGINT"
    )
    assert p.parse_args(["cancel", "t-1", "--stop-signal", "15"]).stop_signal == "SIGTERM"
    assert p.parse_args(["cancel", "t-1"]).stop_signal == ""


def test_cancel_stop_signal_reaches_the_client_and_refuses_force() -> None:
    seen: dict[str, Any] = {}

    class Cancelling(FakeClient):
        def cancel_many(self, ids: list[str], **kw: Any) -> list[Any]:
            seen.update(kw, ids=ids)
            return []

    client = Cancelling()
    commands.cancel(client, _out(), ["t-1"], stop_signal="SIGINT")  # type: ignore[arg-type]
    assert seen["stop_signal"] == "SIGINT" and seen["ids"] == ["t-1"]
    with pytest.raises(InvalidArgument, match="--force and --stop-signal"):
        commands.cancel(client, _out(), ["t-1"], force=True, stop_signal="SIGINT")  # type: ignore[arg-type]


# --- 4. a grace of 0 is 0; not given is the default -------------------------------------------


def test_grace_zero_is_kept_apart_from_not_given() -> None:
    assert TaskSpec("busybox").grace == DEFAULT_GRACE_SECONDS
    assert TaskSpec("busybox", grace_seconds=0.0).grace == 0.0
    for given in (None, 0.0, 2.5):
        back = spec_from_pb(spec_to_pb(TaskSpec("busybox", grace_seconds=given)))
        assert back.grace_seconds == given


def test_task_run_grace_zero_reaches_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClient()
    monkeypatch.setattr(cli_main, "Client", lambda master=None, **_: fake)
    assert cli_main.main(["task", "run", "busybox", "true", "--grace", "0"]) == 0
    assert cli_main.main(["task", "run", "busybox", "true"]) == 0
    assert [s.grace_seconds for s in fake.submitted] == [0.0, None]
    shown = task_json(_task(fake.submitted[0]))
    assert (shown["grace_seconds"], shown["stop_signal"]) == (0.0, "SIGTERM")


def test_task_run_help_says_the_real_grace_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["task", "run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default {DEFAULT_GRACE_SECONDS:g}; 0: SIGKILL right after the signal)" in text


# --- 5. task ls: a page, and how many more --------------------------------------------------


def _tasks(n: int) -> list[Task]:
    return [_task(TaskSpec("busybox", ("true",)))] * n


def test_task_ls_says_how_many_more_match() -> None:
    client, out = PagingClient(TaskPage(_tasks(3), total=7903)), _out()
    assert commands.task_ls(client, out, limit=3) == 0  # type: ignore[arg-type]
    assert client.calls == [("list_tasks_page", ("", "", "", "", 3))]
    last = _printed(out).splitlines()[-1]
    assert last == "… 7,900 more (older) task(s) match: --limit N or --all to see them"


def test_task_ls_whole_list_has_no_footer_and_json_stays_a_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _out()
    commands.task_ls(PagingClient(TaskPage(_tasks(2), total=2)), out, limit=100)  # type: ignore[arg-type]
    assert "more" not in _printed(out)
    commands.task_ls(
        PagingClient(TaskPage(_tasks(2), total=9)),  # type: ignore[arg-type]
        Renderer("json", Console(file=io.StringIO())),
        limit=2,
    )
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_task_ls_limit_and_all_parse() -> None:
    p = build_parser()
    assert (p.parse_args(["task", "ls"]).limit, p.parse_args(["task", "ls"]).all) == (100, False)
    assert p.parse_args(["task", "ls", "--limit", "5"]).limit == 5
    assert p.parse_args(["task", "ls", "--all"]).all is True


# --- 6. task show renders a bounded tail, linearly -------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1000, LOG_TAIL_BYTES, 8 << 20, 40 << 20])
def test_the_tail_of_one_long_line_is_bounded(size: int) -> None:
    tail = log_tail("x" * size)
    assert len(tail.text.encode()) <= LOG_TAIL_BYTES
    assert tail.text == "x" * min(size, LOG_TAIL_BYTES)
    assert tail.partial == (size > LOG_TAIL_BYTES)
    assert tail.whole == (size <= LOG_TAIL_BYTES)
    if not tail.whole:
        assert tail.total_bytes == size


def test_the_tail_keeps_the_last_lines_and_counts_them() -> None:
    text = "".join(f"line {i}\n" for i in range(1, 1001))
    tail = log_tail(text)
    assert tail.text.splitlines() == [f"line {i}" for i in range(1001 - LOG_TAIL_LINES, 1001)]
    assert (tail.lines, tail.total_lines, tail.partial) == (LOG_TAIL_LINES, 1000, False)
    assert log_tail("a\nb").text == "a\nb" and log_tail("a\nb").whole
    assert log_tail("a\r\nb\r\n").text == "a\nb"
    assert log_tail("\n").lines == 1 and log_tail("").lines == 0


def test_the_tail_cuts_multibyte_text_at_a_character() -> None:
    tail = log_tail("é" * LOG_TAIL_BYTES)  # 2 bytes each
    assert len(tail.text.encode()) <= LOG_TAIL_BYTES
    assert set(tail.text) == {"é"} and tail.partial


def test_task_show_of_an_8_mib_single_line_log_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The work is bounded: Rich is handed at most LOG_TAIL_BYTES of the output (whatever its
    size, the rendered page is the same size), and the heading says what was cut."""
    from rich import text as rich_text

    handed: list[int] = []
    real_init = rich_text.Text.__init__

    def spy(self: Any, text: str = "", *args: Any, **kwargs: Any) -> None:
        handed.append(len(text))
        real_init(self, text, *args, **kwargs)

    monkeypatch.setattr(rich_text.Text, "__init__", spy)
    sizes = []
    for size in (1 << 20, 8 << 20):
        out = _out()
        out.task_detail(_task(TaskSpec("busybox", ("yes",)), logs="y" * size))
        page = _printed(out)
        sizes.append(len(page.encode()))
        assert f"the last {LOG_TAIL_BYTES:,} of {size:,} bytes" in page
        assert "all: cloudai logs task-1" in page
    assert max(handed) <= LOG_TAIL_BYTES
    assert sizes[0] == sizes[1] < 4 * LOG_TAIL_BYTES


# --- 7. worker rm and worker --id share `cloudai worker` -------------------------------------


def test_worker_rm_and_worker_run_parse_apart() -> None:
    p = build_parser()
    rm = p.parse_args(["worker", "rm", "w9", "-o", "json"])
    assert (rm.action, rm.rm_id, rm.output) == ("rm", "w9", "json")
    assert p.parse_args(["--master", "h:1", "worker", "rm", "w9"]).master == "h:1"
    run = p.parse_args(["worker", "--id", "w1", "--cpu", "2", "--master", "m:1"])
    assert (run.action, run.worker_id, run.cpu, run.master) == (None, "w1", 2.0, "m:1")


def test_worker_help_documents_both_forms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--help"])
    text = capsys.readouterr().out
    assert "cloudai worker --id ID [options]" in text
    assert "cloudai worker rm ID" in text
    assert "refused (exit 5) while a" in " ".join(text.split())


def test_worker_rm_goes_to_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    removed: list[str] = []

    class Removing(FakeClient):
        def remove_worker(self, worker_id: str) -> Any:
            removed.append(worker_id)
            from cloudai.core.models import Worker
            from cloudai.core.resources import Resources

            return Worker(worker_id, "127.0.0.1:1", Resources())

    fake = Removing()
    monkeypatch.setattr(cli_main, "Client", lambda master=None, **_: fake)
    assert cli_main.main(["worker", "rm", "w9"]) == 0
    assert removed == ["w9"]
    dispatch = cli_main._shell_dispatcher(build_parser(), fake, _out())  # type: ignore[arg-type]
    assert shell.execute("worker rm w8", fake, _out(), dispatch) == 0  # type: ignore[arg-type]
    assert removed == ["w9", "w8"]
    with pytest.raises(InvalidArgument, match="not a shell command"):
        shell.execute("worker --id w1", fake, _out(), dispatch)  # type: ignore[arg-type]


# --- 9. Ctrl-C at the prompt clears the line; Ctrl-D leaves ---------------------------------


def test_ctrl_c_at_the_prompt_drops_the_line_and_ctrl_d_leaves() -> None:
    client, out = FakeClient(), _out()
    lines: list[Any] = ["task auto busybox", KeyboardInterrupt, "task auto busybox", EOFError]

    def read() -> str:
        item = lines.pop(0)
        if isinstance(item, type):
            raise item
        return str(item)

    assert shell._loop(read, client, out, _no_dispatch, interactive=True) == 0  # type: ignore[arg-type]
    assert len(client.submitted) == 2 and lines == []


def test_ctrl_c_without_a_terminal_still_leaves() -> None:
    def read() -> str:
        raise KeyboardInterrupt

    assert shell._loop(read, FakeClient(), _out(), _no_dispatch, interactive=False) == 0  # type: ignore[arg-type]


# --- 12. task run's options come from its parser ---------------------------------------------


def test_split_run_knows_every_option_its_parser_has() -> None:
    parser = build_parser()
    run = _sub(_sub(parser, "task"), "run")
    run.add_argument("--brand-new", metavar="V")
    run.add_argument("--switch", action="store_true")
    argv = ["task", "run", "img", "cmd", "--brand-new", "v", "--switch", "arg"]
    assert _split_run(argv, parser) == [
        "task",
        "run",
        "--brand-new",
        "v",
        "--switch",
        "--",
        "img",
        "cmd",
        "arg",
    ]
    args = parser.parse_args(_split_run(argv, parser))
    assert (args.brand_new, args.switch, args.cmd) == ("v", True, ["cmd", "arg"])
    assert not hasattr(cli_main, "_RUN_VALUE_FLAGS")


def _sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub: argparse.ArgumentParser = action.choices[name]
    return sub


# --- 10. a worker's port is not a master ------------------------------------------------------


def test_an_unimplemented_call_at_a_non_master_says_so() -> None:
    from cloudai.client import Client

    class Unimplemented(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNIMPLEMENTED

        def details(self) -> str:
            return "Method not found!"

    client = Client("127.0.0.1:1")
    try:
        client._stub = type(  # every call, GetClusterInfo included, is unknown there
            "Stub", (), {"__getattr__": lambda self, name: _raiser(Unimplemented())}
        )()
        err = client._error(Unimplemented())
    finally:
        client.close()
    assert "is not a cloudai master (a worker's port?)" in err.message
    assert "Method not found" not in err.message


def _raiser(exc: Exception) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return call
