"""Progress bars for long steps, silent when nobody watches.

    with progress(quiet=args.quiet) as bars:
        task = bars.add("Hessian probes", total=None)
        bars.update(task, completed=24, info="5/9 layers active")

A :class:`Progress` draws with ``rich.progress`` only when stderr is a terminal and ``quiet``
is False; otherwise every method is a no-op, so tests and logs stay clean.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator


class Progress:
    """A thin wrapper over ``rich.progress.Progress`` that may be switched off.

    Attributes:
        enabled: whether anything is drawn.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

            self._bar = RichProgress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                                     console=Console(file=sys.stderr), transient=False)

    def start(self) -> None:
        if self._bar is not None:
            self._bar.start()

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def add(self, description: str, total: float | None = None) -> int:
        """Add a task; returns its id (-1 when disabled)."""
        if self._bar is None:
            return -1
        return int(self._bar.add_task(description, total=total, info=""))

    def update(self, task: int, *, advance: float | None = None, completed: float | None = None,
               total: float | None = None, info: str | None = None) -> None:
        """Move a task forward (``advance``) or to ``completed``; ``info`` is a short note."""
        if self._bar is None or task < 0:
            return
        kwargs: dict[str, Any] = {}
        if advance is not None:
            kwargs["advance"] = advance
        if completed is not None:
            kwargs["completed"] = completed
        if total is not None:
            kwargs["total"] = total
        if info is not None:
            kwargs["info"] = info
        self._bar.update(task, **kwargs)

    def finish(self, task: int, info: str | None = None) -> None:
        """Mark a task complete (its total becomes what it reached when it had none)."""
        if self._bar is None or task < 0:
            return
        t = self._bar.tasks[[x.id for x in self._bar.tasks].index(task)]
        total = t.total if t.total is not None else max(t.completed, 1)
        self._bar.update(task, total=total, completed=total, **({"info": info} if info is not None else {}))


@contextlib.contextmanager
def progress(quiet: bool = False) -> Iterator[Progress]:
    """A :class:`Progress` that draws only on a terminal and when not ``quiet``."""
    bars = Progress(enabled=not quiet and sys.stderr.isatty())
    bars.start()
    try:
        yield bars
    finally:
        bars.stop()
