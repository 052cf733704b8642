"""Two CPU processes under torchrun (gloo): DDP replicas must end with bit-identical weights.

Each rank prints the SHA-256 of its final weights (``EDGEBNN_TRAIN_PRINT_HASH=1``); rank 0's hash
must also be the hash of the checkpoint it wrote. The run covers the LNS warm-up -> joint phase
change, where the DDP wrapper is rebuilt over a different set of trainable parameters.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.checkpoint import load_checkpoint
from trainer.train import PRINT_HASH_ENV, state_dict_hash

TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(not TORCHRUN.exists() and not shutil.which("torchrun"), reason="torchrun not installed")
def test_two_process_torchrun_ranks_end_with_identical_weights(tmp_path):
    out = tmp_path / "run"
    command = [
        str(TORCHRUN if TORCHRUN.exists() else shutil.which("torchrun")),
        "--nproc_per_node=2",
        "--standalone",  # a free local rendezvous port: parallel test runs do not collide
        "-m", "edgebnn", "train",
        "--model", "fmnist-bnn", "--model-option", "width=8", "--data", "synthetic",
        "--subset", "256", "--val-size", "100", "--batch-size", "32", "--augment",
        "--binarizer", "lns", "--warmup-mapping-epochs", "1", "--epochs", "1",
        "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, PRINT_HASH_ENV: "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    hashes = dict(re.findall(r"edgebnn-train rank (\d)/2 weights sha256 ([0-9a-f]{64})", done.stdout))
    assert set(hashes) == {"0", "1"}, done.stdout
    assert hashes["0"] == hashes["1"]
    assert state_dict_hash(load_checkpoint(out / "last.pt")["state_dict"]) == hashes["0"]

    # Only rank 0 prints and writes: one summary line per epoch, one metrics row per epoch.
    assert done.stdout.count("done: best epoch") == 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["phase"] for row in rows] == ["warmup", "joint"]
    # Each rank trains on half of the 256 images per epoch; the counts are summed over ranks.
    assert all(row["steps"] == 4 for row in rows)
