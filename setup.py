"""setuptools reads this beside pyproject.toml (which holds all metadata) for one thing: building
the native runtime (runtime/native, C) with make whenever the package is built or installed,
including ``pip install -e .``. Set EDGEBNN_SKIP_NATIVE=1 to install without it (the `native`
engine then reports "run make native")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
NATIVE = ROOT / "runtime" / "native"


def build_native() -> None:
    if os.environ.get("EDGEBNN_SKIP_NATIVE"):
        print("edgebnn: EDGEBNN_SKIP_NATIVE is set: not building the native runtime", file=sys.stderr)
        return
    compiler = os.environ.get("CC", "gcc")
    if shutil.which("make") is None or (shutil.which(compiler) is None and shutil.which("cc") is None):
        raise SystemExit(
            "edgebnn: building the native runtime needs a C compiler and make: "
            "install them with `sudo apt-get install -y gcc make` (Debian/Ubuntu), "
            "or set EDGEBNN_SKIP_NATIVE=1 to install without the native runtime"
        )
    print(f"edgebnn: building the native runtime in {NATIVE} (make lib)", file=sys.stderr)
    done = subprocess.run(["make", "-s", "-C", str(NATIVE), "lib"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"edgebnn: building the native runtime failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )


class BuildPyWithNative(build_py):
    """build_py (also run by editable installs) after `make -C runtime/native lib`."""

    def run(self) -> None:
        build_native()
        super().run()


setup(cmdclass={"build_py": BuildPyWithNative})
