"""Training-step throughput on CPU: images/s and the fraction of the machine's fp32 GEMM rate.

One step is what ``edgebnn train`` does per batch (``trainer.objective``): forward, cross-entropy
(+ distillation from a frozen teacher) + LNS auxiliary loss, backward, Adam step, in the loop's
NHWC (``channels_last``) layout unless the case says ``contiguous``. Cases, timed in alternation
(one step of each per round, so the load of a shared machine affects all alike; median reported):

- ``ste``, ``lns``: the binary model with the plain or the LNS weight binarizer;
- ``fp``: its full-precision twin (``--binarizer none --act-binarizer none``);
- ``ste+kd``, ``lns+kd``: distilled from the FP twin (frozen, eval mode, no_grad);
- ``ste contiguous``, ``lns contiguous``: the NCHW layout, to measure channels_last.

FLOPs of a step: ``2 x 3 x forward MACs x batch`` (forward, and a backward of about twice the
forward), plus ``2 x`` the teacher's forward MACs x batch, plus the LNS mapping networks (their
forward on the latent weights, times 3), all counted as direct convolutions. The machine's rate is
``torch.mm`` of two 2048 x 2048 fp32 matrices (MKL) at the same thread count, timed in the same
rounds as the steps; ``% GEMM`` is the step's FLOP rate over it. A second reference is the same
GEMM run as a 1x1 convolution (oneDNN, the library the training convs use): on this AMD host MKL's
``torch.mm`` did not gain from a second thread while oneDNN did. oneDNN may compute 3x3 convs with
Winograd (fewer multiplications than counted), so a step can exceed 100% of the GEMM rate.

    .venv/bin/python benchmarks/train_throughput.py                        # fmnist-bnn, 1 and 2 threads
    .venv/bin/python benchmarks/train_throughput.py --width 32 --stem-pool --threads 2 --rounds 10
    .venv/bin/python benchmarks/train_throughput.py --json runs/throughput.json

The last column estimates one epoch of full Fashion-MNIST training (55,000 images; no evaluation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repo

from trainer.layers import binary_layers, use_channels_last  # noqa: E402
from trainer.objective import Objective  # noqa: E402
from trainer.zoo import MODELS, create_model, model_summary  # noqa: E402

FASHION_MNIST_TRAIN_IMAGES = 55_000
CASES = ("ste", "lns", "fp", "ste+kd", "lns+kd", "ste contiguous", "lns contiguous")
GEMM_SIZE = 2048


def gemm_steps():
    """Closures timing one 2048^3 fp32 GEMM: ``torch.mm`` (MKL) and as a 1x1 conv (oneDNN)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(GEMM_SIZE, GEMM_SIZE, generator=generator)
    b = torch.randn(GEMM_SIZE, GEMM_SIZE, generator=generator)
    x = torch.randn(1, GEMM_SIZE, 32, GEMM_SIZE // 32, generator=generator)
    x = x.contiguous(memory_format=torch.channels_last)
    w = b.view(GEMM_SIZE, GEMM_SIZE, 1, 1).contiguous(memory_format=torch.channels_last)

    def timed(function):
        def run() -> float:
            started = time.perf_counter()
            function()
            return time.perf_counter() - started

        return run

    return {"mm": timed(lambda: torch.mm(a, b)), "conv1x1": timed(lambda: torch.nn.functional.conv2d(x, w))}


def forward_macs(model: torch.nn.Module, input_shape: tuple[int, int, int]) -> int:
    summary = model_summary(model, input_shape)
    return summary["binary_macs"] + summary["float_macs"]


def mapping_macs(model: torch.nn.Module) -> int:
    """MACs of one forward of every LNS mapping network (3x3 convs c_in -> h -> h -> c_in on c_out filters)."""
    total = 0
    for _, layer in binary_layers(model):
        convs = [m for m in layer.weight_binarizer.modules() if isinstance(m, torch.nn.Conv2d)]
        pixels = layer.kernel_size**2
        total += sum(layer.out_channels * pixels * c.in_channels * c.out_channels * 9 for c in convs)
    return total


def make_case(case: str, model_name: str, options: dict, batch_size: int):
    """``(step, flops)``: a closure timing one training step on a fixed random batch, and its FLOPs."""
    spec = MODELS[model_name]
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    binarizer = case.split()[0].removesuffix("+kd")
    kinds = {"fp": ("none", "none")}.get(binarizer, (binarizer, "ste"))
    torch.manual_seed(0)
    model = create_model(
        model_name, num_classes=10, weight_binarizer=kinds[0], activation_binarizer=kinds[1], **options
    )
    teacher = None
    if case.endswith("+kd"):
        teacher = create_model(
            model_name, num_classes=10, weight_binarizer="none", activation_binarizer="none", **options
        )
        teacher.eval().requires_grad_(False)
    flops = 6 * forward_macs(model, shape) * batch_size + 6 * mapping_macs(model)
    flops += 2 * forward_macs(teacher, shape) * batch_size if teacher is not None else 0
    channels_last = "contiguous" not in case
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, *shape, generator=generator)
    labels = torch.randint(0, 10, (batch_size,), generator=generator)
    if channels_last:
        use_channels_last(model)
        images = images.contiguous(memory_format=torch.channels_last)
        if teacher is not None:
            teacher.to(memory_format=torch.channels_last)
    objective = Objective(teacher=teacher, kd_weight=1.0 if teacher is not None else 0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step() -> float:
        started = time.perf_counter()
        loss = objective(model(images), images, labels, model)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    return step, flops


def measure(model_name: str, options: dict, cases: list[str], batch_size: int, rounds: int, warmup: int):
    flops = 2 * GEMM_SIZE**3
    steps = {case: make_case(case, model_name, options, batch_size) for case in cases}
    steps |= {name: (step, flops) for name, step in gemm_steps().items()}
    times: dict[str, list[float]] = {case: [] for case in steps}
    for index in range(warmup + rounds):
        for case, (step, _) in steps.items():  # alternate: every case sees the same machine load
            seconds = step()
            if index >= warmup:
                times[case].append(seconds)
    return {case: (statistics.median(times[case]), steps[case][1]) for case in steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fmnist-bnn"], choices=list(MODELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="torch threads to measure")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=8, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per case")
    parser.add_argument("--width", type=int, help="override the models' width option (fmnist-bnn 64)")
    parser.add_argument("--stem-pool", action="store_true", help="fmnist-bnn: 2x2 max-pool after the stem")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args()

    options = {"width": args.width} if args.width else {}
    if args.stem_pool:
        options["stem_pool"] = True
    print(
        f"torch {torch.__version__}, batch {args.batch_size}, median of {args.rounds} steps, cases alternated"
    )
    header = (
        f"{'model':<12} {'threads':>7} {'case':<15} {'img/s':>7} {'step ms':>8} {'GFLOP/step':>10} "
        f"{'GFLOP/s':>8} {'mm GFLOP/s':>10} {'% mm':>6} {'% 1x1':>6} {'epoch*':>8}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for model_name in args.models:
            measured = measure(model_name, options, args.cases, args.batch_size, args.rounds, args.warmup)
            gemm = {name: measured.pop(name)[1] / measured_seconds / 1e9
                    for name, measured_seconds in [(n, measured[n][0]) for n in ("mm", "conv1x1")]}  # fmt: skip
            print(f"{'':<12} {threads:>7} GEMM 2048^3: torch.mm {gemm['mm']:.1f} GFLOP/s, "
                  f"as a 1x1 conv (oneDNN) {gemm['conv1x1']:.1f} GFLOP/s")  # fmt: skip
            for case, (seconds, flops) in measured.items():
                rate = flops / seconds / 1e9
                row = {"model": model_name, "options": options, "threads": threads, "case": case,
                       "images_per_s": args.batch_size / seconds, "step_s": seconds, "gflop_per_step": flops / 1e9,
                       "gflops": rate, "mm_gflops": gemm["mm"], "conv1x1_gflops": gemm["conv1x1"],
                       "fraction_of_mm": rate / gemm["mm"], "fraction_of_conv1x1": rate / gemm["conv1x1"]}  # fmt: skip
                rows.append(row)
                epoch_min = FASHION_MNIST_TRAIN_IMAGES / row["images_per_s"] / 60
                print(
                    f"{model_name:<12} {threads:>7} {case:<15} {row['images_per_s']:>7.1f} {1000 * seconds:>8.1f} "
                    f"{flops / 1e9:>10.2f} {rate:>8.1f} {gemm['mm']:>10.1f} {100 * row['fraction_of_mm']:>5.0f}% "
                    f"{100 * row['fraction_of_conv1x1']:>5.0f}% {epoch_min:>6.1f} min",
                    flush=True,
                )
    print("* training time of one 55,000-image epoch at this rate (no evaluation)")
    if args.json:
        args.json.write_text(
            json.dumps({"options": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
