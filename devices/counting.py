"""Exact instruction counts on the emulated Raspberry Pi: a QEMU TCG plugin, installed into the Pi.

Emulated wall time is no latency, but the number of guest instructions an inference executes on
the emulated Cortex-A72 is exact and repeatable. The plugin (``devices/plugins/insn_count.c``,
GPL-2.0-or-later, built against Debian's ``qemu-plugin.h``: ``scripts/ensure-system.sh
qemu-plugin``) counts every executed instruction and the count at every marker (HINT #0x70..#0x74,
``ebnn_count_marker`` of the native library). Debian's static ``qemu-aarch64-static`` (the binfmt
handler of the emulated Pi) cannot load plugins; the dynamic ``qemu-aarch64`` of ``qemu-user``
can. So ``install`` copies that x86-64 binary with its shared libraries, its loader and the
plugin into the Pi's root filesystem (``/opt/edgebnn-count``, ~25 MB), and a small wrapper there,
``/opt/edgebnn-count/count OUT.json COMMAND ...``, runs a command under it (inside the chroot the
host kernel runs the x86-64 loader natively; the guest program is the Pi's own aarch64 Python).
``edgebnn devices emulate rpi4 up`` installs it when qemu-user and the header are present.

What a benchmark with ``count_instructions`` then does (``devices/bench.py``): it runs the worker
as ``count OUT python -m runtime.native.markers ...`` (the worker with a marked window around
each invoke, one thread), fetches OUT and puts ``summarize``'s result in the record.

    >>> from devices.counting import summarize
    >>> events = [[3, 100, 0], [4, 111, 0],                       # the empty window: 11
    ...           [3, 200, 0], [0, 205, 0], [1, 300, 0], [1, 420, 0], [2, 424, 0], [4, 450, 0]]
    >>> counts = summarize({"format": "edgebnn-insn-count/1", "total": 9000, "vcpus": 1, "dropped": 0,
    ...                     "events": events}, timed_runs=1)
    >>> counts["instructions"], counts["engine_instructions"], counts["per_op"]
    (239, 219, [95, 120])
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

from devices.errors import DevicesError

PLUGIN_DIR = Path(__file__).resolve().parent / "plugins"
PLUGIN = PLUGIN_DIR / "build" / "libinsncount.so"
REMOTE_DIR = "/opt/edgebnn-count"  # inside the emulated Pi's root filesystem
COUNTER = f"{REMOTE_DIR}/count"
FORMAT = "edgebnn-insn-count/1"
MARK_BEGIN, MARK_OP, MARK_END, WINDOW_BEGIN, WINDOW_END = range(5)  # EBNN_MARK_* of edgebnn.h
SETUP_HINT = "bash scripts/ensure-system.sh qemu-plugin"

WRAPPER = """#!/bin/sh
# edgebnn instruction counter, installed by edgebnn (devices/counting.py) into the emulated Pi:
# runs COMMAND under the host's dynamic qemu-aarch64 with the counting plugin, one guest thread.
#   /opt/edgebnn-count/count OUT.json COMMAND [ARGS...]
set -e
here=/opt/edgebnn-count
out="$1"
shift
program=$(command -v "$1")
shift
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 EDGEBNN_NATIVE_MARKERS=1
exec "$here/lib/ld-linux-x86-64.so.2" --library-path "$here/lib" "$here/qemu-aarch64" \\
    -cpu "${QEMU_CPU:-cortex-a72}" -plugin "$here/libinsncount.so,out=$out" "$program" "$@"
"""


def host_qemu() -> Path:
    """The host's dynamic qemu-aarch64, which accepts -plugin (DevicesError naming the package)."""
    found = shutil.which("qemu-aarch64")
    if found is None:
        raise DevicesError(
            "qemu-aarch64 (Debian package qemu-user) is missing: instruction counts need the dynamic "
            "qemu-user, which loads plugins (qemu-user-static does not); run `sudo " + SETUP_HINT + "`"
        )
    done = subprocess.run([found, "-h"], capture_output=True, text=True, check=False)
    if "-plugin" not in done.stdout:
        raise DevicesError(f"{found} cannot load TCG plugins (no -plugin option): install Debian's qemu-user")
    return Path(found)


def build_plugin() -> Path:
    """Build the plugin (make -C devices/plugins); DevicesError when qemu-plugin.h is missing."""
    done = subprocess.run(["nice", "-n", "10", "make", "-s", "-C", str(PLUGIN_DIR)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    if done.returncode != 0 or not PLUGIN.is_file():
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        detail = next((line for line in lines if line.startswith("edgebnn:")), lines[-1] if lines else "")
        raise DevicesError(f"cannot build the instruction-count plugin: {detail.removeprefix('edgebnn: ')}")
    return PLUGIN


def _shared_libraries(binary: Path) -> list[Path]:
    """The shared libraries ``binary`` loads, and its ELF loader (from ldd)."""
    done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DevicesError(f"ldd {binary} failed: {done.stderr.strip()}")
    found = []
    for line in done.stdout.splitlines():
        parts = line.split()
        if (
            "=>" in parts
            and len(parts) > parts.index("=>") + 1
            and parts[parts.index("=>") + 1].startswith("/")
        ):
            found.append(Path(parts[parts.index("=>") + 1]))
        elif parts and parts[0].startswith("/"):
            found.append(Path(parts[0]))  # the loader, e.g. /lib64/ld-linux-x86-64.so.2
    return found


def _digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def install(rootfs: Path, *, log=print) -> Path:
    """Install (or refresh) the counter into ``rootfs``/opt/edgebnn-count; the wrapper's host path."""
    qemu, plugin = host_qemu(), build_plugin()
    folder = rootfs / REMOTE_DIR.lstrip("/")
    stamp = folder / ".stamp"
    wanted = _digest(qemu, plugin) + hashlib.sha256(WRAPPER.encode()).hexdigest()
    if stamp.is_file() and stamp.read_text() == wanted:
        return folder / "count"
    log(f"installing the instruction counter (qemu-aarch64 + plugin) into {folder}")
    libraries = folder / "lib"
    libraries.mkdir(parents=True, exist_ok=True)
    for library in _shared_libraries(qemu):
        shutil.copy2(library.resolve(), libraries / library.name)
    shutil.copy2(qemu, folder / "qemu-aarch64")
    shutil.copy2(plugin, folder / "libinsncount.so")
    (folder / "count").write_text(WRAPPER)
    os.chmod(folder / "count", 0o755)
    stamp.write_text(wanted)
    return folder / "count"


def check_installed(transport: Any) -> None:
    """DevicesError unless the counter is on the device (the emulated Pi after ``up``)."""
    done = transport.run(f"test -x {shlex.quote(COUNTER)}", timeout=60, check=False)
    if done.returncode != 0:
        raise DevicesError(
            f"{transport.description} has no instruction counter ({COUNTER}): instruction counts work on the "
            f"emulated Pi only (--host emulator); run `{SETUP_HINT}`, then `edgebnn devices emulate rpi4 up` "
            "again (it installs the counter)"
        )


def counted_argv(worker_argv: list[str], out_path: str) -> list[str]:
    """The worker's command line (``PYTHON -m runtime.worker ...``) under the counter: the marked
    worker, its counts written to ``out_path`` (a path on the device, no commas)."""
    if "," in out_path:
        raise DevicesError(f"the count file's path must not contain a comma: {out_path}")
    argv = list(worker_argv)
    if argv[1:3] != ["-m", "runtime.worker"]:
        raise DevicesError(f"not a worker command line: {shlex.join(argv[:3])}")
    argv[2] = "runtime.native.markers"
    return [COUNTER, out_path, *argv]


def parse(text: str) -> dict[str, Any]:
    """The plugin's JSON output, checked."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise DevicesError(f"the instruction counter wrote no valid JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DevicesError(f"the instruction counter's output is not {FORMAT}")
    return data


def _windows(events: list[list[int]], begin: int, end: int) -> list[tuple[int, list[int]]]:
    """(begin count, [counts of the events inside]) ... for each begin..end pair, end count last."""
    found, current = [], None
    for kind, count, _vcpu in events:
        if kind == begin:
            current = (count, [])
        elif current is not None:
            current[1].append(count)
            if kind == end:
                found.append(current)
                current = None
    return found


def summarize(data: dict[str, Any], timed_runs: int) -> dict[str, Any]:
    """What a record carries from the plugin's output (``parse``) of one marked worker.

    ``instructions``: guest instructions of one invoke as the caller sees it (the median of the last
    ``timed_runs`` windows minus the empty window; the Python-to-runtime call included);
    ``instructions_min``/``_max`` over those runs; for the native runtime
    ``engine_instructions`` (inside ebnn_model_invoke; ``_min``/``_max`` over the runs: equal, C code is
    repeatable) and ``per_op`` (one count per op, in order,
    each including one marker call). ``process_instructions``: the whole process (Python start-up,
    imports, loading...)."""
    if data.get("vcpus", 1) != 1:
        raise DevicesError(
            f"{data['vcpus']} guest threads ran while counting: instruction counts need one thread (--threads 1)"
        )
    if data.get("dropped"):
        raise DevicesError(f"the instruction counter dropped {data['dropped']} markers (too many invokes)")
    events = data["events"]
    windows = [ends[-1] - start for start, ends in _windows(events, WINDOW_BEGIN, WINDOW_END)]
    if len(windows) < 2:
        raise DevicesError("the counted worker marked no invoke (was it run with runtime.native.markers?)")
    empty, invokes = windows[0], windows[1:]
    timed = [count - empty for count in invokes[-max(1, min(timed_runs, len(invokes))) :]]
    result: dict[str, Any] = {
        "instructions": int(statistics.median_low(timed)),
        "instructions_min": min(timed),
        "instructions_max": max(timed),
        "counted_runs": len(timed),
        "marker_overhead": empty,
        "process_instructions": data["total"],
        "engine_instructions": None,
        "per_op": None,
    }
    inferences = _windows(events, MARK_BEGIN, MARK_END)
    if inferences:
        start, marks = inferences[-1]
        boundaries = [start, *marks[:-1]]  # BEGIN, then the OP marks; the END mark closes the last op
        result["engine_instructions"] = marks[-1] - start
        result["per_op"] = [after - before for before, after in zip(boundaries, boundaries[1:], strict=False)]
        # the C engine alone, over the same timed runs: repeatable to the instruction (the Python
        # call around it may vary by a few instructions: allocator, reference counts)
        engine = [ends[-1] - begin for begin, ends in inferences[-len(timed) :]]
        result["engine_instructions_min"], result["engine_instructions_max"] = min(engine), max(engine)
    return result


def remote_count_path(folder_path: str, index: int) -> str:
    return str(PurePosixPath(folder_path) / f"counts{index}.json")
