"""Ctrl-C and SIGTERM as a request to stop the training loop at the next step boundary.

The first SIGINT or SIGTERM only sets ``requested``: the loop finishes its step, writes a resumable
checkpoint and raises ``TrainingInterrupted`` (exit code 130). A second Ctrl-C aborts at once.

    >>> import signal
    >>> from trainer.interrupt import StopRequest
    >>> stop = StopRequest()
    >>> with stop.installed():
    ...     signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt: only a request
    >>> stop.requested
    True
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from trainer.errors import TrainerError

# Set to a global step number to deliver a real SIGINT to this process at that step (tests use
# it to interrupt a run at a known place; the handling is the same as a Ctrl-C from a terminal).
INTERRUPT_AT_STEP_ENV = "EDGEBNN_TRAIN_INTERRUPT_AT_STEP"


class TrainingInterrupted(TrainerError):
    """Ctrl-C or SIGTERM: a resumable checkpoint was written; continue with ``--resume``."""

    exit_code = 130


class StopRequest:
    """Turns the first Ctrl-C / SIGTERM into a request to stop at the next step; a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.requested = False
        # The test hook: 0 (unset) never fires.
        self.interrupt_at_step = int(os.environ.get(INTERRUPT_AT_STEP_ENV, "0") or 0)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def reached(self, global_step: int) -> None:
        """Deliver the test hook's SIGINT when ``global_step`` is the one it names."""
        if self.interrupt_at_step and global_step == self.interrupt_at_step:
            signal.raise_signal(signal.SIGINT)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM inside the block; the previous handlers come back after it."""
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set in the main thread
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
