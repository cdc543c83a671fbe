"""Progress while a command waits for results: done / failed / rate / ETA on stderr.

On a terminal, a live rich progress bar; elsewhere plain lines, at most one every
``interval_s`` plus a last one, so a log keeps a record without a line per result.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

from schemas import ExecutionResult, ResultStatus


class Progress:
    def __init__(self, total: int, *, stream: TextIO | None = None, interval_s: float = 5.0,
                 label: str = "results", clock: Any = time.monotonic) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self._stream = stream or sys.stderr
        self._interval = interval_s
        self._label = label
        self._clock = clock
        self._started = clock()
        self._last_line = self._started
        self._live: Any = None
        self._task: Any = None

    # -- what the waiting command calls --------------------------------------------------

    def __enter__(self) -> Progress:
        if self._stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._live = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TaskProgressColumn(), TextColumn("[red]{task.fields[failed]} failed"),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=Console(file=self._stream), transient=False)
            self._live.start()
            self._task = self._live.add_task(self._label, total=self.total, failed=0,
                                             rate="")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()
        else:
            self._line()

    def add(self, result: ExecutionResult) -> None:
        self.done += 1
        if result.status is not ResultStatus.SUCCEEDED:
            self.failed += 1
        if self._live is not None:
            self._live.update(self._task, completed=self.done, failed=self.failed,
                              rate=f"{self.rate():.1f}/s")
        elif self._clock() - self._last_line >= self._interval:
            self._line()

    # -- numbers -------------------------------------------------------------------------

    def rate(self) -> float:
        elapsed = self._clock() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None

    def text(self) -> str:
        eta = self.eta_s()
        return (f"{self._label}: {self.done}/{self.total} done, {self.failed} failed, "
                f"{self.rate():.1f}/s, ETA {'-' if eta is None else f'{eta:.0f}s'}")

    def _line(self) -> None:
        self._last_line = self._clock()
        print(self.text(), file=self._stream, flush=True)


class ResultTable:
    """``results follow`` on a terminal: one aligned, coloured row per result as it
    arrives (a header first), instead of raw output."""

    COLUMNS: tuple[tuple[str, int | None], ...] = (
        ("time", 8), ("request", 20), ("try", 3), ("status", 9), ("route", 5), ("ms", 6),
        ("output / error", None))  # the rest of the line
    STYLE = {"succeeded": "green", "failed": "red", "timed_out": "yellow",
             "rejected": "magenta"}

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console

        self._console = Console(file=stream, highlight=False)
        self._header = False

    def _row(self, cells: list[str], style: str | None = None, header: bool = False) -> None:
        from rich.table import Table

        table = Table(show_header=False, box=None, pad_edge=False, padding=(0, 1))
        for _, width in self.COLUMNS:
            table.add_column(width=width, min_width=width, no_wrap=True, overflow="ellipsis")
        table.add_row(*cells, style="bold" if header else None)
        if style:
            table.columns[3].style = style
        self._console.print(table)

    def add(self, result: ExecutionResult) -> None:
        from datetime import datetime

        if not self._header:
            self._row([name for name, _ in self.COLUMNS], header=True)
            self._header = True
        status = result.status.value
        text = (result.error.message if result.error and status != "succeeded"
                else result.stdout.strip().replace("\n", " | "))
        self._row([datetime.now().strftime("%H:%M:%S"), result.request_id, str(result.attempt),
                   status, result.route.value if result.route else "-",
                   f"{result.duration_ms:.0f}", text], style=self.STYLE.get(status))
