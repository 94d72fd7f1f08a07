"""The interactive master> shell: the spec's command forms plus every client subcommand."""

from __future__ import annotations

import difflib
import math
import shlex
import sys
from collections.abc import Callable, Iterable

from cloudai.cli import commands
from cloudai.cli.render import Renderer
from cloudai.client import Client
from cloudai.config import home
from cloudai.core.limits import quote
from cloudai.core.policy import PRIORITY_DEFAULT, RunPolicy, parse_duration
from cloudai.errors import CloudAIError, InvalidArgument

__all__ = ["HELP", "run_shell"]

HELP = """\
Commands:
  task <worker_id> <image> [cmd ...] [-cpu_cores N] [-mem GB] [-storage GB] [-gpu N]
       [-pids_limit N] [-timeout 90s|2h] [-retries N] [-retry_on timeout] [-priority 0-1000]
       [-preemptible]            - Run a task on a worker ("auto" lets the master place it);
                                   quote as in a shell: sh -c "echo hi; sleep 5"; put --
                                   before a command whose own options look like these
  task run IMAGE [CMD ...] [--worker ID] [--cpu N] [--mem GB] [--env K=V] [--name NAME]
       [--grace S] [--stop-signal SIG] [--pids-limit N] [--timeout D] [--retries N]
       [--retry-on timeout] [--priority N] [--preemptible]
  task ls [--status S] [--worker ID] [--limit N | --all]
                                 - List tasks (the newest 100 unless told otherwise);
                                   --status pending: the queue, in order, and why each waits
  task show <task_id>            - Show a task: status, exit code, times, events
  workers                        - Show workers: state, capacity, allocated, available
  monitor <task_id>              - Watch a task until it ends
  logs <task_id> [--follow]      - Print a task's output
  cancel <task_id>               - Cancel a running task
  cancel <task_id>... [--force] [--grace S] [--stop-signal SIG] [--reason TEXT]
  cancel --worker ID | --status S | --owner USER | --all [--yes]
                                 - Cancel every active task that matches
  register <worker_id> <host:port> - Register a worker by address
  drain <worker_id> [--cancel]   - Stop placing tasks on a worker (and cancel its tasks)
  undrain <worker_id>            - Let a drained worker take tasks again
  worker rm <worker_id>          - Forget a worker that runs no active task (admins)
  help                           - Show this help
  exit                           - Leave the shell (or Ctrl-D; Ctrl-C clears the line)

Examples:
  task auto cloudai-test/busybox echo hello
  task worker-1 ubuntu:latest -cpu_cores 1.0 -mem 0.5
  task auto trainer:latest python train.py -gpu 1 -timeout 2h -retries 2 -priority 800
  cancel task-123
"""

_SPEC_FLAGS = {
    "-cpu_cores": "cpu",
    "-cpu": "cpu",
    "-mem": "mem",
    "-storage": "storage",
    "-gpu": "gpu",
    "-pids_limit": "pids_limit",
    "-retries": "retries",
    "-priority": "priority",
}
# Options of the spec form that take a word (or none), not a number.
_WORD_FLAGS = {"-timeout": "timeout", "-retry_on": "retry_on"}
_SWITCHES = {"-preemptible": "preemptible"}
_ALL_FLAGS = [*_SPEC_FLAGS, *_WORD_FLAGS, *_SWITCHES]
_COMMANDS = [
    "task",
    "workers",
    "monitor",
    "logs",
    "cancel",
    "register",
    "drain",
    "undrain",
    "worker",
    "help",
    "exit",
    "quit",
]


def _unknown_flag(token: str) -> str | None:
    """The problem with a token that reads as a misspelt option of the spec form (`-gpu_cores`,
    `-cpus`), or None. A command's own options (`-c`, `-la`) are none of ours and stay in the
    command."""
    name = token[1:].split("=", 1)[0]
    if not token.startswith("-") or token.startswith("--") or not name or token in _ALL_FLAGS:
        return None
    if name.replace(".", "", 1).isdigit():  # a negative number
        return None
    ours = [f[1:] for f in _ALL_FLAGS]
    near = difflib.get_close_matches(name, ours, n=2, cutoff=0.8)
    if "_" not in name and not near:
        return None
    hint = f" (did you mean {' or '.join('-' + n for n in near)}?)" if near else ""
    return (
        f"unknown option {token[:40]}{hint}: the options are {', '.join(_ALL_FLAGS)}; put -- "
        "before a command whose own options look like these"
    )


def _spec_task(client: Client, out: Renderer, tokens: list[str]) -> int:
    """The spec's form: task <worker_id> <image> [cmd...] [-cpu_cores N] [-mem N] ...

    Options may sit anywhere after the image; everything after `--` is the command's."""
    if len(tokens) < 2:
        raise InvalidArgument("usage: task <worker_id> <image> [cmd ...] [-cpu_cores N] [-mem GB]")
    worker, image, rest = tokens[0], tokens[1], tokens[2:]
    values: dict[str, float] = {}
    words: dict[str, str] = {}
    command: list[str] = []
    i = 0
    while i < len(rest):
        flag = rest[i]
        if flag == "--":
            command.extend(rest[i + 1 :])
            break
        if (problem := _unknown_flag(flag)) is not None:
            raise InvalidArgument(problem)
        if flag in _SWITCHES:
            words[_SWITCHES[flag]] = "yes"
            i += 1
            continue
        if flag in _WORD_FLAGS:
            if i + 1 >= len(rest):
                raise InvalidArgument(f"{flag} needs a value")
            words[_WORD_FLAGS[flag]] = rest[i + 1]
            i += 2
            continue
        if flag in _SPEC_FLAGS:
            if i + 1 >= len(rest):
                raise InvalidArgument(f"{flag} needs a value")
            try:
                values[_SPEC_FLAGS[flag]] = float(rest[i + 1])
            except ValueError:
                raise InvalidArgument(
                    f"{flag} must be a number, got {quote(rest[i + 1])}"
                ) from None
            i += 2
            continue
        command.append(flag)
        i += 1
    whole = {}
    for key, default in (("gpu", 0), ("pids_limit", 0), ("retries", 0), ("priority", None)):
        if key not in values and default is None:
            continue
        value = values.get(key, 0.0)
        if not math.isfinite(value) or value != int(value):
            raise InvalidArgument(f"-{key} must be a whole number, got {value:g}")
        whole[key] = int(value)
    return commands.task_run(
        client,
        out,
        image,
        command,
        worker="" if worker in ("auto", "-", "any") else worker,
        cpu=values.get("cpu", 1.0),
        mem=values.get("mem", 0.5),
        storage=values.get("storage", 0.0),
        gpu=whole["gpu"],
        pids_limit=whole["pids_limit"],
        policy=_policy(whole, words),
    )


def _policy(whole: dict[str, int], words: dict[str, str]) -> RunPolicy:
    """The spec form's -timeout, -retries, -retry_on, -priority and -preemptible."""
    timeout = None
    if "timeout" in words:
        try:
            timeout = parse_duration(words["timeout"])
        except ValueError as exc:
            raise InvalidArgument(f"-timeout: {exc}") from None
    retry_on = words.get("retry_on", "failure")
    if retry_on not in ("failure", "timeout"):
        raise InvalidArgument(f"-retry_on must be failure or timeout, got {quote(retry_on)}")
    return RunPolicy(
        timeout_seconds=timeout,
        retries=whole["retries"],
        retry_on_timeout=retry_on == "timeout",
        priority=whole.get("priority", PRIORITY_DEFAULT),
        preemptible="preemptible" in words,
    )


def execute(
    line: str, client: Client, out: Renderer, cli_dispatch: Callable[[list[str]], int]
) -> int | None:
    """Run one shell line; None means: leave the shell."""
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise InvalidArgument(f"cannot parse the line: {exc}") from None
    if not tokens:
        return 0
    head, rest = tokens[0], tokens[1:]
    if head in ("exit", "quit"):
        return None
    if head == "help":
        out.console.print(HELP, markup=False, highlight=False)
        return 0
    if head == "task" and rest and rest[0] not in ("run", "ls", "show", "-h", "--help"):
        return _spec_task(client, out, rest)
    if head == "tasks":
        tokens = ["task", "ls", *rest]
    return cli_dispatch(tokens)


class _Completer:
    """Tab completion: commands, then task IDs or worker IDs where they fit."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def words(self, before: str) -> Iterable[str]:
        parts = before.split()
        if len(parts) == 0 or (len(parts) == 1 and not before.endswith(" ")):
            return _COMMANDS
        head = parts[0]
        try:
            if head in ("drain", "undrain") or parts[:2] == ["worker", "rm"]:
                return [w.worker_id for w in self.client.list_workers()]
            if head == "worker":
                return ["rm"]
            if head in ("cancel", "monitor", "logs") or parts[:2] == ["task", "show"]:
                return [t.task_id for t in self.client.list_tasks()]
            if head == "task" and len(parts) <= 2:
                return [
                    "run",
                    "ls",
                    "show",
                    "auto",
                    *(w.worker_id for w in self.client.list_workers()),
                ]
        except CloudAIError:
            return []
        return []


def run_shell(client: Client, out: Renderer, cli_dispatch: Callable[[list[str]], int]) -> int:
    out.console.print(
        f"[bold]cloudai[/] shell: master [cyan]{client.master}[/]. Type [bold]help[/] for commands."
    )
    interactive = sys.stdin.isatty()
    read = _interactive_reader(client) if interactive else _plain_reader()
    return _loop(read, client, out, cli_dispatch, interactive)


def _loop(
    read: Callable[[], str],
    client: Client,
    out: Renderer,
    cli_dispatch: Callable[[list[str]], int],
    interactive: bool,
) -> int:
    """Read and run lines until `exit`, Ctrl-D (EOFError) or the end of the input. At a
    terminal, Ctrl-C while typing drops the line, as in any shell; Ctrl-C while a command
    runs stops the command."""
    while True:
        try:
            line = read()
        except KeyboardInterrupt:
            if interactive:
                continue  # the line typed so far is dropped: prompt again
            out.console.print()
            return 0
        except EOFError:
            out.console.print()
            return 0
        try:
            if execute(line, client, out, cli_dispatch) is None:
                return 0
        except CloudAIError as exc:
            out.error(exc.message)
        except KeyboardInterrupt:
            out.console.print("^C")
        except Exception as exc:  # the shell's edge: a bug is one line, the shell goes on
            out.error(commands.unexpected(exc))


def _plain_reader() -> Callable[[], str]:
    def read() -> str:
        sys.stdout.write("master> ")
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line

    return read


def _interactive_reader(client: Client) -> Callable[[], str]:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import Completer, Completion
    from prompt_toolkit.history import FileHistory

    source = _Completer(client)

    class PTCompleter(Completer):
        def get_completions(self, document, complete_event):  # type: ignore[no-untyped-def]
            word = document.get_word_before_cursor(WORD=True)
            for candidate in source.words(document.text_before_cursor):
                if candidate.startswith(word):
                    yield Completion(candidate, start_position=-len(word))

    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(home() / "shell_history")), completer=PTCompleter()
    )
    return lambda: session.prompt("master> ")
