"""Fuzzing the CLI's and the shell's argument parsing (hypothesis), without a master.

Whatever the words: argparse answers with one line on stderr and exit code 2 (0 for --help);
`cloudai` itself with an exit code and at most one error line; a shell line with a result or a
CloudAIError (which the shell prints as one line) — never a traceback, never "internal error".
The words come from the parser itself (every subcommand and option it knows), mixed with
hostile values. A stub stands in for the master: it answers from memory, and checks that what
the CLI would send converts to protobuf and fits in a request."""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from cloudai.api.v1 import master_pb2
from cloudai.cli import main as cli_main
from cloudai.cli import shell
from cloudai.cli.main import _shell_dispatcher, _split_run, build_parser
from cloudai.cli.render import Renderer
from cloudai.client import CancelAck
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.limits import MAX_REQUEST_BYTES
from cloudai.core.models import Task, TaskSpec
from cloudai.errors import CloudAIError, NotFound, Unavailable
from cloudai.rpc.convert import spec_to_pb
from tests import fuzz  # noqa: F401 - registers the "cloudai-fuzz" settings profile

FUZZ = settings(settings.get_profile("cloudai-fuzz"), database=None)
SERVER_COMMANDS = {"up", "master", "worker"}


def _words(parser: argparse.ArgumentParser) -> set[str]:
    """Every subcommand and option string the parser knows, at any depth."""
    out: set[str] = set()
    for action in parser._actions:
        out.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.add(name)
                out |= _words(sub)
    return out


PARSER = build_parser()  # parse_args leaves it as it was: one serves every example
WORDS = sorted(_words(PARSER) | set(shell._SPEC_FLAGS) | {"auto", "help", "exit"})
VALUES = [
    "0", "-1", "1.5", "nan", "inf", "-inf", "1e309", "1e-300", "2147483648", "4097", "65",
    "0x10", "１", "9" * 5000, "", " ", "--", "-", "=", "K=V", "=V", "busybox", "bad::tag",
    "task-1-ab", "/some/dir", "..", "w1", "../x", "SIGKILL", "SIGFOO", "json", "a" * 300,
]  # fmt: skip
PLAIN = ["1", "0.5", "2", "0", "busybox", "w1", "task-1-ab", "SIGTERM", "K=V", "text", "json"]
# Mostly ordinary values, so a single hostile one is reached behind the others' checks.
VALUE = st.one_of(st.sampled_from(PLAIN), st.sampled_from(PLAIN), st.sampled_from(VALUES))
TOKENS = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(VALUES),
    st.builds(lambda w, v: f"{w}={v}", st.sampled_from(WORDS), st.sampled_from(VALUES)),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
)
PREFIXES = [
    [],
    ["task", "run", "busybox"],
    ["task", "auto", "busybox"],  # the shell's spec form
    ["task"],
    ["cancel"],
    ["worker", "--id", "w"],
]


def _options_for(prefix: list[str]) -> list[str]:
    """The options of the parser `prefix` selects (the shell's spec form: its flags)."""
    if prefix[:2] == ["task", "auto"]:
        return sorted(shell._SPEC_FLAGS)
    parser: argparse.ArgumentParser = PARSER
    for word in prefix:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser = subs[0].choices[word]
    return sorted({o for a in parser._actions for o in a.option_strings})


def _argv(prefix: list[str]) -> st.SearchStrategy[list[str]]:
    pairs = st.lists(st.tuples(st.sampled_from(_options_for(prefix)), VALUE), max_size=4).map(
        lambda ps: [word for pair in ps for word in pair]
    )
    return st.one_of(st.lists(TOKENS, max_size=8), pairs).map(lambda rest: prefix + rest)


ARGV = st.one_of(*(_argv(p) for p in PREFIXES))


class StubClient:
    """The master, from memory. What the CLI would send goes through protobuf, as the real
    client's would (an int32 overflow or an oversized request would raise here)."""

    master = "stub:50051"

    def __init__(self, master: str | None = None, user: str | None = None, **_: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        """Any other call (users, join tokens, paging...): the stub master does not answer."""
        if name.startswith("__"):
            raise AttributeError(name)

        def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise Unavailable("stub master: not reachable")

        return unreachable

    def __enter__(self) -> StubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass

    def ensure_reachable(self) -> None:
        raise Unavailable("stub master: not reachable")

    def submit(self, spec: TaskSpec) -> Task:
        size = master_pb2.SubmitTaskRequest(spec=spec_to_pb(spec)).ByteSize()
        assert size <= MAX_REQUEST_BYTES, f"the CLI would send {size} bytes"
        return Task(task_id="task-1-00000000", spec=spec, status=TaskStatus.PENDING)

    def list_tasks(self, *args: Any, **kwargs: Any) -> list[Task]:
        return []

    def list_workers(self) -> list[Any]:
        return []

    def get_task(self, task_id: str) -> Task:
        raise NotFound(f"task {task_id!r} not found")

    def logs(self, task_id: str, follow: bool = False) -> Iterator[bytes]:
        raise NotFound(f"task {task_id!r} not found")

    def cancel(self, task_id: str) -> str:
        raise NotFound(f"task {task_id!r} not found")

    def cancel_many(self, task_ids: list[str], **kwargs: Any) -> list[CancelAck]:
        return [CancelAck(t, False, "not found", error_code="NOT_FOUND") for t in task_ids]

    def register(self, worker_id: str, address: str) -> Any:
        raise Unavailable(f"cannot reach {address}")

    def drain(self, worker_id: str, drain: bool = True) -> Any:
        raise NotFound(f"worker {worker_id!r} not found")


def _run(fn: Any, *args: Any) -> tuple[Any, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result = fn(*args)
        except SystemExit as exc:
            result = SystemExit(exc.code)
    return result, out.getvalue(), err.getvalue()


def _no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text and "internal error" not in text, text


@FUZZ
@given(ARGV)
def test_parsing_any_argv_is_a_result_or_one_line_and_exit_2(argv: list[str]) -> None:
    result, out, err = _run(lambda: PARSER.parse_args(_split_run(list(argv))))
    _no_traceback(out, err)
    if isinstance(result, SystemExit):
        assert result.code in (0, 2), (argv, result.code, err)
        if result.code == 2:
            lines = err.splitlines()
            assert len(lines) == 1 and ": error: " in lines[0], (argv, err)
    else:
        assert isinstance(result, argparse.Namespace)


@pytest.fixture
def stub_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_main, "Client", StubClient)
    monkeypatch.setattr(cli_main, "build_parser", lambda: PARSER)


@FUZZ
@given(ARGV)
def test_cloudai_with_any_argv_ends_with_an_exit_code(stub_client: None, argv: list[str]) -> None:
    """`cloudai ARGV` against the stub master: an exit code, and each error in one line.
    Server commands are only parsed (they would start servers)."""
    parsed, _, _ = _run(lambda: PARSER.parse_args(_split_run(list(argv))))
    if isinstance(parsed, argparse.Namespace) and parsed.command in SERVER_COMMANDS:
        return
    result, out, err = _run(cli_main.main, list(argv))
    _no_traceback(out, err)
    if isinstance(result, SystemExit):
        assert result.code in (0, 2), (argv, result.code, err)
    else:
        assert isinstance(result, int), (argv, result)
    for line in err.strip().splitlines():  # one line per error (a bulk cancel has several)
        assert line.startswith(("✗ Error: ", '{"error": ', "cloudai")), (argv, err)


LINES = st.one_of(
    ARGV.map(shlex.join),
    ARGV.map(" ".join),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
)


@FUZZ
@given(LINES)
def test_any_shell_line_is_a_result_or_a_clear_error(line: str) -> None:
    """One line of the master> shell: a result, or a CloudAIError the shell prints as one
    line (and goes on). Any other exception would be a bug."""
    client: Any = StubClient()
    out = Renderer("text", Console(file=io.StringIO(), width=120))
    dispatch = _shell_dispatcher(PARSER, client, out)
    try:
        result, stdout, stderr = _run(shell.execute, line, client, out, dispatch)
    except CloudAIError as exc:
        assert exc.message and "\n" not in exc.message.strip(), exc.message
        return
    _no_traceback(stdout, stderr)
    assert result is None or isinstance(result, int), (line, result)
