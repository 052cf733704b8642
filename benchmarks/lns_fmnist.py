"""LNS versus its controls on Fashion-MNIST, several seeds, the same budget for every variant.

For each seed: one baseline BNN (``ste``), then three fine-tunings from its best checkpoint with the
same number of epochs: plain fine-tuning (``ste``), LNS without noisy supervision (``alpha=0``),
and LNS (``alpha``, ``rho``). Prints mean and std of the test accuracy (of the best-validation checkpoint) and the mean flip
rate of the fine-tuning epochs, and writes ``OUT/results.json``. Finished runs are reused, so an
interrupted study continues where it stopped.

    .venv/bin/python benchmarks/lns_fmnist.py --seeds 0 1 2 --baseline-epochs 15 --finetune-epochs 10
    .venv/bin/python benchmarks/lns_fmnist.py --seeds 0 1 2 --baseline-epochs 3 --finetune-epochs 2 --subset 10000

The paper's effect is about +0.3 points over plain fine-tuning (LNS_METHOD.md section 6): compare
means only together with their spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from trainer.train import TrainConfig, train

VARIANTS = {  # name -> (run folder, options)
    "plain fine-tuning": ("finetune", {"binarizer": "ste"}),
    "LNS, alpha=0 (no noisy supervision)": ("lns-alpha0", {"binarizer": "lns", "alpha": 0.0}),
    "LNS": ("lns", {"binarizer": "lns"}),
}


def joint_flip_rate(run_dir: Path) -> float | None:
    """Mean flip rate of the joint (fine-tuning) epochs. The LNS warm-up epoch is left out: it moves
    the bits from a fresh mapping network's to sign(W), which says nothing about fine-tuning."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    flips = [
        row["flip_rate"] for row in rows if row.get("phase") == "joint" and row.get("flip_rate") is not None
    ]
    return statistics.fmean(flips) if flips else None


def run_once(config: TrainConfig) -> dict:
    """Train (or reuse a finished run) and return its summary."""
    done = Path(config.out) / "summary.json"
    if not done.exists():
        started = time.perf_counter()
        result = train(config)
        summary = {
            "test_acc": result.best_test_acc,
            "val_acc": result.best_val_acc,
            "best_epoch": result.best_epoch,
            "seconds": time.perf_counter() - started,
        }
        temporary = done.with_name(".summary.json.tmp")
        temporary.write_text(json.dumps(summary, indent=2))
        os.replace(temporary, done)
    summary = json.loads(done.read_text())
    summary["mean_flip_rate"] = joint_flip_rate(Path(config.out))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="fmnist-bnn")
    parser.add_argument("--baseline-epochs", type=int, default=15)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--warmup-mapping-epochs", type=int, default=1)
    parser.add_argument("--baseline-lr", type=float, default=2e-3)
    parser.add_argument("--finetune-lr", type=float, default=2e-4)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--rho", type=float, default=0.005)
    parser.add_argument("--mapping-lr", type=float, default=1e-3, help="LR of the LNS mapping networks")
    parser.add_argument("--subset", type=int, default=None, help="first N training images (quick studies)")
    parser.add_argument(
        "--width", type=int, default=None, help="fmnist-bnn channel width (default: the zoo's)"
    )
    parser.add_argument("--val-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/lns_fmnist")
    args = parser.parse_args()

    out = Path(args.out)
    common = {
        "model": args.model,
        "model_options": {"width": args.width} if args.width else None,
        "data": "fashion-mnist",
        "data_dir": args.data_dir,
        "subset": args.subset,
        "val_size": args.val_size,
        "threads": args.threads,
        "verbose": False,
    }
    # Plain fine-tuning has no mapping to warm up: it trains those epochs jointly (same epoch budget).
    budget = args.finetune_epochs + args.warmup_mapping_epochs
    results: dict[str, list[dict]] = {"baseline": [], **{name: [] for name in VARIANTS}}
    for seed in args.seeds:
        base_dir = out / f"seed{seed}" / "baseline"
        baseline = run_once(TrainConfig(**common, out=str(base_dir), binarizer="ste", epochs=args.baseline_epochs,
                                        lr=args.baseline_lr, seed=seed))  # fmt: skip
        results["baseline"].append(baseline)
        print(f"seed {seed} baseline: test {100 * baseline['test_acc']:.2f}%", flush=True)
        for name, (folder, options) in VARIANTS.items():
            lns = options["binarizer"] == "lns"
            config = TrainConfig(
                **common,
                out=str(out / f"seed{seed}" / folder),
                binarizer=options["binarizer"],
                alpha=options.get("alpha", args.alpha),
                rho=args.rho,
                epochs=args.finetune_epochs if lns else budget,
                warmup_mapping_epochs=args.warmup_mapping_epochs if lns else 0,
                lr=args.finetune_lr,
                mapping_lr=args.mapping_lr if lns else None,
                init=str(base_dir / "best.pt"),
                seed=seed,
            )
            summary = run_once(config)
            results[name].append(summary)
            print(f"seed {seed} {name}: test {100 * summary['test_acc']:.2f}%, mean flip rate "
                  f"{100 * (summary['mean_flip_rate'] or 0):.3f}%", flush=True)  # fmt: skip

    print()
    print(f"{args.model}" + (f" width {args.width}" if args.width else "") + f" on Fashion-MNIST, seeds {args.seeds}, "
          f"baseline {args.baseline_epochs} epochs, fine-tuning {budget} epochs"
          + (f", subset {args.subset}" if args.subset else ""))  # fmt: skip
    print(f"{'variant':40s} {'test acc mean':>14s} {'std':>7s} {'best':>7s} {'flip rate':>10s}")
    table = {}
    for name, rows in results.items():
        accuracies = [100 * row["test_acc"] for row in rows]
        flips = [row["mean_flip_rate"] for row in rows if row["mean_flip_rate"] is not None]
        std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        flip = 100 * statistics.fmean(flips) if flips else float("nan")
        table[name] = {
            "mean": statistics.fmean(accuracies),
            "std": std,
            "best": max(accuracies),
            "flip_rate_pct": flip,
            "runs": rows,
        }
        print(f"{name:40s} {table[name]['mean']:13.2f}% {std:7.2f} {max(accuracies):6.2f}% {flip:9.3f}%")
    document = {"args": vars(args), "results": table}
    temporary = out / ".results.json.tmp"
    temporary.write_text(json.dumps(document, indent=2))
    os.replace(temporary, out / "results.json")
    print(f"\nwritten {out / 'results.json'}")


if __name__ == "__main__":
    main()
