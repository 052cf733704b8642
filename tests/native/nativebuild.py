"""Building runtime/native for the tests: make, nice'd (the machine's 2 cores are shared)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "runtime" / "native"
ARCH = platform.machine()


def make(*args: str, timeout: int = 900) -> None:
    done = subprocess.run(
        ["nice", "-n", "10", "make", "-s", "-j2", "-C", str(NATIVE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (
        f"make {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
