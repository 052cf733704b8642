"""LNS sensitivity on Fashion-MNIST (the paper's Figs. 4-5), paired with plain fine-tuning, several seeds.

For each seed: one baseline BNN (``ste``); from its best checkpoint, with the same joint epochs,
schedule and data order: plain fine-tuning (``ste``), LNS with alpha in {0, 0.01, 0.1, 1, 10} at
rho = 0.005, LNS with rho in {0, 0.001, 0.005, 0.05, 0.2} at alpha = 1, and one variant beyond the
paper: the auxiliary loss averaged per weight instead of summed (``--aux-reduction mean``). LNS runs
start with the data-free mapping warm-up (seconds), so every fine-tuning trains ``--finetune-epochs``
joint epochs. For every run: test accuracy of the best-validation checkpoint, its paired difference
to plain fine-tuning of the same seed (mean, std, 95% Student-t interval: ``trainer.paired_stats``),
the flip rate (per joint epoch, counted from the baseline's bits, and in total from the baseline to
the best checkpoint) and the per-layer ratio of auxiliary to cross-entropy gradient norms on the
latent weights (``trainer.diagnostics``, on 4 training batches of the best checkpoint).

Writes ``OUT/results.json``, ``OUT/results.md`` (the table) and ``OUT/sensitivity.png`` (two panels,
mean +- std over seeds). Finished runs are reused (``summary.json`` per run folder), so an
interrupted study continues where it stopped. Runs go ``--jobs`` at a time, each with ``--threads``
torch threads (default 2 x 1 on 2 cores).

    nice -n 10 .venv/bin/python benchmarks/lns_fmnist.py                      # the reduced budget: 36 runs,
                                                                             # 36.5 min measured here
    nice -n 10 .venv/bin/python benchmarks/lns_fmnist.py --seeds 0 --subset 2000 --baseline-epochs 1 \\
        --finetune-epochs 1 --out runs/lns_smoke                             # a smoke test

The paper's effect is about +0.3 points over plain fine-tuning (docs/lns-method.md section 6):
read a difference together with its interval.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repo

from trainer.paired_stats import paired_difference  # noqa: E402  (pure: no torch in the parent)

ALPHAS = (0.0, 0.01, 0.1, 1.0, 10.0)
RHOS = (0.0, 0.001, 0.005, 0.05, 0.2)
PAPER_ALPHA, PAPER_RHO = 1.0, 0.005
PLAIN = "plain fine-tuning"
GRADIENT_BATCHES = 4


def variants() -> dict[str, dict]:
    """name -> options of every fine-tuning; the alpha and rho sweeps share the paper's point."""
    table = {PLAIN: {"binarizer": "ste"}}
    points = [(alpha, PAPER_RHO) for alpha in ALPHAS] + [(PAPER_ALPHA, rho) for rho in RHOS]
    for alpha, rho in points:
        table.setdefault(lns_name(alpha, rho), {"binarizer": "lns", "alpha": alpha, "rho": rho})
    table[lns_name(PAPER_ALPHA, PAPER_RHO, "mean")] = {
        "binarizer": "lns",
        "alpha": PAPER_ALPHA,
        "rho": PAPER_RHO,
        "aux_reduction": "mean",
    }
    return table


def lns_name(alpha: float, rho: float, reduction: str = "sum") -> str:
    return f"LNS alpha={alpha:g} rho={rho:g}" + (" aux=mean (not the paper's)" if reduction == "mean" else "")


def folder_name(name: str) -> str:
    return name.replace("LNS ", "lns-").replace(" (not the paper's)", "").replace(" ", "-").replace("=", "")


# --- one run (in a worker process) ------------------------------------------------------------------


def run_job(job: dict) -> dict:
    """Train one run (or reuse a finished one) and measure it; returns its summary."""
    import torch

    from trainer.train import TrainConfig, train

    torch.set_num_threads(job["config"]["threads"])
    out = Path(job["config"]["out"])
    done = out / "summary.json"
    if done.exists():
        return json.loads(done.read_text())
    started = time.perf_counter()
    result = train(TrainConfig(**job["config"]))
    summary = {
        "seed": job["config"]["seed"],
        "test_acc": result.best_test_acc,
        "val_acc": result.best_val_acc,
        "best_epoch": result.best_epoch,
        "seconds": time.perf_counter() - started,
        "images_per_s": statistics.fmean(row["images_per_s"] for row in result.history),
        "flip_rate_per_epoch": statistics.fmean(
            row["flip_rate"] for row in result.history if row["phase"] == "joint"
        ),
        "mapping_warmup": result.mapping_warmup,
    }
    if job.get("baseline"):
        summary.update(measure_against_baseline(job, result.best_checkpoint))
    temporary = done.with_name(".summary.json.tmp")
    temporary.write_text(json.dumps(summary, indent=2))
    os.replace(temporary, done)
    return summary


def measure_against_baseline(job: dict, best_checkpoint: Path) -> dict:
    """Bits flipped from the baseline to the best checkpoint, and the aux/CE gradient-norm ratios."""
    from trainer.checkpoint import load_checkpoint, model_from_checkpoint
    from trainer.data import load_dataset, normalize, training_split
    from trainer.diagnostics import gradient_norm_ratios
    from trainer.layers import flip_rate, latent_signs, weight_signs

    baseline = model_from_checkpoint(load_checkpoint(job["baseline"]))
    tuned = model_from_checkpoint(load_checkpoint(best_checkpoint))
    flipped = flip_rate(latent_signs(baseline), weight_signs(tuned))
    config = job["config"]
    dataset = load_dataset("fashion-mnist", data_dir=config["data_dir"])
    train_idx, _ = training_split(len(dataset.train_x), config["val_size"], config["subset"], config["seed"])
    size = config["batch_size"]
    batches = [
        (normalize(dataset.train_x[idx], dataset.mean, dataset.std), dataset.train_y[idx])
        for idx in (train_idx[i * size : (i + 1) * size] for i in range(GRADIENT_BATCHES))
    ]
    return {"flipped_vs_baseline": flipped, "gradient_norms": gradient_norm_ratios(tuned, batches)}


# --- the study --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=32, help="fmnist-bnn channel width (zoo default 64)")
    parser.add_argument("--subset", type=int, default=15000, help="first N training images")
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--baseline-epochs", type=int, default=4)
    parser.add_argument("--finetune-epochs", type=int, default=2, help="joint epochs of every fine-tuning")
    parser.add_argument("--baseline-lr", type=float, default=2e-3)
    parser.add_argument("--finetune-lr", type=float, default=2e-4)
    parser.add_argument("--mapping-lr", type=float, default=1e-3, help="LR of the LNS mapping networks")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default 2 / jobs)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/lns_fmnist")
    args = parser.parse_args()
    threads = args.threads or max(1, (os.cpu_count() or 2) // args.jobs)

    out = Path(args.out)
    common = {
        "model": "fmnist-bnn",
        "model_options": {"width": args.width},
        "data": "fashion-mnist",
        "data_dir": args.data_dir,
        "subset": args.subset,
        "val_size": args.val_size,
        "augment": args.augment,
        "threads": threads,
        "batch_size": 128,
        "verbose": False,
    }
    table = variants()
    runs: dict[str, dict[int, dict]] = {"baseline": {}, **{name: {} for name in table}}
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        pending = {}
        for seed in args.seeds:
            config = {**common, "out": str(out / f"seed{seed}" / "baseline"), "binarizer": "ste",
                      "epochs": args.baseline_epochs, "lr": args.baseline_lr, "seed": seed}  # fmt: skip
            pending[pool.submit(run_job, {"config": config})] = ("baseline", seed)
        while pending:
            future = next(as_completed(pending))
            name, seed = pending.pop(future)
            summary = future.result()
            runs[name][seed] = summary
            print(f"[{time.perf_counter() - started:6.0f} s] seed {seed} {name}: test "
                  f"{100 * summary['test_acc']:.2f}% ({summary['seconds']:.0f} s)", flush=True)  # fmt: skip
            if name != "baseline":
                continue
            baseline = str(out / f"seed{seed}" / "baseline" / "best.pt")
            for variant, options in table.items():
                config = {**common, "out": str(out / f"seed{seed}" / folder_name(variant)), "init": baseline,
                          "epochs": args.finetune_epochs, "lr": args.finetune_lr, "seed": seed, **options}  # fmt: skip
                if options["binarizer"] == "lns":
                    config["mapping_lr"] = args.mapping_lr
                pending[pool.submit(run_job, {"config": config, "baseline": baseline})] = (variant, seed)

    document = summarise(runs, table, args.seeds)
    document["args"] = vars(args)
    document["threads_per_run"] = threads
    document["wall_seconds"] = time.perf_counter() - started
    write(out, document)


def summarise(runs: dict[str, dict[int, dict]], table: dict[str, dict], seeds: list[int]) -> dict:
    """Per variant: accuracy mean/std, paired difference to plain fine-tuning, flips, gradient ratios."""
    plain = [100 * runs[PLAIN][seed]["test_acc"] for seed in seeds]
    results = {}
    for name in ["baseline", *table]:
        rows = [runs[name][seed] for seed in seeds]
        accuracies = [100 * row["test_acc"] for row in rows]
        entry = {
            "options": table.get(name, {"binarizer": "ste"}),
            "test_acc_mean": statistics.fmean(accuracies),
            "test_acc_std": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
            "flip_rate_per_epoch": statistics.fmean(row["flip_rate_per_epoch"] for row in rows),
            "seconds_mean": statistics.fmean(row["seconds"] for row in rows),
            "runs": rows,
        }
        if name != "baseline":
            entry["vs_plain_pp"] = paired_difference(accuracies, plain).as_dict()
            entry["flipped_vs_baseline"] = statistics.fmean(row["flipped_vs_baseline"] for row in rows)
            layers = rows[0]["gradient_norms"]["ratio"]
            entry["gradient_norm_ratio"] = {
                layer: statistics.fmean(row["gradient_norms"]["ratio"][layer] for row in rows)
                for layer in layers
            }
            warmups = [row["mapping_warmup"] for row in rows if row.get("mapping_warmup")]
            if warmups:
                entry["warmup_steps_mean"] = statistics.fmean(w["steps"] for w in warmups)
                entry["warmup_seconds_mean"] = statistics.fmean(w["seconds"] for w in warmups)
                entry["warmup_min_agreement"] = min(min(w["agreement"].values()) for w in warmups)
        results[name] = entry
    return {"seeds": seeds, "results": results}


def write(out: Path, document: dict) -> None:
    """results.json, results.md and sensitivity.png, each written atomically."""
    from formats.files import write_atomic

    write_atomic(out / "results.json", json.dumps(document, indent=2).encode())
    write_atomic(out / "results.md", markdown(document).encode())
    plot(document, out / "sensitivity.png")
    print(markdown(document))
    print(f"written {out / 'results.json'}, {out / 'results.md'}, {out / 'sensitivity.png'}")


def markdown(document: dict) -> str:
    args, results = document["args"], document["results"]
    n = len(document["seeds"])
    lines = [
        f"fmnist-bnn width {args['width']}, first {args['subset']} training images "
        f"(validation {args['val_size']}), baseline {args['baseline_epochs']} epochs (Adam {args['baseline_lr']:g}), "
        f"every fine-tuning {args['finetune_epochs']} joint epochs (Adam {args['finetune_lr']:g}, cosine, "
        f"mapping LR {args['mapping_lr']:g}), seeds {document['seeds']}; test accuracy of the best-validation "
        f"checkpoint on the 10,000 test images. Paired difference: per seed, variant minus plain fine-tuning "
        f"of the same seed (same baseline, data order), mean +- sample std, 95% Student-t interval (n={n}).",
        "",
        "| variant | test acc % (mean ± std) | Δ vs plain, pp: mean ± std | 95% CI | flips/epoch | "
        "flipped vs baseline | aux/CE grad-norm ratio per layer | warm-up steps |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, entry in results.items():
        std = entry["test_acc_std"]
        accuracy = f"{entry['test_acc_mean']:.2f}" + (f" ± {std:.2f}" if std is not None else "")
        diff = entry.get("vs_plain_pp")
        if diff is None or name == PLAIN:
            delta, interval = "-", "-"
        else:
            delta = f"{diff['mean']:+.2f}" + (f" ± {diff['std']:.2f}" if diff["std"] is not None else "")
            interval = (
                "n/a (1 seed)"
                if diff["ci95"] is None
                else f"[{diff['ci95'][0]:+.2f}, {diff['ci95'][1]:+.2f}]"
            )
        flipped = entry.get("flipped_vs_baseline")
        ratios = entry.get("gradient_norm_ratio")
        ratio_text = ", ".join(f"{value:.3g}" for value in ratios.values()) if ratios else "-"
        lines.append(
            f"| {name} | {accuracy} | {delta} | {interval} | {100 * entry['flip_rate_per_epoch']:.3f}% | "
            f"{'-' if flipped is None else f'{100 * flipped:.3f}%'} | {ratio_text} | "
            f"{entry.get('warmup_steps_mean', 0):.0f} |"
        )
    example = next(entry["vs_plain_pp"] for name, entry in results.items() if name not in ("baseline", PLAIN))
    lines += ["", f"Statistics: {example['note']}."]
    return "\n".join(lines) + "\n"


def plot(document: dict, path: Path) -> None:
    """Accuracy versus alpha (rho = 0.005) and versus rho (alpha = 1), mean +- std over seeds."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from formats.files import write_atomic

    results = document["results"]
    plain = results[PLAIN]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for axis, values, key, label in (
        (axes[0], ALPHAS, lambda v: lns_name(v, PAPER_RHO), "alpha (rho = 0.005)"),
        (axes[1], RHOS, lambda v: lns_name(PAPER_ALPHA, v), "rho (alpha = 1)"),
    ):
        entries = [results[key(value)] for value in values]
        positions = range(len(values))
        axis.errorbar(positions, [e["test_acc_mean"] for e in entries], yerr=[e["test_acc_std"] or 0 for e in entries],
                      marker="o", capsize=4, label="LNS (aux summed, the paper)")  # fmt: skip
        axis.axhline(plain["test_acc_mean"], color="tab:grey", ls="--", label="plain fine-tuning")
        if plain["test_acc_std"]:
            axis.axhspan(plain["test_acc_mean"] - plain["test_acc_std"], plain["test_acc_mean"] + plain["test_acc_std"],
                         color="tab:grey", alpha=0.15)  # fmt: skip
        axis.set_xticks(list(positions), [f"{value:g}" for value in values])
        axis.set(xlabel=label, title=f"LNS sensitivity to {label.split()[0]}")
        axis.grid(alpha=0.3)
    mean_variant = results[lns_name(PAPER_ALPHA, PAPER_RHO, "mean")]
    axes[0].errorbar([ALPHAS.index(PAPER_ALPHA) + 0.1], [mean_variant["test_acc_mean"]],
                     yerr=[mean_variant["test_acc_std"] or 0], marker="s", color="tab:orange", capsize=4,
                     ls="none", label="aux averaged per weight (not the paper's)")  # fmt: skip
    axes[0].set_ylabel(f"test accuracy % (mean ± std, {len(document['seeds'])} seeds)")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


if __name__ == "__main__":
    main()
