"""Time to load Fashion-MNIST (Debian's IDX files) into uint8 tensors, with normalisation statistics.

    .venv/bin/python benchmarks/data_load.py [--repeats 5] [--data-dir D]

Target (issue 2): under 2 s. Prints each repeat, the median, and the share spent decompressing.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import time
from pathlib import Path

from trainer.data import FASHION_MNIST_DIR, load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    folder = Path(args.data_dir or FASHION_MNIST_DIR)
    seconds = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        dataset = load_dataset("fashion-mnist", data_dir=args.data_dir)
        seconds.append(time.perf_counter() - start)
        print(
            f"load {repeat + 1}: {seconds[-1]:.3f} s ({len(dataset.train_x)} + {len(dataset.test_x)} images)"
        )

    start = time.perf_counter()
    for archive in sorted(folder.glob("*.gz")):
        gzip.decompress(archive.read_bytes())
    gunzip = time.perf_counter() - start
    median = statistics.median(seconds)
    print(f"median load time: {median:.3f} s (target < 2 s: {'met' if median < 2 else 'MISSED'})")
    print(f"of which gzip decompression alone: {gunzip:.3f} s ({gunzip / median:.0%})")


if __name__ == "__main__":
    main()
