"""The shape of the code (ARCHITECTURE.md, CONTRIBUTING.md), checked on the source and in fresh interpreters.

Every import counts, at module level or inside a function (a lazy import is still a dependency):
each ``import x.y`` and ``from x import y`` is parsed with ``ast`` and resolved to the project module
it loads. Then (a) no import circles anywhere; (b) each layer imports only what lies below it;
(c) fresh interpreters show what ``edgebnn --help``, training and benchmarking really load.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("formats", "runtime", "converter", "devices", "trainer", "edgebnn")
HEAVY = {"torch", "tensorflow", "tf_keras", "larq", "larq_compute_engine"}

# What each package must never import, at any depth (the layers of ARCHITECTURE.md).
FORBIDDEN = {
    "formats": {"runtime", "converter", "devices", "trainer", "edgebnn", *HEAVY},
    "runtime": {"converter", "devices", "trainer", "edgebnn", *HEAVY},
    "converter": {"runtime", "devices", "trainer", "edgebnn"},
    "devices": {"converter", "trainer", "edgebnn", *HEAVY},
    "trainer": {
        "converter",
        "runtime",
        "devices",
        "edgebnn",
        "tensorflow",
        "tf_keras",
        "larq",
        "larq_compute_engine",
    },
}


@cache
def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imported_names(name: str, path: Path) -> list[str]:
    """Every module the file's import statements load, at any depth: ``from x import y`` is x.y where
    that is a project module, else x; relative imports are resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                names.append(full if full in project_modules() else base)
    return names


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that importing ``name`` loads (its longest known prefix), or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


@cache
def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {_resolve(imported, modules) for imported in _imported_names(name, path)}
        graph[name] = targets - {name, None}
    return graph


def top_level_imports(package: str) -> dict[str, set[str]]:
    """For each file of ``package``: the top-level names of every module it imports (any depth)."""
    modules = project_modules()
    return {
        str(path.relative_to(ROOT)): {
            imported.split(".")[0] for imported in _imported_names(name, path) if imported
        }
        for name, path in modules.items()
        if name.split(".")[0] == package
    }


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _describe(circle: list[str], graph: dict[str, set[str]]) -> str:
    edges = [f"{a} -> {b}" for a in circle for b in sorted(graph[a]) if b in circle]
    return f"{' <-> '.join(circle)} ({'; '.join(edges)})"


# ---- (a) no circles -----------------------------------------------------------------------------


def test_the_import_graph_is_read():
    graph = import_graph()
    for package in PACKAGES:
        assert any(name.split(".")[0] == package for name in graph), f"no modules found in {package}/"
    assert "formats.metadata" in graph["converter.conversion"]  # `from formats.metadata import ...`
    assert "runtime.engines" in graph["runtime.worker"]  # `from runtime import engines`
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", [*PACKAGES, "across packages"])
def test_no_import_circles(package: str) -> None:
    """Lazy imports included. (A circle inside trainer/ is the trainer's to remove; it is reported apart.)"""
    graph = import_graph()
    found = [
        circle
        for circle in circles(graph)
        if (package == "across packages") == (len({m.split(".")[0] for m in circle}) > 1)
        and (package == "across packages" or circle[0].split(".")[0] == package)
    ]
    assert not found, "import circles: " + " | ".join(_describe(circle, graph) for circle in found)


# ---- (b) the layers -----------------------------------------------------------------------------


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_never_imports_what_lies_above_it(package: str) -> None:
    files = top_level_imports(package)
    assert files, f"no Python files in {package}/"
    forbidden = FORBIDDEN[package]
    offenders = {path: sorted(names & forbidden) for path, names in files.items() if names & forbidden}
    assert not offenders, f"{package} must not import {sorted(forbidden)}: {offenders}"


# ---- (c) fresh interpreters ---------------------------------------------------------------------


def modules_after(code: str) -> set[str]:
    """Top-level modules loaded by a fresh interpreter after running ``code``."""
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    output = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return set(json.loads(output.stdout.strip().splitlines()[-1]))


def test_cli_help_imports_neither_torch_nor_tensorflow() -> None:
    loaded = modules_after(
        "from edgebnn.cli import build_parser\nimport contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        build_parser().parse_args(['--help'])\n    except SystemExit:\n        pass"
    )
    assert not loaded & {"torch", "tensorflow", "onnxruntime"}


def test_training_and_benchmarking_never_load_tensorflow() -> None:
    loaded = modules_after(
        "import trainer.train, trainer.zoo, trainer.export, devices.bench, runtime.engines, runtime.verify"
    )
    assert "torch" in loaded and "tensorflow" not in loaded


def test_formats_loads_no_stage_and_no_framework() -> None:
    loaded = modules_after(
        "import formats.files, formats.kinds, formats.metadata, formats.tflite, formats.errors"
    )
    assert "formats" in loaded
    assert not loaded & {"runtime", "converter", "devices", "trainer", "edgebnn", *HEAVY}
