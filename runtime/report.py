"""The benchmark report: one object for the Python API, the CLI table, the JSON file and the plots.

    >>> import io, tempfile, pathlib
    >>> from rich.console import Console
    >>> from runtime.record import new_record
    >>> from runtime.report import BenchReport
    >>> record = new_record("bnn.tflite", "lce", 1, "default", True, runs=3, warmup=1) | {
    ...     "status": "ok", "median_ms": 2.0, "p90_ms": 2.5, "min_ms": 1.9, "cv": 0.01, "load_ms": 3.0,
    ...     "first_ms": 2.2, "peak_rss_mb": 45.0}
    >>> system = {"cpu_model": "any", "architecture": "x86_64", "os": "Linux", "os_bits": 64, "cores": 2,
    ...           "engines": {}, "date": "2026-01-01", "device": "host"}
    >>> report = BenchReport(system, [record])
    >>> console = Console(file=io.StringIO(), width=150)
    >>> report.print(console)                   # the rich table, then the warnings
    >>> "bnn" in console.file.getvalue() and report.ok
    True
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "bench.json"
    >>> report.write_json(path)                  # edgebnn-bench/1, validated against runtime/schema.json
    >>> BenchReport.read_json(path).results[0]["median_ms"]
    2.0

The JSON document is ``{"schema": "edgebnn-bench/1", "system": {...}, "settings": {...},
"warnings": [...], "results": [record, ...]}``; ``runtime/schema.json`` is its JSON Schema and
``runtime/record.py`` builds the records. ``plot`` draws the charts of ``runtime/plots.py``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from formats.files import write_atomic
from runtime.errors import BenchError
from runtime.record import CV_WARN, SCHEMA_ID, runtime_label, validate


@dataclass
class BenchReport:
    system: dict[str, Any]
    results: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r["status"] == "ok" for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ID,
            "system": self.system,
            "settings": self.settings,
            "warnings": self.warnings,
            "results": self.results,
        }

    def write_json(self, path: str | os.PathLike) -> None:
        document = self.to_dict()
        validate(document)
        write_atomic(path, (json.dumps(document, indent=1) + "\n").encode())

    @classmethod
    def read_json(cls, path: str | os.PathLike) -> BenchReport:
        try:
            document = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise BenchError(f"cannot read benchmark report {path}: {error}") from None
        validate(document)
        return cls(
            document["system"],
            document["results"],
            document.get("settings", {}),
            document.get("warnings", []),
        )

    def plot(self, path: str | os.PathLike) -> None:
        """PNG charts of the results (matplotlib, imported only here)."""
        from runtime.plots import plot_results

        plot_results(self.system, self.results, path)

    def table(self):
        """A rich Table, one row per configuration."""
        from rich.markup import escape
        from rich.table import Table

        system = self.system
        title = (
            f"{system.get('device', 'host')}: {system['cpu_model']} ({system['architecture']}, "
            f"{system['os_bits']}-bit, {system['cores']} cores)"
        )
        if system.get("emulated"):
            title += " [EMULATED: wall times are not real speed]"
        table = Table(title=title, title_justify="left")
        for name in ("model", "runtime", "thr", "median ms", "p90 ms", "min ms", "cv", "x first", "load ms",
                     "first ms", "peak MB", "size KB", "status"):  # fmt: skip
            table.add_column(name, justify="left" if name in ("model", "runtime", "status") else "right")
        for r in self.results:
            head = (
                escape(r["model_name"]),
                escape(runtime_label(r)),
                str(r["threads"]),
            )  # "[...]" is not markup
            if r["status"] != "ok":
                table.add_row(
                    *head, *[""] * 8, _kb(r), f"[red]{r['status']}[/red]: {escape(str(r['error']))}"
                )
                continue
            cv = f"{100 * r['cv']:.1f}%"
            table.add_row(
                *head,
                f"{r['median_ms']:.3f}",
                f"{r['p90_ms']:.3f}",
                f"{r['min_ms']:.3f}",
                f"[yellow]{cv}[/yellow]" if r["cv"] > CV_WARN else cv,
                f"{r['ratio']:.2f}" if r.get("ratio") is not None else "",
                f"{r['load_ms']:.1f}",
                f"{r['first_ms']:.2f}",
                f"{r['peak_rss_mb']:.1f}",
                _kb(r),
                "ok",
            )
        return table

    def print(self, console=None) -> None:
        import sys

        from rich.console import Console
        from rich.markup import escape

        # Piped into a file or a CI log, rich would wrap the table at 80 columns.
        console = console or Console(width=None if sys.stdout.isatty() else 170)
        console.print(self.table())
        for warning in self.warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


def _kb(record: dict[str, Any]) -> str:
    size = record.get("model_size_bytes")
    return f"{size / 1024:.1f}" if size is not None else ""
