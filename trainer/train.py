"""The training loop behind ``edgebnn train``: one function, read it top to bottom.

    >>> import tempfile
    >>> from trainer.train import TrainConfig, train
    >>> result = train(TrainConfig(model="fmnist-bnn", model_options={"width": 8}, data="synthetic",
    ...                            epochs=1, out=tempfile.mkdtemp(), verbose=False))
    >>> result.final["epoch"], result.best_checkpoint.name, result.metrics_path.exists()
    (1, 'best.pt', True)

What one run does (see docs/training.md for the commands):

1. Data: the whole dataset lives in memory as uint8 tensors; a deterministic validation split is
   cut from the training set, ``subset`` keeps the first N remaining training images. Batches are
   augmented (random crop + flip) and normalised on the fly, a whole batch at a time.
2. Model from the zoo (``--binarizer ste|lns``); ``--init`` loads a trained baseline strictly,
   except the LNS mapping networks that the baseline does not have.
3. Schedule: ``warmup_mapping_epochs`` epochs that train only the mapping networks (everything else
   frozen, BatchNorm statistics too), then ``epochs`` joint epochs under the LR schedule.
4. Every epoch: validation and test accuracy, the flip rate of the binary weights, a line in
   ``metrics.jsonl``, ``curves.png``, and the checkpoints ``last.pt`` and ``best.pt`` (by
   validation accuracy), all written atomically.

Reproducibility: the data order of epoch ``e`` comes from ``DistributedSampler(seed, epoch=e)`` and
the augmentation of rank ``r`` from a generator seeded with ``(seed, e, r)``, so a resumed run sees
exactly the batches an uninterrupted run sees. Ctrl-C (SIGINT) or SIGTERM stops at the next step
boundary and writes a resumable ``last.pt`` (mid-epoch, with its position); a non-finite loss stops
the run before the bad step touches any checkpoint.

Under ``torchrun`` each process trains one DDP replica on its shard of every batch order; rank 0
writes the files and prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from trainer.data import normalize
from trainer.errors import TrainerError
from trainer.files import write_atomic

BINARIZERS = ("ste", "lns")
ACTIVATION_BINARIZERS = ("ste", "approx")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step")
AUGMENTED_DATASETS = ("fashion-mnist", "cifar10")
EVAL_BATCH_SIZE = 256  # larger batches run slower on CPU (activations fall out of cache)
# Set to a global step number to deliver a real SIGINT to this process at that step (tests use
# it to interrupt a run at a known place; the handling is the same as a Ctrl-C from a terminal).
INTERRUPT_AT_STEP_ENV = "EDGEBNN_TRAIN_INTERRUPT_AT_STEP"
# Set to 1 to make every rank print the SHA-256 of its final weights (checks DDP replicas agree).
PRINT_HASH_ENV = "EDGEBNN_TRAIN_PRINT_HASH"
# Config fields that must not change when a run is resumed (epochs may grow, threads may change).
RESUME_FIXED_FIELDS = (
    "model", "model_options", "data", "binarizer", "act_binarizer", "alpha", "rho", "rho_pos", "rho_neg",
    "mapping_width", "batch_size", "optimizer", "schedule", "step_size", "gamma", "label_smoothing", "augment",
    "subset", "val_size", "seed", "warmup_mapping_epochs", "mapping_lr",
)  # fmt: skip


class TrainingDiverged(TrainerError):
    """The loss became NaN or infinite: the run stopped; the checkpoints on disk are the last good ones."""

    exit_code = 1


class TrainingInterrupted(TrainerError):
    """Ctrl-C or SIGTERM: a resumable checkpoint was written; continue with ``--resume``."""

    exit_code = 130


@dataclass
class TrainConfig:
    """Everything that defines a run; the CLI flags map one to one onto these fields."""

    model: str
    data: str
    out: str
    data_dir: str | None = None
    model_options: dict | None = None  # architecture options of the zoo model, e.g. {"width": 32}
    binarizer: str = "ste"
    act_binarizer: str = "ste"
    alpha: float = 1.0
    rho: float = 0.005
    rho_pos: float | None = None  # default: rho
    rho_neg: float | None = None  # default: rho
    mapping_width: int = 2
    mapping_lr: float | None = None  # LR of the LNS mapping networks (default: lr); fresh nets need more
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    step_size: int = 30
    gamma: float = 0.1
    label_smoothing: float = 0.0
    augment: bool | None = None  # default: on for fashion-mnist and cifar10
    subset: int | None = None
    val_size: int | None = None  # default: 5000, or a tenth of a training set under 20k images
    seed: int = 0
    init: str | None = None
    warmup_mapping_epochs: int = 0
    resume: bool = False
    device: str = "cpu"
    threads: int | None = None
    verbose: bool = True


@dataclass
class TrainResult:
    """What a finished run hands back to its caller (the CLI, the pipeline)."""

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path
    metrics_path: Path
    curves_path: Path
    final: dict  # the metrics of the last epoch
    best_epoch: int
    best_val_acc: float | None  # None without a validation split (--val-size 0)
    best_test_acc: float | None  # test accuracy of the best-validation epoch (the one in best.pt)
    state_hash: str  # SHA-256 of the final weights
    rank: int = 0  # this process's rank under torchrun (only rank 0 writes files)
    history: list[dict] = field(default_factory=list)


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) one training run; see the module docstring."""
    from trainer import checkpoint as ckpt_io
    from trainer import layers, lns, zoo
    from trainer.augment import default_padding, random_crop_flip
    from trainer.data import load_dataset, train_val_split

    cfg = _validated(config)
    if cfg.model not in zoo.MODELS:
        raise TrainerError(f"unknown model {cfg.model!r}; valid models: {', '.join(zoo.MODELS)}")
    run_dir = Path(cfg.out)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    metrics_path, curves_path = run_dir / "metrics.jsonl", run_dir / "curves.png"

    # --- processes, device, threads -------------------------------------------------------------
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world_size, device = _setup_distributed(cfg.device)
    is_main = rank == 0
    log = _printer(is_main and cfg.verbose)
    _prepare_run_dir(run_dir, resume=cfg.resume)  # on every rank: a bad --out stops them all
    if cfg.resume and not last_path.exists():
        raise TrainerError(f"--resume: {last_path} does not exist (nothing to resume in {run_dir})")

    # --- data: uint8 tensors in memory, a deterministic validation split ------------------------
    dataset = load_dataset(cfg.data, data_dir=cfg.data_dir)
    num_train = len(dataset.train_x)
    val_size = cfg.val_size if cfg.val_size is not None else (5000 if num_train >= 20000 else num_train // 10)
    train_idx, val_idx = train_val_split(num_train, val_size, seed=cfg.seed)
    if cfg.subset is not None:
        if cfg.subset > len(train_idx):
            raise TrainerError(
                f"--subset {cfg.subset}: only {len(train_idx)} training images after the validation split"
            )
        train_idx = train_idx[: cfg.subset]
    train_x, train_y = dataset.train_x[train_idx].to(device), dataset.train_y[train_idx].to(device)
    val_x, val_y = dataset.train_x[val_idx].to(device), dataset.train_y[val_idx].to(device)
    test_x, test_y = dataset.test_x.to(device), dataset.test_y.to(device)
    mean, std = dataset.mean, dataset.std
    channels, height, _ = dataset.input_shape
    augment = cfg.augment if cfg.augment is not None else cfg.data in AUGMENTED_DATASETS
    if len(train_x) < 2 * world_size:
        raise TrainerError(f"{len(train_x)} training images are too few for {world_size} process(es)")

    # --- model ------------------------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    binarizer_config = _binarizer_config(cfg)
    model = zoo.create_model(
        cfg.model,
        num_classes=dataset.num_classes,
        in_channels=channels,
        input_size=height,
        weight_binarizer=cfg.binarizer,
        activation_binarizer=cfg.act_binarizer,
        binarizer_config=binarizer_config,
        **(cfg.model_options or {}),
    ).to(device)
    mapping_params = list(lns.mapping_parameters(model))
    mapping_ids = {id(p) for p in mapping_params}
    if cfg.init and not cfg.resume:
        # Strict, except LNS mapping networks that the baseline lacks (they keep their fresh init).
        try:
            ckpt_io.load_state_strict(model, ckpt_io.load_checkpoint(cfg.init)["state_dict"])
        except TrainerError as error:
            raise TrainerError(f"--init {cfg.init}: {error}") from None
    if cfg.warmup_mapping_epochs and not mapping_params:
        log(f"note: no warm-up: --binarizer {cfg.binarizer} has no mapping networks to warm up")
    warmup_epochs = cfg.warmup_mapping_epochs if mapping_params else 0
    total_epochs = warmup_epochs + cfg.epochs

    # --- optimizer and schedule: weight decay never on the binary latent weights ------------------
    # The mapping networks start from scratch next to a trained network: with the fine-tuning LR
    # (e.g. 2e-4 with Adam) one warm-up epoch leaves 3-11% of their bits disagreeing with sign(W);
    # at 1e-3 they agree on >99.9% (measured on fmnist-bnn, docs/training.md), hence their own LR.
    latent_ids = {id(module.weight) for _, module in layers.binary_layers(model)}
    param_groups = [
        {"params": [p for p in model.parameters() if id(p) in latent_ids], "weight_decay": 0.0},
        {
            "params": [p for p in model.parameters() if id(p) not in latent_ids | mapping_ids],
            "weight_decay": cfg.weight_decay,
        },
    ]
    if mapping_params:
        param_groups.append(
            {"params": mapping_params, "weight_decay": cfg.weight_decay, "lr": cfg.mapping_lr or cfg.lr}
        )
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum)
    else:
        optimizer = torch.optim.Adam(param_groups, lr=cfg.lr)
    # A closed-form factor of the joint epochs done: extending --epochs on --resume re-plans the rest
    # of a cosine schedule, and a run stopped early resumes with exactly the LRs it would have had.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: _lr_factor(cfg, done))

    # --- resume -----------------------------------------------------------------------------------
    start_epoch, history, best = 1, [], {"epoch": 0, "val_acc": None, "test_acc": None}
    resume_point: dict | None = None
    flip_reference = layers.weight_signs(model)
    if cfg.resume:
        saved = ckpt_io.load_checkpoint(str(last_path))
        _check_resume_config(saved, cfg, last_path)
        ckpt_io.load_state_strict(model, saved["state_dict"], allow_mapping=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base_lr * _lr_factor(cfg, scheduler.last_epoch)  # --epochs may have changed
        torch.set_rng_state(saved["rng"]["torch"])
        if device.type == "cuda" and saved["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(saved["rng"]["cuda"], device)
        history, best = list(saved["history"]), dict(saved["best"])
        flip_reference = {name: signs.to(device) for name, signs in saved["flip_reference"].items()}
        start_epoch = int(saved["epoch"]) + 1
        resume_point = saved.get("resume_point")
        where = f"epoch {start_epoch} step {resume_point['step']}" if resume_point else f"epoch {start_epoch}"
        log(f"resuming {last_path} at {where}")
    if start_epoch > total_epochs:
        log(f"nothing to do: {last_path} already holds {start_epoch - 1} of {total_epochs} epochs")

    def checkpoint_payload(epoch_done: int, metrics: dict, point: dict | None) -> dict:
        return {
            "format": "edgebnn-checkpoint/1",
            "model": {"name": cfg.model, "config": dict(model.config)},
            "binarizer": {
                "name": cfg.binarizer,
                "config": {"activation": cfg.act_binarizer, **binarizer_config},
            },
            "data": dataset.metadata(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "epoch": epoch_done,
            "metrics": metrics,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
            "train_config": _config_dict(cfg),
            "history": history,
            "best": best,
            "flip_reference": {name: signs.cpu() for name, signs in flip_reference.items()},
            "resume_point": point,
        }

    # --- the loop -------------------------------------------------------------------------------
    padding = default_padding(height)
    stop = _StopRequest()
    global_step = sum(h["steps"] for h in history)
    interrupt_at = int(os.environ.get(INTERRUPT_AT_STEP_ENV, "0") or 0)
    with stop.installed():
        for epoch in range(start_epoch, total_epochs + 1):
            phase = "warmup" if epoch <= warmup_epochs else "joint"
            # Warm-up: only the mapping networks learn; eval() keeps BatchNorm statistics frozen.
            for p in model.parameters():
                p.requires_grad_(phase == "joint" or id(p) in mapping_ids)
            model.train(phase == "joint")
            ddp_model = _wrap_ddp(model, device, world_size)
            order = _epoch_order(len(train_x), cfg.seed, epoch, rank, world_size)
            batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
            batches = [b for b in batches if len(b) > 1]  # BatchNorm needs two images per batch
            aug_gen = torch.Generator().manual_seed(_mix_seed(cfg.seed, epoch, rank))
            stats = {"loss": 0.0, "ce": 0.0, "aux": 0.0, "correct": 0.0, "count": 0.0, "time": 0.0}
            first_step = 0
            if resume_point and resume_point["epoch"] == epoch:  # continue inside this epoch
                first_step = resume_point["step"]
                global_step += first_step
                if is_main:  # the saved partial sums cover all ranks
                    stats = dict(resume_point["stats"])
                if augment:  # replay the skipped batches' random draws: same generator state
                    for skipped in batches[:first_step]:
                        random_crop_flip(train_x[skipped.to(device)], padding, aug_gen)
            resume_point = None
            lr = optimizer.param_groups[0]["lr"]

            with _progress(
                is_main and cfg.verbose, f"epoch {epoch}/{total_epochs} {phase}", len(batches)
            ) as bar:
                bar.advance(first_step)
                for step in range(first_step, len(batches)):
                    global_step += 1
                    if interrupt_at and global_step == interrupt_at:
                        signal.raise_signal(signal.SIGINT)
                    if _any_rank(stop.requested, world_size, device):
                        keys = ("loss", "ce", "aux", "correct", "count")
                        sums = _sum_over_ranks([stats[k] for k in keys], world_size, device)
                        point = {
                            "epoch": epoch,
                            "step": step,
                            "stats": {**stats, **dict(zip(keys, sums, strict=True))},
                        }
                        if is_main:
                            ckpt_io.save_checkpoint(
                                str(last_path), checkpoint_payload(epoch - 1, dict(best), point)
                            )
                        raise TrainingInterrupted(
                            f"interrupted in epoch {epoch} after {step} of {len(batches)} steps; resumable checkpoint "
                            f"{last_path}; continue with the same command plus --resume"
                        )
                    started = time.perf_counter()
                    index = batches[step].to(device)
                    images = train_x[index]
                    if augment:
                        images = random_crop_flip(images, padding, aug_gen)
                    inputs, labels = normalize(images, mean, std), train_y[index]

                    logits = ddp_model(inputs)
                    ce = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
                    aux = lns.aux_loss(model)  # alpha * SUM_i aux_i (alpha applied inside)
                    loss = ce + aux
                    loss_value = loss.item()
                    if _any_rank(not math.isfinite(loss_value), world_size, device):
                        kept = (
                            f"the last good checkpoint is {last_path} (epoch {epoch - 1})"
                            if last_path.exists()
                            else "no checkpoint was written yet"
                        )
                        raise TrainingDiverged(
                            f"loss became {loss_value} at epoch {epoch} step {step + 1}/{len(batches)} "
                            f"(lr {lr:.3g}); training stopped, {kept}; try a lower --lr"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()

                    count = len(index)
                    stats["loss"] += loss_value * count
                    stats["ce"] += ce.item() * count
                    stats["aux"] += aux.item() * count
                    stats["correct"] += (logits.argmax(1) == labels).sum().item()
                    stats["count"] += count
                    stats["time"] += time.perf_counter() - started
                    bar.update(loss=loss_value, ips=stats["count"] / max(stats["time"], 1e-9))

            if phase == "joint":
                scheduler.step()

            # --- end of epoch: evaluate, flip rate, files --------------------------------------
            _average_buffers(model, world_size)  # each replica's BatchNorm saw only its own shard
            totals = _sum_over_ranks(
                [stats["loss"], stats["ce"], stats["aux"], stats["correct"], stats["count"]],
                world_size,
                device,
            )
            loss_sum, ce_sum, aux_sum, correct, count = totals
            eval_started = time.perf_counter()
            val_acc = (
                _accuracy(model, val_x, val_y, mean, std, rank, world_size, device) if len(val_x) else None
            )
            test_acc = _accuracy(model, test_x, test_y, mean, std, rank, world_size, device)
            signs = layers.weight_signs(model)
            flip_rate = layers.flip_rate(flip_reference, signs)
            flip_reference = signs
            metrics = {
                "epoch": epoch,
                "phase": phase,
                "loss": loss_sum / count,
                "ce": ce_sum / count,
                "aux": aux_sum / count,
                "train_acc": correct / count,
                "val_acc": val_acc,
                "test_acc": test_acc,
                "lr": lr,
                "flip_rate": flip_rate,
                "images_per_s": count / max(stats["time"], 1e-9),  # all ranks together
                "epoch_time_s": stats["time"],
                "eval_time_s": time.perf_counter() - eval_started,
                "steps": len(batches),
            }
            history.append(metrics)
            # The best validation accuracy so far; without a validation split, the last epoch.
            if val_acc is None or best["val_acc"] is None or val_acc > best["val_acc"]:
                best = {"epoch": epoch, "val_acc": val_acc, "test_acc": test_acc}
            if is_main:
                summary = {
                    **_checkpoint_metrics(metrics),
                    "best_val_acc": best["val_acc"],
                    "best_epoch": best["epoch"],
                }
                payload = checkpoint_payload(epoch, summary, None)
                ckpt_io.save_checkpoint(str(last_path), payload)
                if best["epoch"] == epoch:
                    ckpt_io.save_checkpoint(str(best_path), payload)
                _write_metrics(metrics_path, history)
                _write_curves(curves_path, history)
            log(_summary_line(metrics, total_epochs))

    # --- done ---------------------------------------------------------------------------------------
    state_hash = state_dict_hash(model.state_dict())
    if os.environ.get(PRINT_HASH_ENV):
        print(f"edgebnn-train rank {rank}/{world_size} weights sha256 {state_hash}", flush=True)
    _barrier(world_size)
    if world_size > 1:
        dist.destroy_process_group()
    return TrainResult(
        run_dir=run_dir,
        last_checkpoint=last_path,
        best_checkpoint=best_path,
        metrics_path=metrics_path,
        curves_path=curves_path,
        final=history[-1] if history else {},
        best_epoch=int(best["epoch"]),
        best_val_acc=best["val_acc"],
        best_test_acc=best["test_acc"],
        state_hash=state_hash,
        rank=rank,
        history=history,
    )


# --- configuration --------------------------------------------------------------------------------


def _validated(cfg: TrainConfig) -> TrainConfig:
    """Reject bad options with the valid choices before any work starts."""
    choices = {
        "binarizer": BINARIZERS,
        "act_binarizer": ACTIVATION_BINARIZERS,
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
    }
    for name, valid in choices.items():
        if getattr(cfg, name) not in valid:
            raise TrainerError(
                f"unknown --{name.replace('_', '-')} {getattr(cfg, name)!r}; valid: {', '.join(valid)}"
            )
    positive = {
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "mapping_width": cfg.mapping_width,
        "step_size": cfg.step_size,
    }
    if cfg.mapping_lr is not None:
        positive["mapping_lr"] = cfg.mapping_lr
    for name, value in positive.items():
        if not value > 0:
            raise TrainerError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if cfg.epochs < 0 or cfg.warmup_mapping_epochs < 0 or cfg.epochs + cfg.warmup_mapping_epochs < 1:
        raise TrainerError(
            "--epochs and --warmup-mapping-epochs must be >= 0 with at least one epoch in total"
        )
    if cfg.subset is not None and cfg.subset < 2:
        raise TrainerError(f"--subset must be at least 2, got {cfg.subset}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise TrainerError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.weight_decay < 0 or cfg.alpha < 0:
        raise TrainerError("--weight-decay and --alpha must be >= 0")
    rho_pos = cfg.rho if cfg.rho_pos is None else cfg.rho_pos
    rho_neg = cfg.rho if cfg.rho_neg is None else cfg.rho_neg
    if not (0 <= rho_pos < 1 and 0 <= rho_neg < 1 and rho_pos + rho_neg < 1):
        raise TrainerError(
            f"noise rates need 0 <= rho_pos, rho_neg and rho_pos + rho_neg < 1, got {rho_pos}, {rho_neg}"
        )
    if cfg.threads is not None and cfg.threads < 1:
        raise TrainerError(f"--threads must be >= 1, got {cfg.threads}")
    return dataclasses.replace(cfg, rho_pos=rho_pos, rho_neg=rho_neg)


def _binarizer_config(cfg: TrainConfig) -> dict:
    """The LNS hyper-parameters handed to the zoo (empty for the plain sign binarizer)."""
    if cfg.binarizer != "lns":
        return {}
    return {"alpha": cfg.alpha, "rho_pos": cfg.rho_pos, "rho_neg": cfg.rho_neg, "width": cfg.mapping_width}


def _lr_factor(cfg: TrainConfig, joint_epochs_done: int) -> float:
    """LR multiplier for the next joint epoch: cosine to 0 over ``epochs``, or ``gamma`` every ``step_size``."""
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * joint_epochs_done / max(cfg.epochs, 1)))
    return cfg.gamma ** (joint_epochs_done // cfg.step_size)


def _config_dict(cfg: TrainConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("verbose", "resume")}


def _check_resume_config(saved: dict, cfg: TrainConfig, path: Path) -> None:
    before = saved.get("train_config") or {}
    now = _config_dict(cfg)
    for name in RESUME_FIXED_FIELDS:
        if name in before and before[name] != now[name]:
            raise TrainerError(
                f"--resume: {path} was trained with {name}={before[name]!r}, the command says {now[name]!r}; "
                "resume with the original options (only --epochs, --threads and --device may change)"
            )
    if "history" not in saved or "flip_reference" not in saved:
        raise TrainerError(
            f"--resume: {path} is not a training checkpoint of `edgebnn train` (no loop state)"
        )


# --- run folder and files -------------------------------------------------------------------------


def _prepare_run_dir(run_dir: Path, resume: bool) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise TrainerError(f"--out {run_dir}: not a writable folder ({error.strerror or error})") from None
    if not resume and (run_dir / "last.pt").exists():
        raise TrainerError(
            f"--out {run_dir} already holds a run (last.pt); continue it with --resume or choose another --out"
        )


def _write_metrics(path: Path, history: list[dict]) -> None:
    """Rewrite metrics.jsonl from the in-memory history: it always matches the checkpoint."""
    write_atomic(path, "".join(json.dumps(row, allow_nan=False) + "\n" for row in history).encode())


def _write_curves(path: Path, history: list[dict]) -> None:
    """Loss, accuracy and flip rate per epoch as one PNG (matplotlib, Agg backend)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    figure, (loss_ax, acc_ax, flip_ax) = plt.subplots(1, 3, figsize=(13, 3.6))
    loss_ax.plot(epochs, [row["ce"] for row in history], marker=".", label="cross-entropy")
    loss_ax.set_title("training loss")
    if any(row["aux"] for row in history):  # LNS: its summed aux loss has another scale, own axis
        aux_ax = loss_ax.twinx()
        aux_ax.plot(epochs, [row["aux"] for row in history], marker=".", ls="--", color="tab:green")
        aux_ax.set_ylabel("LNS aux loss (dashed)", color="tab:green")
    for key, label in (("train_acc", "train"), ("val_acc", "validation"), ("test_acc", "test")):
        values = [row[key] for row in history]
        if any(v is not None for v in values):
            acc_ax.plot(epochs, [math.nan if v is None else 100 * v for v in values], marker=".", label=label)
    acc_ax.set_title("top-1 accuracy (%)")
    flip_ax.plot(epochs, [100 * row["flip_rate"] for row in history], marker=".", color="tab:red")
    flip_ax.set_title("binary weights flipped per epoch (%)")
    warmup_end = max((row["epoch"] for row in history if row["phase"] == "warmup"), default=0)
    for axis in (loss_ax, acc_ax, flip_ax):
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if warmup_end:
            axis.axvspan(0.5, warmup_end + 0.5, color="grey", alpha=0.12, label="mapping warm-up")
    loss_ax.legend(fontsize=8)
    acc_ax.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def _checkpoint_metrics(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key not in ("phase",)}


def _summary_line(m: dict, total_epochs: int) -> str:
    val = "-" if m["val_acc"] is None else f"{100 * m['val_acc']:.2f}%"
    return (
        f"epoch {m['epoch']}/{total_epochs} {m['phase']}: loss {m['loss']:.4f} "
        f"(ce {m['ce']:.4f}, aux {m['aux']:.4g}) train {100 * m['train_acc']:.2f}% val {val} "
        f"test {100 * m['test_acc']:.2f}% flips {100 * m['flip_rate']:.3f}% lr {m['lr']:.3g} "
        f"{m['images_per_s']:.0f} img/s {m['epoch_time_s']:.1f} s"
    )


def _printer(enabled: bool):
    def log(message: str) -> None:
        if enabled:
            print(message, flush=True)

    return log


class _Bar:
    """A rich progress bar for one epoch (no-op when disabled)."""

    def __init__(self, progress, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task("", total=total, loss=math.nan, ips=0.0) if progress else None

    def advance(self, steps: int) -> None:
        if self.progress and steps:
            self.progress.advance(self.task, steps)

    def update(self, loss: float, ips: float) -> None:
        if self.progress:
            self.progress.update(self.task, advance=1, loss=loss, ips=ips)


@contextlib.contextmanager
def _progress(enabled: bool, description: str, total: int) -> Iterator[_Bar]:
    """A progress bar with throughput on stderr, only when it is a terminal."""
    if not (enabled and sys.stderr.isatty()):
        yield _Bar(None, total)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:.0f} img/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield _Bar(progress, total)


# --- small pure helpers -----------------------------------------------------------------------------


def _mix_seed(seed: int, epoch: int, rank: int) -> int:
    """One 63-bit seed per (seed, epoch, rank), stable across platforms and Python runs."""
    digest = hashlib.sha256(f"edgebnn/{seed}/{epoch}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _epoch_order(num_images: int, seed: int, epoch: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's shuffled image indices for one epoch (DistributedSampler semantics, any world size)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(num_images), num_replicas=world_size, rank=rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def state_dict_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of every tensor: equal hash = equal weights."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


@torch.no_grad()
def _accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean,
    std,
    rank: int,
    world_size: int,
    device: torch.device,
) -> float:
    """Top-1 accuracy; under DDP each rank scores every world_size-th image and the counts are summed."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():  # no autograd graph: evaluation is forward-only
        for start in range(rank * EVAL_BATCH_SIZE, len(images), world_size * EVAL_BATCH_SIZE):
            batch = slice(start, start + EVAL_BATCH_SIZE)
            logits = model(normalize(images[batch], mean, std))
            correct += int((logits.argmax(1) == labels[batch]).sum())
    model.train(was_training)
    (correct_total,) = _sum_over_ranks([float(correct)], world_size, device)
    return correct_total / len(images)


# --- processes --------------------------------------------------------------------------------------


def _setup_distributed(requested: str) -> tuple[int, int, torch.device]:
    """Single process, or one DDP replica per torchrun process (gloo on CPU, nccl on CUDA)."""
    if requested not in ("cpu", "cuda"):
        raise TrainerError(f"unknown --device {requested!r}; valid: cpu, cuda")
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainerError("--device cuda: no CUDA device is available here (use --device cpu)")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, torch.device(requested)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if requested == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if requested == "cuda" else "gloo")
    device = torch.device("cuda", local_rank) if requested == "cuda" else torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


def _wrap_ddp(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """DDP over the parameters that train in this phase (rebuilt when the phase changes)."""
    if world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def _any_rank(flag: bool, world_size: int, device: torch.device) -> bool:
    """True when the flag is set on any rank, so that all ranks stop at the same step."""
    if world_size == 1:
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _average_buffers(model: nn.Module, world_size: int) -> None:
    """Make the float buffers (BatchNorm running statistics) equal on all ranks: their mean."""
    if world_size == 1:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(world_size)


def _sum_over_ranks(values: list[float], world_size: int, device: torch.device) -> list[float]:
    if world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


class _StopRequest:
    """Turns the first Ctrl-C / SIGTERM into a request to stop at the next step; a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopRequest]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set in the main thread
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
