"""The progress bar of one training epoch: steps, loss and images/s on stderr, only on a terminal.

>>> from trainer.progress import progress_bar
>>> with progress_bar(False, "epoch 1/1 joint", total=4) as bar:  # disabled: a no-op
...     bar.advance(2)
...     bar.update(loss=0.5, ips=100.0)
>>> bar.progress is None
True
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import Any


class Bar:
    """A rich progress bar for one epoch (no-op when ``progress`` is None)."""

    def __init__(self, progress: Any, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task("", total=total, loss=math.nan, ips=0.0) if progress else None

    def advance(self, steps: int) -> None:
        """Skip ``steps`` steps (a resumed epoch starts part-way)."""
        if self.progress and steps:
            self.progress.advance(self.task, steps)

    def update(self, loss: float, ips: float) -> None:
        """One step done, with its loss and the epoch's images per second so far."""
        if self.progress:
            self.progress.update(self.task, advance=1, loss=loss, ips=ips)


@contextlib.contextmanager
def progress_bar(enabled: bool, description: str, total: int) -> Iterator[Bar]:
    """A progress bar with throughput on stderr, only when enabled and stderr is a terminal."""
    if not (enabled and sys.stderr.isatty()):
        yield Bar(None, total)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:.0f} img/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield Bar(progress, total)
