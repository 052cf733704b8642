"""runtime/worker.py: one fresh process, one JSON record; statistics; failure records; the files it ships with."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from devices.bench import benchmark
from runtime import engines, worker
from runtime.record import summarize, validate

WORKER = [sys.executable, "-m", "runtime.worker"]


def run(*args: str, env: dict | None = None) -> tuple[int, dict]:
    done = subprocess.run([*WORKER, *map(str, args)], capture_output=True, text=True, timeout=120, env=env)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def assert_valid(records: list[dict]) -> None:
    system = worker.system_facts() | {"device": "host", "emulated": False}
    validate({"schema": "edgebnn-bench/1", "system": system, "results": records})


def test_summarize_matches_definitions():
    stats = summarize([4.0, 1.0, 3.0, 2.0, 10.0])
    assert stats["min_ms"] == 1.0 and stats["median_ms"] == 3.0 and stats["mean_ms"] == 4.0
    assert stats["p90_ms"] == pytest.approx(7.6)  # linear interpolation between 4 and 10
    assert stats["std_ms"] == pytest.approx(np.std([4, 1, 3, 2, 10], ddof=1))
    assert stats["cv"] == pytest.approx(stats["std_ms"] / 4.0)
    assert stats["throughput_ips"] == pytest.approx(250.0)
    assert summarize([2.0], batch=8)["throughput_ips"] == pytest.approx(4000.0)


def test_lce_worker_measures_without_tensorflow(models):
    code, record = run(models["binary"], "--runs", 25, "--warmup", 3, "--lce-kernel", "indirect")
    assert code == 0, record["error"]
    assert record["status"] == "ok" and record["error"] is None
    assert record["runtime"] == "lce" and record["kernel"] == "indirect" and record["xnnpack"] is True
    assert record["imported_tensorflow"] is False  # the LCE interpreter came from its compiled module alone
    assert len(record["latencies_ms"]) == record["runs"] == 25
    assert 0 < record["min_ms"] <= record["median_ms"] <= record["p90_ms"] <= record["p99_ms"]
    assert record["min_ms"] == min(record["latencies_ms"])
    assert 0 < record["rss_before_mb"] <= record["rss_after_load_mb"] <= record["peak_rss_mb"] < 400
    assert record["model_size_bytes"] == models["binary"].stat().st_size
    assert record["input_shape"] == [1, 16, 16, 3]
    assert record["load_ms"] > 0 and record["first_ms"] > 0
    assert_valid([record])


def test_peak_memory_is_the_workers_own_not_its_parents(models):
    ballast = np.ones(600 * 2**20 // 8)  # 600 MiB resident in this (parent) process
    code, record = run(models["onnx"], "--runs", 3)
    assert code == 0 and ballast.sum() > 0
    assert record["peak_rss_mb"] < 300  # ru_maxrss would say > 600 here: it survives exec


@pytest.mark.parametrize("kind,runtime,xnnpack", [("float", "litert", None), ("onnx", "onnxruntime", None)])
def test_other_runtimes(models, kind, runtime, xnnpack):
    code, record = run(models[kind], "--runs", 10, "--threads", 2, "--no-xnnpack")
    assert code == 0, record["error"]
    assert record["runtime"] == runtime and record["threads"] == 2 and record["kernel"] is None
    assert record["xnnpack"] is (False if runtime == "litert" else None)
    assert record["imported_tensorflow"] is False
    assert_valid([record])


def test_onnx_profile_lists_nodes(models):
    code, record = run(models["onnx"], "--runs", 5, "--profile")
    assert code == 0
    ops = {entry["op"] for entry in record["profile"]}
    assert "Conv" in ops and all(entry["count"] >= 5 for entry in record["profile"])


def test_input_file_is_used(models, tmp_path):
    good = tmp_path / "x.npy"
    np.save(good, np.ones((1, 3, 16, 16), np.float32))
    code, record = run(models["onnx"], "--runs", 3, "--input", good)
    assert code == 0 and record["input_shape"] == [1, 3, 16, 16]
    np.save(good, np.ones((1, 16, 16, 3), np.float32))  # NHWC given to an NCHW model
    code, record = run(models["onnx"], "--runs", 3, "--input", good)
    assert code == 2 and record["status"] == "error" and "does not fit" in record["error"]
    assert_valid([record])


def test_output_file_holds_the_models_answer(models, tmp_path):
    x, out = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, np.random.default_rng(5).standard_normal((1, 16, 16, 3)).astype(np.float32))
    code, record = run(models["binary"], "--runs", 2, "--input", x, "--output", out)
    assert code == 0 and record["output_npy"] == str(out)
    expected = engines.load_engine(models["binary"]).predict(np.load(x))
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-6)
    assert_valid([record])


def test_system_facts():
    done = subprocess.run([*WORKER, "--system"], capture_output=True, text=True, check=True)
    facts = json.loads(done.stdout)
    assert facts["cores"] == os.cpu_count() and facts["os_bits"] in (32, 64)
    assert set(facts["engines"]) == {"lce", "litert", "onnxruntime", "native"}


# The crash and hang paths use the worker's test-only hook EDGEBNN_WORKER_FAULT (documented in worker.py).


def test_crash_becomes_error_record(models, monkeypatch):
    monkeypatch.setenv(worker.FAULT_ENV, "crash")
    (result,) = benchmark(models["float"], runtime="litert", runs=5, warmup=1, timeout_s=60).results
    assert result["status"] == "error" and "SIGABRT" in result["error"]
    assert_valid([result])


def test_hang_becomes_timeout_record(models, monkeypatch):
    monkeypatch.setenv(worker.FAULT_ENV, "hang")
    (result,) = benchmark(models["onnx"], runtime="onnxruntime", runs=5, warmup=1, timeout_s=3).results
    assert result["status"] == "timeout" and "3 s" in result["error"]
    assert result["median_ms"] is None
    assert_valid([result])


def _edgebnn_imports(module_path: Path, root: Path) -> set[str]:
    """The files of ``runtime``/``formats`` that a module imports, at any depth of the module."""
    found = set()
    for node in ast.walk(ast.parse(module_path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            for candidate in (
                root / (name.replace(".", "/") + ".py"),
                root / name.replace(".", "/") / "__init__.py",
            ):
                if candidate.is_file() and name.split(".")[0] in ("runtime", "formats"):
                    found.add(str(candidate.relative_to(root)))
    return found


def test_worker_files_are_what_the_worker_imports():
    root = worker.package_root()
    needed, todo = set(), ["runtime/worker.py"]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            package = str(Path(name).parent / "__init__.py")
            todo += [package, *_edgebnn_imports(root / name, root)]
    assert set(worker.WORKER_FILES) == needed


def test_worker_runs_standalone_on_a_device(models, tmp_path):
    """What the devices stage does: copy WORKER_FILES into one folder, run `python -m runtime.worker` there."""
    folder = tmp_path / "device"
    for name, path in worker.worker_files().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / name)
    # -I keeps the installed edgebnn's paths away; the finder below also hides the other stages, and the
    # record says where the runtime came from.
    code = (
        "import sys, runpy, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('edgebnn', 'trainer', 'converter', 'devices'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(folder)!r}); sys.argv = ['worker', {str(models['onnx'])!r}, '--runs', '4', '--runtime', 'litert']\n"
        "import runtime.engines; print('from', runtime.engines.__file__, file=sys.stderr)\n"
        "runpy.run_module('runtime.worker', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert f"from {folder}" in done.stderr
    assert done.returncode == 2 and "is an ONNX model" in result["error"]  # its BenchError works there
    code = code.replace("'--runtime', 'litert'", "'--runtime', 'onnxruntime'")
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and result["status"] == "ok" and len(result["latencies_ms"]) == 4
