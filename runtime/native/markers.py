"""The benchmark worker with instruction-count markers around every invoke, for any runtime.

``python -m runtime.native.markers MODEL --runtime litert ...`` takes the arguments of
``python -m runtime.worker`` and runs the same measurement, with one change: every ``invoke`` of
the engine is wrapped in ``ebnn_count_marker(EBNN_MARK_WINDOW_BEGIN)`` /
``ebnn_count_marker(EBNN_MARK_WINDOW_END)`` calls into ``libedgebnn.so``. On aarch64 each
marker is a HINT instruction (a NOP) that the QEMU plugin of ``devices/plugins`` watches, so the
guest instructions of one invoke are counted exactly when the worker runs under that plugin
(``devices.counting``: ``edgebnn bench ... --host emulator --count-instructions``). Before the
first invoke the wrapper marks one empty window (the same calls around a Python function that
does nothing): its count is the wrappers' own cost, which the host subtracts. The native runtime
also marks its own inference and op boundaries (``EDGEBNN_NATIVE_MARKERS=1``, set by the
counting wrapper), which gives the per-op counts.

Elsewhere the markers cost a function call each and count nothing:

    >>> from runtime.native.markers import MarkedEngine
    >>> calls = []
    >>> class Engine:
    ...     version = "1"
    ...     def invoke(self):
    ...         calls.append("invoke")
    >>> engine = MarkedEngine(Engine(), marker=lambda kind: calls.append(kind))
    >>> engine.invoke()
    >>> calls, engine.version
    ([3, 4, 3, 'invoke', 4], '1')
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

WINDOW_BEGIN, WINDOW_END = 3, 4  # EBNN_MARK_WINDOW_BEGIN / _END of include/edgebnn.h


def _nothing() -> None:
    """The empty window's body: a Python call, like the engine's invoke."""


class MarkedEngine:
    """An engine whose ``invoke`` is one counted window; everything else is the engine's."""

    def __init__(self, engine: Any, marker: Callable[[int], None]):
        self._engine, self._marker = engine, marker
        self._mark_empty_window()

    def _mark_empty_window(self) -> None:
        # exactly the shape of invoke() below, around a call that does nothing
        mark, inner = self._marker, _nothing
        mark(WINDOW_BEGIN)
        inner()
        mark(WINDOW_END)

    def invoke(self) -> None:
        mark, inner = self._marker, self._engine.invoke
        mark(WINDOW_BEGIN)
        inner()
        mark(WINDOW_END)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def library_marker() -> Callable[[int], None]:
    """``ebnn_count_marker`` of the native library (BenchError naming `make native` when missing)."""
    import ctypes

    from runtime import native

    function = native.load_library().ebnn_count_marker
    function.argtypes, function.restype = [ctypes.c_int], None
    return function


def main(argv: list[str] | None = None) -> int:
    from runtime import engines, worker

    marker = library_marker()
    load_engine = engines.load_engine

    def load_marked(*args: Any, **kwargs: Any) -> MarkedEngine:
        return MarkedEngine(load_engine(*args, **kwargs), marker)

    engines.load_engine = load_marked  # the worker looks it up on the module at each call
    return worker.main(argv)


if __name__ == "__main__":
    sys.exit(main())
