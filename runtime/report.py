"""The benchmark report: one object for the Python API, the CLI table, the JSON file and the plots.

    >>> report = benchmark(["bnn.tflite", "float.tflite"])
    >>> report.print()                      # rich table + warnings
    >>> report.write_json("bench.json")     # edgebnn-bench/1, validated against runtime/schema.json
    >>> BenchReport.read_json("bench.json").results[0]["median_ms"]

The JSON document is ``{"schema": "edgebnn-bench/1", "system": {...}, "settings": {...},
"warnings": [...], "results": [record, ...]}``; ``runtime/schema.json`` is its JSON Schema.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import BenchError

SCHEMA_ID = "edgebnn-bench/1"
SCHEMA_PATH = Path(__file__).with_name("schema.json")
CV_WARN = 0.05  # above this coefficient of variation a median is not trustworthy to a few percent


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def validate(document: dict[str, Any]) -> None:
    """Raise BenchError if ``document`` does not follow runtime/schema.json."""
    import jsonschema

    try:
        jsonschema.validate(document, load_schema())
    except jsonschema.ValidationError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise BenchError(
            f"benchmark report does not follow runtime/schema.json at {where}: {error.message}"
        ) from None


def runtime_label(record: dict[str, Any]) -> str:
    """``runtime[kernel, no-xnnpack]``: the runtime with its non-default flags."""
    runtime = record["runtime"]
    flags = []
    if record.get("kernel") not in (None, "default"):
        flags.append(record["kernel"])
    if record.get("xnnpack") is False:
        flags.append("no-xnnpack")
    if flags:
        runtime += f"[{', '.join(flags)}]"
    return runtime


def config_label(record: dict[str, Any]) -> str:
    """``model · runtime[flags] · Nt``: how warnings and plots name a configuration."""
    return f"{record['model_name']} · {runtime_label(record)} · {record['threads']}t"


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, then rename it over ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise BenchError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        from runtime.plots import plot_report

        plot_report(self, path)

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
