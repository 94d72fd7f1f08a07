"""The progress bar: one line per section, advanced as its operations complete."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["Step", "Ui"]


class Step:
    """One section's bar."""

    def __init__(self, progress: Progress, task: Any) -> None:
        self._progress = progress
        self._task = task

    def advance(self, by: float = 1) -> None:
        self._progress.advance(self._task, by)

    def say(self, what: str) -> None:
        self._progress.update(self._task, status=what)

    def done(self) -> None:
        task = self._progress.tasks[self._task]
        self._progress.update(self._task, completed=task.total, status="done")


class Ui:
    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
        )

    def __enter__(self) -> Ui:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def step(self, description: str, total: float) -> Step:
        return Step(self.progress, self.progress.add_task(description, total=total, status=""))

    def log(self, message: str, markup: bool = True) -> None:
        self.progress.console.print(message, markup=markup, highlight=False)
