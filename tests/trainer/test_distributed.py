"""Two CPU processes under torchrun (gloo): DDP replicas must end with bit-identical weights.

Each rank prints the SHA-256 of its final weights (``EDGEBNN_TRAIN_PRINT_HASH=1``); rank 0's hash
must also be the hash of the checkpoint it wrote. The run covers the data-free LNS warm-up (every
rank computes it, rank 0's result is broadcast), then the data warm-up -> joint phase change, where
the DDP wrapper is rebuilt over a different set of trainable parameters.
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
from trainer.train import INTERRUPT_AT_STEP_ENV, PRINT_HASH_ENV, state_dict_hash

TORCHRUN = Path(sys.executable).with_name("torchrun")


def torchrun(out: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [
        str(TORCHRUN if TORCHRUN.exists() else shutil.which("torchrun")),
        "--standalone",  # a free local rendezvous port: parallel test runs do not collide
        "--nproc_per_node=2",
        "-m", "edgebnn", "train",
        "--model", "fmnist-bnn", "--model-option", "width=8", "--data", "synthetic",
        "--subset", "256", "--val-size", "100", "--batch-size", "32", "--augment",
        "--binarizer", "lns", "--warmup-mapping-steps", "20", "--warmup-mapping-epochs", "1", "--epochs", "1",
        "--threads", "1", "--out", str(out), *extra,
    ]  # fmt: skip
    env = {**os.environ, PRINT_HASH_ENV: "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def rank_hashes(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"edgebnn-train rank (\d)/2 weights sha256 ([0-9a-f]{64})", stdout))


pytestmark = pytest.mark.skipif(not TORCHRUN.exists() and not shutil.which("torchrun"), reason="no torchrun")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("ddp") / "run"
    return out, torchrun(out)


def test_two_process_torchrun_ranks_end_with_identical_weights(reference):
    out, done = reference
    assert done.returncode == 0, done.stdout + done.stderr
    hashes = rank_hashes(done.stdout)
    assert set(hashes) == {"0", "1"}, done.stdout
    assert hashes["0"] == hashes["1"]
    assert state_dict_hash(load_checkpoint(out / "last.pt")["state_dict"]) == hashes["0"]

    # Only rank 0 prints and writes: one summary line per epoch, one metrics row per epoch.
    assert done.stdout.count("done: best epoch") == 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["phase"] for row in rows] == ["warmup", "joint"]
    # Each rank trains on half of the 256 images per epoch: 128 / 32 = 4 steps.
    assert all(row["steps"] == 4 for row in rows)


@pytest.mark.slow
def test_ddp_run_interrupted_mid_epoch_resumes_to_the_same_weights(reference, tmp_path):
    _, uninterrupted = reference
    stopped = torchrun(tmp_path, env={INTERRUPT_AT_STEP_ENV: "6"})  # both ranks, epoch 2, after 1 step
    assert stopped.returncode != 0
    assert stopped.stderr.count("interrupted in epoch 2 after 1 of 4 steps") == 1  # rank 0 only
    resumed = torchrun(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert rank_hashes(resumed.stdout) == rank_hashes(uninterrupted.stdout)
