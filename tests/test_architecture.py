"""The dependency rules of CONTRIBUTING.md, checked on the source and in fresh interpreters."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("trainer", "converter", "runtime", "devices")


def imported_top_level_modules(package: str) -> dict[str, set[str]]:
    """For each .py file of ``package``: the top-level names of every module it imports (any depth)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("converter", {"trainer", "edgebnn"}),
        ("runtime", {"tensorflow", "tf_keras", "larq", "trainer", "edgebnn", "torch"}),
        ("devices", {"tensorflow", "torch", "trainer", "converter", "edgebnn"}),
        ("trainer", {"tensorflow", "tf_keras", "larq", "larq_compute_engine", "converter", "edgebnn"}),
    ],
)
def test_stage_never_imports_forbidden_packages(package: str, forbidden: set[str]) -> None:
    offenders = {
        path: sorted(names & forbidden)
        for path, names in imported_top_level_modules(package).items()
        if names & forbidden
    }
    assert not offenders, f"{package} must not import {sorted(forbidden)}: {offenders}"


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
        "import trainer.train, trainer.zoo, trainer.export, runtime.bench, runtime.engines"
    )
    assert "torch" in loaded and "tensorflow" not in loaded
