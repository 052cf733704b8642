"""Training throughput of the STE and LNS binarizers, measured side by side (CPU, batch 128).

One training step is what ``edgebnn train`` does per batch: forward, cross-entropy + LNS auxiliary
loss, backward, optimizer step. STE and LNS steps are timed in alternation (one of each per round),
so that the load of a shared machine affects both alike; the median step time of each is reported,
with images/s and the LNS/STE step-time ratio. Random inputs: throughput does not depend on pixels.

    .venv/bin/python benchmarks/train_throughput.py                       # fmnist-bnn and resnet20
    .venv/bin/python benchmarks/train_throughput.py --models fmnist-bnn --threads 1 2 --rounds 10

The last column estimates one epoch of full Fashion-MNIST training (55,000 images after the
5,000-image validation split; evaluation not included).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from trainer import lns
from trainer.zoo import MODELS, create_model

FASHION_MNIST_TRAIN_IMAGES = 55_000


def make_step(model: torch.nn.Module, batch_size: int, in_channels: int, size: int):
    """A closure that runs one training step on a fixed random batch and returns its seconds."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, in_channels, size, size, generator=generator)
    labels = torch.randint(0, 10, (batch_size,), generator=generator)
    model.train()

    def step() -> float:
        started = time.perf_counter()
        loss = F.cross_entropy(model(images), labels) + lns.aux_loss(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    return step


def measure(model_name: str, batch_size: int, rounds: int, warmup: int, options: dict) -> dict[str, float]:
    spec = MODELS[model_name]
    size, channels = spec.input_size, spec.in_channels
    steps = {}
    for binarizer in ("ste", "lns"):
        torch.manual_seed(0)
        model = create_model(model_name, num_classes=10, weight_binarizer=binarizer, **options)
        steps[binarizer] = make_step(model, batch_size, channels, size)
    times: dict[str, list[float]] = {"ste": [], "lns": []}
    for index in range(warmup + rounds):
        for binarizer, step in steps.items():  # alternate: both see the same machine load
            seconds = step()
            if index >= warmup:
                times[binarizer].append(seconds)
    return {binarizer: statistics.median(values) for binarizer, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fmnist-bnn", "resnet20"], choices=list(MODELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1], help="torch threads to measure")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=6, help="timed steps per binarizer")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per binarizer")
    parser.add_argument(
        "--width", type=int, help="override the models' width option (fmnist-bnn 64, resnet20 16)"
    )
    args = parser.parse_args()

    print(
        f"torch {torch.__version__}, batch {args.batch_size}, median of {args.rounds} steps, STE/LNS alternated"
    )
    header = f"{'model':<12} {'threads':>7} {'STE img/s':>10} {'LNS img/s':>10} {'LNS/STE step':>13} {'STE epoch*':>11}"
    print(header)
    print("-" * len(header))
    for threads in args.threads:
        torch.set_num_threads(threads)
        for model_name in args.models:
            options = {"width": args.width} if args.width else {}
            median = measure(model_name, args.batch_size, args.rounds, args.warmup, options)
            ste_ips, lns_ips = args.batch_size / median["ste"], args.batch_size / median["lns"]
            epoch_min = FASHION_MNIST_TRAIN_IMAGES / ste_ips / 60
            print(
                f"{model_name:<12} {threads:>7} {ste_ips:>10.1f} {lns_ips:>10.1f} "
                f"{median['lns'] / median['ste']:>12.2f}x {epoch_min:>9.1f} min",
                flush=True,
            )
    print("* STE training time of one 55,000-image epoch at this rate (no evaluation)")


if __name__ == "__main__":
    main()
