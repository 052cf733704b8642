"""The instruction counter (devices/plugins/insn_count.c, a QEMU TCG plugin) on real aarch64 code
under the host's dynamic qemu-aarch64: exact to the instruction, repeatable, and the native
runtime's per-op markers. No emulated Pi needed (tests/devices/test_native_emulated.py runs it
inside the Pi). Skipped where qemu-user, the plugin header or the cross compiler is missing
(`make test` installs them: scripts/ensure-system.sh test)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devices import counting
from devices.errors import DevicesError

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "runtime" / "native"
SYSROOT = Path("/usr/aarch64-linux-gnu")
CROSS = "aarch64-linux-gnu-gcc"


def _missing() -> str | None:
    if shutil.which(CROSS) is None or not SYSROOT.is_dir():
        return "needs gcc-aarch64-linux-gnu and libc6-dev-arm64-cross"
    try:
        counting.host_qemu()
        counting.build_plugin()
    except DevicesError as error:
        return str(error)
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))

NOPS = r"""
#include <stdlib.h>
#include "edgebnn.h"
#define STR2(x) #x
#define STR(x) STR2(x)
int main(void) {
    ebnn_count_marker(EBNN_MARK_WINDOW_BEGIN);
    __asm__ __volatile__(".rept " STR(NOPS) "\n nop\n .endr" ::: "memory");
    ebnn_count_marker(EBNN_MARK_WINDOW_END);
    return 0;
}
"""

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "edgebnn.h"
int main(int argc, char** argv) {
    ebnn_load_options options;
    ebnn_load_options_init(&options);
    options.flags |= EBNN_LOAD_MARKERS;
    options.kernel = argv[2];
    ebnn_model* model;
    ebnn_error error;
    if (ebnn_model_load_file(argv[1], &options, &model, &error) != EBNN_OK) {
        fprintf(stderr, "%s\n", error.message);
        return 2;
    }
    float* x = ebnn_model_input_buffer(model, 0);
    for (size_t i = 0; i < ebnn_model_input_size(model, 0); ++i) x[i] = (float)(i % 7) - 3.0f;
    for (int run = 0; run < 3; ++run) ebnn_model_invoke(model);
    printf("%zu ops\n", ebnn_model_num_ops(model));
    ebnn_model_free(model);
    return 0;
}
"""


@pytest.fixture(scope="module")
def library() -> Path:
    done = subprocess.run(["nice", "-n", "10", "make", "-s", "-j2", "-C", str(NATIVE), f"CC={CROSS}", "lib"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return NATIVE / "build" / "aarch64" / "libedgebnn.a"


def _compile(source: str, out: Path, library: Path, *defines: str) -> Path:
    c_file = out.with_suffix(".c")
    c_file.write_text(source)
    done = subprocess.run([CROSS, "-std=c11", "-O2", "-Wall", "-Werror", *defines, f"-I{NATIVE / 'include'}",
                           "-o", str(out), str(c_file), str(library), "-lm", "-pthread"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def _count(program: Path, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{program.name}.counts.json"
    argv = [str(counting.host_qemu()), "-cpu", "cortex-a72", "-L", str(SYSROOT),
            "-plugin", f"{counting.PLUGIN},out={out}", str(program), *args]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return counting.parse(out.read_text())


def test_counts_are_exact_to_the_instruction(library, tmp_path) -> None:
    windows = {}
    for nops in (0, 1, 1000):
        program = _compile(NOPS, tmp_path / f"nops{nops}", library, f"-DNOPS={nops}")
        data = _count(program, tmp_path=tmp_path)
        assert data["vcpus"] == 1 and data["dropped"] == 0 and data["target"] == "aarch64"
        (begin, start, _), (end, stop, _) = data["events"]
        assert (begin, end) == (counting.WINDOW_BEGIN, counting.WINDOW_END)
        windows[nops] = stop - start
        assert data["total"] > windows[nops]
    # the markers' own cost is constant; every nop is one instruction, no more, no less
    assert windows[1] - windows[0] == 1
    assert windows[1000] - windows[0] == 1000


def test_native_inference_and_per_op_counts_are_repeatable(library, tmp_path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "native"))
    from ebnn_models import MODELS  # noqa: PLC0415 - the small .ebnn graphs of tests/native

    model = tmp_path / "binary_net.ebnn"
    model.write_bytes(MODELS["binary_net"]())
    driver = _compile(DRIVER, tmp_path / "driver", library)
    for kernel in ("neon", "scalar"):
        runs = [_count(driver, str(model), kernel, tmp_path=tmp_path) for _ in range(2)]
        assert runs[0]["events"] == runs[1]["events"]  # the same program twice: identical counts
        inferences = counting._windows(runs[0]["events"], counting.MARK_BEGIN, counting.MARK_END)
        assert len(inferences) == 3
        n_ops = len(inferences[0][1]) - 1  # OP marks, then END
        assert n_ops == 12
        totals = [marks[-1] - start for start, marks in inferences]
        assert totals[1] == totals[2]  # warm inferences: identical (the first one also binds symbols)
    # the summary of a marked run: per-op counts add up to the engine's count
    events = [[counting.WINDOW_BEGIN, 0, 0], [counting.WINDOW_END, 10, 0], [counting.WINDOW_BEGIN, 20, 0],
              *runs[0]["events"], [counting.WINDOW_END, runs[0]["events"][-1][1] + 7, 0]]  # fmt: skip
    summary = counting.summarize({**runs[0], "events": events}, timed_runs=1)
    assert sum(summary["per_op"]) < summary["engine_instructions"] < summary["instructions"]
    assert len(summary["per_op"]) == 12


def test_neon_needs_far_fewer_instructions_than_scalar(library, tmp_path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "native"))
    from ebnn_models import MODELS  # noqa: PLC0415

    model = tmp_path / "binary_net.ebnn"
    model.write_bytes(MODELS["binary_net"]())
    driver = _compile(DRIVER, tmp_path / "driver", library)
    totals = {}
    for kernel in ("neon", "scalar"):
        start, marks = counting._windows(_count(driver, str(model), kernel, tmp_path=tmp_path)["events"],
                                         counting.MARK_BEGIN, counting.MARK_END)[-1]  # fmt: skip
        totals[kernel] = marks[-1] - start
    assert totals["neon"] < totals["scalar"]


def test_summary_refuses_threads_and_unmarked_runs() -> None:
    base = {"format": counting.FORMAT, "total": 10, "dropped": 0}
    with pytest.raises(DevicesError, match="2 guest threads ran while counting"):
        counting.summarize({**base, "vcpus": 2, "events": []}, timed_runs=1)
    with pytest.raises(DevicesError, match="marked no invoke"):
        counting.summarize({**base, "vcpus": 1, "events": []}, timed_runs=1)
    with pytest.raises(DevicesError, match="not edgebnn-insn-count/1"):
        counting.parse(json.dumps({"format": "other"}))
    with pytest.raises(DevicesError, match="must not contain a comma"):
        counting.counted_argv([sys.executable, "-m", "runtime.worker", "m.ebnn"], "/tmp/a,b.json")
    argv = counting.counted_argv(["python3", "-m", "runtime.worker", "m.ebnn", "--runs", "2"], "/tmp/c.json")
    assert argv == [counting.COUNTER, "/tmp/c.json", "python3", "-m", "runtime.native.markers", "m.ebnn",
                    "--runs", "2"]  # fmt: skip


def test_a_missing_header_is_named(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEBNN_CACHE", str(tmp_path / "empty-cache"))
    done = subprocess.run(["make", "-s", "-C", str(counting.PLUGIN_DIR), f"BUILD={tmp_path / 'build'}"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2
    assert "qemu-plugin.h is missing: run 'bash scripts/ensure-system.sh qemu-plugin'" in done.stderr
