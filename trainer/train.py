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
2. Model from the zoo (``--binarizer ste|lns|none``); ``--init`` loads a trained baseline strictly,
   except the LNS mapping networks that the baseline does not have. ``--teacher`` adds a frozen
   teacher whose logits the student also learns from (``trainer.objective``, ``trainer.distill``).
3. Schedule: LNS first warms its mapping networks up without data (``trainer.warmup``: seconds, only
   the mappings change) and/or for ``warmup_mapping_epochs`` epochs on data (everything else frozen,
   BatchNorm statistics too), then ``epochs`` joint epochs under the LR schedule.
4. Every epoch: validation accuracy, the flip rate of the binary weights (counted from the bits the
   starting checkpoint deploys), a line in ``metrics.jsonl``, ``curves.png``, and the checkpoints
   ``last.pt`` and ``best.pt`` (by validation accuracy), all written atomically. At the end the test
   set scores the best-validation weights once (recorded in ``best.pt``, ``last.pt``, the result).

Reproducibility: the data order of epoch ``e`` comes from ``DistributedSampler(seed, epoch=e)`` and
the augmentation of rank ``r`` from a generator seeded with ``(seed, e, r)``, so a resumed run sees
exactly the batches an uninterrupted run sees. Ctrl-C (SIGINT) or SIGTERM stops at the next step
boundary and writes a resumable ``last.pt`` (mid-epoch, with its position); a non-finite loss stops
the run before the bad step touches any checkpoint.

Under ``torchrun`` each process trains one DDP replica on its shard of every batch order; rank 0
writes the files and prints. The parts around the loop have modules of their own: the options
(``trainer.config``), the collectives (``trainer.distributed``), Ctrl-C (``trainer.interrupt``), the
checkpoint (``trainer.checkpoint``), the loss (``trainer.objective``), the data-free warm-up
(``trainer.warmup``), the run folder's other files (``trainer.run_files``) and the progress bar
(``trainer.progress``).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer import checkpoint as ckpt_io
from trainer import distributed as ddp
from trainer import layers, run_files, warmup, zoo
from trainer.augment import default_padding, random_crop_flip
from trainer.checkpoint import MAPPING_MARKER, state_dict_hash
from trainer.config import (
    TrainConfig,
    binarizer_config,
    check_resume_config,
    config_dict,
    lr_factor,
    validated,
)
from trainer.data import load_dataset, normalize, training_split
from trainer.distill import load_teacher, teacher_record
from trainer.errors import TrainerError
from trainer.evaluate import accuracy, accuracy_of_weights
from trainer.interrupt import INTERRUPT_AT_STEP_ENV, StopRequest, TrainingInterrupted
from trainer.objective import Objective
from trainer.progress import progress_bar

# The API of a run (trainer.cli, edgebnn pipeline, benchmarks): some names live in other modules.
__all__ = ["INTERRUPT_AT_STEP_ENV", "PRINT_HASH_ENV", "TrainConfig", "TrainResult", "TrainingDiverged"]
__all__ += ["TrainingInterrupted", "state_dict_hash", "train"]

AUGMENTED_DATASETS = ("fashion-mnist", "cifar10")
# Set to 1 to make every rank print the SHA-256 of its final weights (checks DDP replicas agree).
PRINT_HASH_ENV = "EDGEBNN_TRAIN_PRINT_HASH"
STAT_KEYS = ("loss", "ce", "kd", "aux", "correct", "count")  # per-epoch sums, added up over ranks


class TrainingDiverged(TrainerError):
    """The loss became NaN or infinite: the run stopped; the checkpoints on disk are the last good ones."""

    exit_code = 1


@dataclass
class TrainResult:
    """What a finished run hands back to its caller (the CLI, the pipeline)."""

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path
    metrics_path: Path
    curves_path: Path
    final: dict  # the metrics of the last epoch; its test_acc is None unless it is the best epoch
    best_epoch: int
    best_val_acc: float | None  # None without a validation split (--val-size 0)
    best_test_acc: float | None  # test accuracy of the best-validation weights (best.pt), scored once
    state_hash: str  # SHA-256 of the final weights
    rank: int = 0  # this process's rank under torchrun (only rank 0 writes files)
    history: list[dict] = field(default_factory=list)  # per epoch; test_acc there is always None
    mapping_warmup: dict | None = None  # what the data-free warm-up did (trainer.warmup), if it ran


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) one training run; see the module docstring."""
    cfg = validated(config)
    if cfg.model not in zoo.MODELS:
        raise TrainerError(f"unknown model {cfg.model!r}; valid models: {', '.join(zoo.MODELS)}")
    run_dir = Path(cfg.out)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    metrics_path, curves_path = run_dir / "metrics.jsonl", run_dir / "curves.png"

    # --- processes, device, threads -------------------------------------------------------------
    torch.set_num_threads(cfg.threads or ddp.default_threads())  # default: every CPU this process may use
    rank, world_size, device = ddp.setup(cfg.device)
    is_main = rank == 0
    log = functools.partial(print, flush=True) if is_main and cfg.verbose else lambda message: None
    run_files.prepare_run_dir(run_dir, resume=cfg.resume)  # on every rank: a bad --out stops them all
    if cfg.resume and not last_path.exists():
        raise TrainerError(f"--resume: {last_path} does not exist (nothing to resume in {run_dir})")

    # --- data: uint8 tensors in memory, a deterministic validation split ------------------------
    dataset = load_dataset(cfg.data, data_dir=cfg.data_dir)
    train_idx, val_idx = training_split(len(dataset.train_x), cfg.val_size, cfg.subset, cfg.seed)
    train_x, train_y = dataset.train_x[train_idx].to(device), dataset.train_y[train_idx].to(device)
    val_x, val_y = dataset.train_x[val_idx].to(device), dataset.train_y[val_idx].to(device)
    test_x, test_y = dataset.test_x.to(device), dataset.test_y.to(device)
    mean, std = dataset.mean, dataset.std
    channels, height, _ = dataset.input_shape
    augment = cfg.augment if cfg.augment is not None else cfg.data in AUGMENTED_DATASETS
    if len(train_x) < 2 * world_size:
        raise TrainerError(f"{len(train_x)} training images are too few for {world_size} process(es)")
    # A teacher of another dataset is refused here, before any training work.
    teacher = (
        load_teacher(cfg.teacher, dataset.metadata(), dataset.num_classes, device) if cfg.teacher else None
    )
    objective = Objective(cfg.label_smoothing, teacher, cfg.kd_weight or 0.0, cfg.kd_temperature or 1.0)

    # --- model ------------------------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    options = binarizer_config(cfg)
    model = zoo.create_model(
        cfg.model,
        num_classes=dataset.num_classes,
        in_channels=channels,
        input_size=height,
        weight_binarizer=cfg.binarizer,
        activation_binarizer=cfg.act_binarizer,
        binarizer_config=options,
        **(cfg.model_options or {}),
    ).to(device)
    mapping_ids = {id(p) for p in layers.binarizer_parameters(model)}  # LNS mapping networks
    init_state = ckpt_io.load_checkpoint(cfg.init)["state_dict"] if cfg.init and not cfg.resume else {}
    if init_state:
        # Strict, except LNS mapping networks that the baseline lacks (they keep their fresh init).
        try:
            ckpt_io.load_state_strict(model, init_state)
        except TrainerError as error:
            raise TrainerError(f"--init {cfg.init}: {error}") from None
    # Flip rates count from the bits the starting checkpoint deploys: sign(W) unless it brought its
    # own mapping networks (a fresh mapping's bits were never deployed by anyone).
    init_has_mapping = any(MAPPING_MARKER in name for name in init_state)
    flip_reference = layers.weight_signs(model) if init_has_mapping else layers.latent_signs(model)
    if cfg.channels_last:
        layers.use_channels_last(model)
    if cfg.warmup_mapping_epochs and not mapping_ids:
        log(f"note: no warm-up: --binarizer {cfg.binarizer} has no mapping networks to warm up")
    warmup_epochs = cfg.warmup_mapping_epochs if mapping_ids else 0
    warmup_steps = warmup.planned_steps(cfg.warmup_mapping_steps, bool(mapping_ids), warmup_epochs)
    total_epochs = warmup_epochs + cfg.epochs

    # --- optimizer and schedule: weight decay never on the binary latent weights ------------------
    # The mapping networks start from scratch next to a trained network: with the fine-tuning LR
    # (e.g. 2e-4 with Adam) one warm-up epoch leaves 3-11% of their bits disagreeing with sign(W);
    # at 1e-3 they agree on >99.9% (measured on fmnist-bnn, docs/training.md), hence their own LR.
    groups = layers.parameter_groups(model, cfg.weight_decay, binarizer_lr=cfg.mapping_lr or cfg.lr)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    else:
        optimizer = torch.optim.Adam(groups, lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: lr_factor(cfg, done))

    # --- resume -----------------------------------------------------------------------------------
    start_epoch, history, best = 1, [], {"epoch": 0, "val_acc": None, "test_acc": None}
    resume_point, mapping_warmup, best_state = None, None, None  # best_state: weights of the best epoch
    teacher_id = teacher_record(cfg.teacher)
    if cfg.resume:
        saved = ckpt_io.load_checkpoint(last_path)
        check_resume_config(saved, cfg, last_path, teacher=teacher_id)
        ckpt_io.restore_training_state(saved, model, optimizer, scheduler, device)
        for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base_lr * lr_factor(cfg, scheduler.last_epoch)  # --epochs may have changed
        history, best = list(saved["history"]), dict(saved["best"])
        flip_reference = {name: signs.to(device) for name, signs in saved["flip_reference"].items()}
        mapping_warmup = saved.get("mapping_warmup")  # done once, before epoch 1: never redone
        start_epoch = int(saved["epoch"]) + 1
        resume_point = saved.get("resume_point")
        where = f"epoch {start_epoch} step {resume_point['step']}" if resume_point else f"epoch {start_epoch}"
        log(f"resuming {last_path} at {where}")
    if start_epoch > total_epochs:
        log(f"nothing to do: {last_path} already holds {start_epoch - 1} of {total_epochs} epochs")
    elif warmup_steps and not cfg.resume:
        # Data-free warm-up: only the mapping networks learn, on the noisy-label loss alone.
        lr = cfg.mapping_lr or warmup.DEFAULT_LR
        mapping_warmup = warmup.warm_up_mappings(
            model, warmup_steps, lr=lr, world_size=world_size, device=device
        )
        log(run_files.warmup_line(mapping_warmup))

    def checkpoint(epoch_done: int, metrics: dict, point: dict | None) -> dict:
        return ckpt_io.training_checkpoint(
            model,
            binarizer={"name": cfg.binarizer, "config": {"activation": cfg.act_binarizer, **options}},
            data=dataset.metadata(),
            epoch=epoch_done,
            metrics=metrics,
            optimizer=optimizer,
            scheduler=scheduler,
            device=device,
            train_config=config_dict(cfg),
            history=history,
            best=best,
            flip_reference=flip_reference,
            resume_point=point,
            mapping_warmup=mapping_warmup,
            teacher=teacher_id,
        )

    # --- the loop -------------------------------------------------------------------------------
    padding = default_padding(height)
    stop = StopRequest()
    global_step = sum(h["steps"] for h in history)
    with stop.installed():
        for epoch in range(start_epoch, total_epochs + 1):
            phase = "warmup" if epoch <= warmup_epochs else "joint"
            # Warm-up: only the mapping networks learn; eval() keeps BatchNorm statistics frozen.
            for p in model.parameters():
                p.requires_grad_(phase == "joint" or id(p) in mapping_ids)
            model.train(phase == "joint")
            ddp_model = ddp.wrap(model, device, world_size)
            order = ddp.epoch_order(len(train_x), cfg.seed, epoch, rank, world_size)
            batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
            batches = [b for b in batches if len(b) > 1]  # BatchNorm needs two images per batch
            aug_gen = torch.Generator().manual_seed(ddp.rank_seed(cfg.seed, epoch, rank))
            stats = {**{key: 0.0 for key in STAT_KEYS}, "time": 0.0}
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

            with progress_bar(
                is_main and cfg.verbose, f"epoch {epoch}/{total_epochs} {phase}", len(batches)
            ) as bar:
                bar.advance(first_step)
                for step in range(first_step, len(batches)):
                    global_step += 1
                    stop.reached(global_step)
                    if ddp.any_rank(stop.requested, world_size, device):
                        sums = ddp.sum_over_ranks([stats[k] for k in STAT_KEYS], world_size, device)
                        point = {
                            "epoch": epoch,
                            "step": step,
                            "stats": {**stats, **dict(zip(STAT_KEYS, sums, strict=True))},
                        }
                        if is_main:
                            ckpt_io.save_checkpoint(last_path, checkpoint(epoch - 1, dict(best), point))
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
                    if cfg.channels_last:
                        inputs = inputs.contiguous(memory_format=torch.channels_last)

                    logits = ddp_model(inputs)
                    parts = objective(logits, inputs, labels, model)  # ce (+ kd with a teacher) + aux
                    loss = parts["loss"]
                    loss_value = loss.item()
                    if ddp.any_rank(not math.isfinite(loss_value), world_size, device):
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
                    for key in ("ce", "kd", "aux"):
                        stats[key] += parts[key].item() * count
                    stats["correct"] += (logits.argmax(1) == labels).sum().item()
                    stats["count"] += count
                    stats["time"] += time.perf_counter() - started
                    bar.update(loss=loss_value, ips=stats["count"] / max(stats["time"], 1e-9))

            if phase == "joint":
                scheduler.step()

            # --- end of epoch: evaluate, flip rate, files --------------------------------------
            ddp.average_buffers(model, world_size)  # each replica's BatchNorm saw only its own shard
            sums = ddp.sum_over_ranks([stats[k] for k in STAT_KEYS], world_size, device)
            loss_sum, ce_sum, kd_sum, aux_sum, correct, count = sums
            eval_started = time.perf_counter()  # validation only: the test set scores the best epoch once
            val_acc = accuracy(model, val_x, val_y, mean, std, rank, world_size) if len(val_x) else None
            signs = layers.weight_signs(model)
            flip_rate = layers.flip_rate(flip_reference, signs)
            flip_reference = signs
            metrics = {
                "epoch": epoch,
                "phase": phase,
                "loss": loss_sum / count,
                "ce": ce_sum / count,
                "kd": kd_sum / count,
                "aux": aux_sum / count,
                "train_acc": correct / count,
                "val_acc": val_acc,
                "test_acc": None,  # kept for the row's shape; see TrainResult.best_test_acc
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
                best = {"epoch": epoch, "val_acc": val_acc, "test_acc": None}
                best_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
            if is_main:
                summary = {
                    **{key: value for key, value in metrics.items() if key != "phase"},
                    "best_val_acc": best["val_acc"],
                    "best_epoch": best["epoch"],
                }
                payload = checkpoint(epoch, summary, None)
                ckpt_io.save_checkpoint(last_path, payload)
                if best["epoch"] == epoch:
                    ckpt_io.save_checkpoint(best_path, payload)
                run_files.write_history(metrics_path, curves_path, history)
            log(run_files.summary_line(metrics, total_epochs))

    # --- done: the test set scores the best-validation weights, once ------------------------------
    if best["epoch"] and best["test_acc"] is None:
        if best_state is None:  # the best epoch was trained before a resume
            best_state = ckpt_io.load_checkpoint(best_path)["state_dict"]
        best["test_acc"] = accuracy_of_weights(model, best_state, test_x, test_y, mean, std, rank, world_size)
        if is_main:
            run_files.record_best_test(best_path, last_path, best)
        log(run_files.best_line(best))
    state_hash = state_dict_hash(model.state_dict())
    if os.environ.get(PRINT_HASH_ENV):
        print(f"edgebnn-train rank {rank}/{world_size} weights sha256 {state_hash}", flush=True)
    ddp.shutdown(world_size)
    final = dict(history[-1]) if history else {}
    if final and final["epoch"] == best["epoch"]:
        final["test_acc"] = best["test_acc"]
    return TrainResult(
        run_dir=run_dir,
        last_checkpoint=last_path,
        best_checkpoint=best_path,
        metrics_path=metrics_path,
        curves_path=curves_path,
        final=final,
        best_epoch=int(best["epoch"]),
        best_val_acc=best["val_acc"],
        best_test_acc=best["test_acc"],
        state_hash=state_hash,
        rank=rank,
        history=history,
        mapping_warmup=mapping_warmup,
    )
