"""The configuration of one training run: ``TrainConfig``, its validation and the resume check.

    >>> from trainer.config import TrainConfig, validated
    >>> cfg = validated(TrainConfig(model="fmnist-bnn", data="synthetic", out="runs/x", rho=0.01))
    >>> cfg.rho_pos, cfg.rho_neg
    (0.01, 0.01)
    >>> validated(TrainConfig(model="fmnist-bnn", data="synthetic", out="runs/x", binarizer="xnor"))
    Traceback (most recent call last):
    ...
    trainer.errors.TrainerError: unknown --binarizer 'xnor'; valid: ste, lns, none

Importing this module needs no torch: ``edgebnn --help`` reads its choices from here and from
``trainer.binarizers``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.binarizers import ACTIVATION_BINARIZERS, AUX_REDUCTIONS, WEIGHT_BINARIZERS
from trainer.errors import TrainerError

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step")
DEVICES = ("cpu", "cuda")
# Config fields that must not change when a run is resumed (epochs may grow, threads may change).
RESUME_FIXED_FIELDS = (
    "model", "model_options", "data", "binarizer", "act_binarizer", "alpha", "rho", "rho_pos", "rho_neg",
    "mapping_width", "batch_size", "optimizer", "schedule", "step_size", "gamma", "label_smoothing", "augment",
    "subset", "val_size", "seed", "warmup_mapping_epochs", "mapping_lr", "warmup_mapping_steps",
    "aux_reduction", "teacher", "kd_weight", "kd_temperature", "channels_last",
    # The optimizer's state is restored from the checkpoint: a new --lr, --momentum or --weight-decay
    # would be silently ignored (issue 15), so they are refused like the rest.
    "lr", "momentum", "weight_decay",
)  # fmt: skip
# Data-free LNS warm-up: the most steps it may take (it stops at 99.9% agreement; trainer.warmup).
DEFAULT_WARMUP_MAPPING_STEPS = 500
DEFAULT_KD_WEIGHT = 1.0  # with a --teacher: pure distillation (ReActNet's distributional loss)
DEFAULT_KD_TEMPERATURE = 1.0


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
    aux_reduction: str = "sum"  # LNS aux loss over a layer's weights: "sum" (the paper) or "mean" (not)
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
    warmup_mapping_steps: int | None = None  # data-free warm-up; default: trainer.warmup.planned_steps
    teacher: str | None = None  # checkpoint to distil from (same dataset)
    kd_weight: float | None = None  # w of (1 - w) CE + w T^2 KL; default DEFAULT_KD_WEIGHT with a teacher
    kd_temperature: float | None = None  # T; default DEFAULT_KD_TEMPERATURE with a teacher
    channels_last: bool = (
        True  # NHWC memory format for CPU training (faster, measured; same results per format)
    )
    resume: bool = False
    device: str = "cpu"
    threads: int | None = None  # default: the CPUs this process may use (trainer.distributed.default_threads)
    verbose: bool = True


def validated(cfg: TrainConfig) -> TrainConfig:
    """Reject bad options with the valid choices before any work starts; fills in rho_pos/rho_neg."""
    choices = {
        "binarizer": tuple(WEIGHT_BINARIZERS),
        "act_binarizer": tuple(ACTIVATION_BINARIZERS),
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
        "aux_reduction": AUX_REDUCTIONS,
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
        if not _is_number(value) or not 0 < value < math.inf:
            raise TrainerError(f"--{name.replace('_', '-')} must be a positive number, got {value!r}")
    _check_types(cfg)
    if not 0 < cfg.gamma <= 1:
        raise TrainerError(f"--gamma must be in (0, 1] (the step schedule's decay factor), got {cfg.gamma}")
    if not 0 <= cfg.momentum < 1:
        raise TrainerError(f"--momentum must be in [0, 1), got {cfg.momentum}")
    if not math.isfinite(cfg.weight_decay) or not math.isfinite(cfg.alpha):
        raise TrainerError("--weight-decay and --alpha must be finite numbers")
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
    if cfg.warmup_mapping_steps is not None and cfg.warmup_mapping_steps < 0:
        raise TrainerError(f"--warmup-mapping-steps must be >= 0, got {cfg.warmup_mapping_steps}")
    kd_weight, kd_temperature = cfg.kd_weight, cfg.kd_temperature
    if cfg.teacher is None:
        if kd_weight is not None or kd_temperature is not None:
            raise TrainerError("--kd-weight and --kd-temperature need a --teacher checkpoint")
    else:
        kd_weight = DEFAULT_KD_WEIGHT if kd_weight is None else kd_weight
        kd_temperature = DEFAULT_KD_TEMPERATURE if kd_temperature is None else kd_temperature
        if not 0.0 <= kd_weight <= 1.0:
            raise TrainerError(f"--kd-weight must be in [0, 1], got {kd_weight}")
        if not kd_temperature > 0:
            raise TrainerError(f"--kd-temperature must be positive, got {kd_temperature}")
    from trainer.zoo import check_model_options  # lazily: this module must not import torch

    check_model_options(cfg.model, cfg.model_options)
    check_run_outputs(cfg)
    return dataclasses.replace(
        cfg, rho_pos=rho_pos, rho_neg=rho_neg, kd_weight=kd_weight, kd_temperature=kd_temperature
    )


RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "curves.png")  # what a run writes into --out


def check_run_outputs(cfg: TrainConfig) -> None:
    """TrainerError when a file the run writes (RUN_DIR/last.pt, ...) is one of its inputs
    (--init, --teacher): the run would overwrite the checkpoint it starts or learns from."""
    from formats.errors import FormatError
    from formats.files import refuse_overwriting_inputs

    inputs = [p for p in (None if cfg.resume else cfg.init, cfg.teacher) if p]
    outputs = {f"the run's {name}": Path(cfg.out) / name for name in RUN_FILES}
    try:
        refuse_overwriting_inputs(outputs, inputs)
    except FormatError as error:
        raise TrainerError(f"{error}; --init and --teacher must lie outside the run folder") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Field -> what it must be: checked for configs that do not come from argparse (the pipeline's TOML).
_INT_FIELDS = ("epochs", "batch_size", "mapping_width", "step_size", "seed", "warmup_mapping_epochs")
_OPTIONAL_INT_FIELDS = ("subset", "val_size", "warmup_mapping_steps", "threads")
_FLOAT_FIELDS = ("alpha", "rho", "lr", "momentum", "weight_decay", "gamma", "label_smoothing")
_OPTIONAL_FLOAT_FIELDS = ("rho_pos", "rho_neg", "mapping_lr", "kd_weight", "kd_temperature")


def _check_types(cfg: TrainConfig) -> None:
    for name in _INT_FIELDS + _OPTIONAL_INT_FIELDS:
        value = getattr(cfg, name)
        if value is None and name in _OPTIONAL_INT_FIELDS:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise TrainerError(f"--{name.replace('_', '-')} must be an integer, got {value!r}")
    for name in _FLOAT_FIELDS + _OPTIONAL_FLOAT_FIELDS:
        value = getattr(cfg, name)
        if value is None and name in _OPTIONAL_FLOAT_FIELDS:
            continue
        if not _is_number(value) or math.isnan(value):
            raise TrainerError(f"--{name.replace('_', '-')} must be a number, got {value!r}")
    for name in ("augment",):
        if getattr(cfg, name) not in (None, True, False):
            raise TrainerError(f"--{name} must be true or false, got {getattr(cfg, name)!r}")
    for name in ("model", "data", "out"):
        if not isinstance(getattr(cfg, name), str) or not getattr(cfg, name):
            raise TrainerError(f"--{name} must be a non-empty string, got {getattr(cfg, name)!r}")
    if cfg.val_size is not None and cfg.val_size < 0:
        raise TrainerError(f"--val-size must be >= 0, got {cfg.val_size}")


def binarizer_config(cfg: TrainConfig) -> dict[str, Any]:
    """The options of the weight binarizer handed to the zoo (the LNS hyper-parameters; none otherwise)."""
    if cfg.binarizer != "lns":
        return {}
    return {
        "alpha": cfg.alpha,
        "rho_pos": cfg.rho_pos,
        "rho_neg": cfg.rho_neg,
        "width": cfg.mapping_width,
        "reduction": cfg.aux_reduction,
    }


def lr_factor(cfg: TrainConfig, joint_epochs_done: int) -> float:
    """LR multiplier for the next joint epoch: cosine to 0 over ``epochs``, or ``gamma`` every ``step_size``.

    A closed form of the epochs done: extending ``epochs`` on resume re-plans the rest of a cosine
    schedule, and a run stopped early resumes with exactly the LRs it would have had.
    """
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * joint_epochs_done / max(cfg.epochs, 1)))
    return cfg.gamma ** (joint_epochs_done // cfg.step_size)


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The fields a checkpoint records (``train_config``): all but how the run was started."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("verbose", "resume")}


def check_resume_config(
    saved: dict[str, Any], cfg: TrainConfig, path: Path, teacher: dict[str, str] | None = None
) -> None:
    """TrainerError unless checkpoint ``saved`` (read from ``path``) was trained with these options
    (and, with a ``teacher`` record ``{"path", "sha256"}``, from the same teacher file)."""
    before = saved.get("train_config") or {}
    now = config_dict(cfg)
    for name in RESUME_FIXED_FIELDS:
        if name in before and before[name] != now[name]:
            raise TrainerError(
                f"--resume: {path} was trained with {name}={before[name]!r}, the command says {now[name]!r}; "
                "resume with the original options (only --epochs, --threads and --device may change)"
            )
    if teacher and (saved.get("teacher") or {}).get("sha256") != teacher["sha256"]:
        raise TrainerError(
            f"--resume: --teacher {teacher['path']} is not the teacher {path} was trained with (its SHA-256 differs)"
        )
    if "history" not in saved or "flip_reference" not in saved:
        raise TrainerError(
            f"--resume: {path} is not a training checkpoint of `edgebnn train` (no loop state)"
        )
