"""``edgebnn pipeline``: train -> LNS fine-tune -> export -> convert -> verify -> bench -> report.

The convert stage writes the LCE .tflite, its float twin (.tflite, target tflite) and the native
.ebnn (target native); verify checks all three on the test set; bench measures the .ebnn in the
native runtime beside LCE (both kernels), LiteRT (float twin) and ONNX Runtime.

What ``make demo`` runs. Every stage writes its outputs under the run folder (``runs/demo`` by
default) and records a fingerprint of its settings and inputs in ``.stages/<stage>.json``; a stage
whose fingerprint still matches is skipped, a training stage that was interrupted resumes from its
``last.pt``. Change a setting and the stages downstream of it run again.

    >>> from edgebnn.pipeline import PipelineConfig, run_pipeline
    >>> run_pipeline(PipelineConfig(out="runs/demo"))  # doctest: +SKIP

This module lives with the CLI because it is the one place allowed to import every stage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

# Piped into a log (make demo | tee), rich would wrap every table at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)


class PipelineError(Exception):
    """A bad pipeline configuration: exit code 2."""

    exit_code = 2


# --- configuration ------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    epochs: int
    lr: float
    optimizer: str = "adam"
    schedule: str = "cosine"
    batch_size: int = 128
    warmup_mapping_epochs: int = 0  # LNS only: mapping-only epochs on data before the joint epochs
    warmup_mapping_steps: int | None = None  # LNS only: data-free warm-up cap (None: the trainer's)


# The layouts come from a measured accuracy/cost frontier (docs/training.md, "Layouts"): a max-pool
# after the stem quarters the cost of every binary conv; two binary blocks per stage keep accuracy.
DEMO_LAYOUT = {"width": 64, "blocks": [2, 2], "stem_pool": True}  # 33 M MACs per image
FULL_LAYOUT = {"width": 96, "blocks": [2, 2], "stem_pool": True}  # 74 M MACs per image


@dataclass
class PipelineConfig:
    """Defaults are the 15-minute demo on 2 CPU cores; ``full()`` is the full recipe's budget."""

    out: str = "runs/demo"
    data: str = "fashion-mnist"
    data_dir: str | None = None
    model: str = "fmnist-bnn"
    model_options: dict[str, Any] | None = field(default_factory=lambda: dict(DEMO_LAYOUT))
    subset: int | None = None  # all 55,000 training images
    val_size: int | None = 5000
    augment: bool | None = None  # None = the trainer's default (crop + flip for Fashion-MNIST)

    seed: int = 0
    threads: int | None = None
    baseline: TrainSettings = field(default_factory=lambda: TrainSettings(epochs=7, lr=2e-3))
    # LNS and the control fine-tune for the same joint epochs from the same baseline; LNS first
    # warms its mapping networks up without data (seconds), so neither gets extra epochs.
    finetune: TrainSettings = field(default_factory=lambda: TrainSettings(epochs=1, lr=2e-4))
    alpha: float = 1.0
    rho: float = 0.005
    mapping_lr: float = 1e-3  # the fresh LNS mapping networks learn at this LR (trainer/train.py)
    control: bool = True  # also run plain fine-tuning (ste) with the same schedule, the fair comparison
    deploy: str = "lns"  # which fine-tuned run is exported: "lns" or "finetune"
    verify_samples: int = 10000  # the whole Fashion-MNIST test set
    bench_threads: tuple[int, ...] = (1, 2)
    bench_runs: int = 60
    bench_warmup: int = 10

    @classmethod
    def full(cls, **overrides: Any) -> PipelineConfig:
        config = cls(
            out="runs/full",
            model_options=dict(FULL_LAYOUT),
            baseline=TrainSettings(epochs=28, lr=2e-3),
            finetune=TrainSettings(epochs=2, lr=2e-4),
            bench_runs=200,
        )
        return dataclasses.replace(config, **overrides)

    @classmethod
    def from_toml(cls, path: str | os.PathLike, full: bool = False) -> PipelineConfig:
        """Read overrides from a TOML file: top-level keys, plus ``[baseline]`` and ``[finetune]``."""
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise PipelineError(f"config file {path} not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise PipelineError(f"config file {path} is not valid TOML: {error}") from None
        base = cls.full() if full else cls()
        return base.merged(raw, source=str(path))

    def merged(self, raw: dict[str, Any], source: str = "config") -> PipelineConfig:
        valid = {f.name for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in valid:
                raise PipelineError(f"{source}: unknown key {key!r}; valid keys: {', '.join(sorted(valid))}")
            if key in ("baseline", "finetune"):
                if not isinstance(value, dict):
                    raise PipelineError(f"{source}: [{key}] must be a table")
                settings = getattr(self, key)
                known = {f.name for f in dataclasses.fields(settings)}
                unknown = sorted(set(value) - known)
                if unknown:
                    raise PipelineError(
                        f"{source}: unknown key(s) {unknown} in [{key}]; valid: {sorted(known)}"
                    )
                changes[key] = dataclasses.replace(settings, **value)
            elif key == "bench_threads":
                if not isinstance(value, list | tuple) or not all(_is_int(v) for v in value):
                    raise PipelineError(f"{source}: bench_threads must be a list of integers, got {value!r}")
                changes[key] = tuple(value)
            else:
                changes[key] = value
        config = dataclasses.replace(self, **changes)
        if config.deploy not in ("lns", "finetune"):
            raise PipelineError(f"{source}: deploy must be 'lns' or 'finetune', got {config.deploy!r}")
        if config.deploy == "finetune" and not config.control:
            raise PipelineError(f"{source}: deploy = 'finetune' needs control = true")
        check_config(config, source)
        return config


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Key -> (test, what it must be). Checked when a config is read, before any stage runs (issue 15:
# bench_runs = -5 used to be refused only after training, verify_samples = -1 silently verified 199).
_TOP_LEVEL_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "out": (lambda v: isinstance(v, str) and bool(v), "a folder path"),
    "data": (lambda v: isinstance(v, str) and bool(v), "a dataset name"),
    "data_dir": (lambda v: v is None or isinstance(v, str), "a folder path"),
    "model": (lambda v: isinstance(v, str) and bool(v), "a zoo model name"),
    "model_options": (lambda v: v is None or isinstance(v, dict), "a table such as { width = 32 }"),
    "subset": (lambda v: v is None or (_is_int(v) and v >= 2), "an integer >= 2"),
    "val_size": (lambda v: v is None or (_is_int(v) and v >= 0), "an integer >= 0"),
    "augment": (lambda v: v is None or isinstance(v, bool), "true or false"),
    "seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "threads": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1"),
    "alpha": (lambda v: _is_number(v) and 0 <= v < float("inf"), "a number >= 0"),
    "rho": (lambda v: _is_number(v) and 0 <= v < 0.5, "a number in [0, 0.5)"),
    "mapping_lr": (lambda v: _is_number(v) and 0 < v < float("inf"), "a positive number"),
    "control": (lambda v: isinstance(v, bool), "true or false"),
    "verify_samples": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "bench_threads": (
        lambda v: isinstance(v, tuple) and bool(v) and all(_is_int(t) and t >= 1 for t in v),
        "a non-empty list of thread counts >= 1",
    ),
    "bench_runs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "bench_warmup": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
}
_STAGE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "lr": (lambda v: _is_number(v) and 0 < v < float("inf"), "a positive number"),
    "optimizer": (lambda v: v in ("adam", "sgd"), "'adam' or 'sgd'"),
    "schedule": (lambda v: v in ("cosine", "step"), "'cosine' or 'step'"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "warmup_mapping_epochs": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "warmup_mapping_steps": (lambda v: v is None or (_is_int(v) and v >= 0), "an integer >= 0"),
}


def check_config(config: PipelineConfig, source: str = "config") -> None:
    """PipelineError naming the key unless every value has its type and range; then the trainer's
    and the zoo's own checks (the model options) — all before any stage runs."""
    for key, (test, wanted) in _TOP_LEVEL_RULES.items():
        if not test(getattr(config, key)):
            raise PipelineError(f"{source}: {key} must be {wanted}, got {getattr(config, key)!r}")
    for table in ("baseline", "finetune"):
        settings = getattr(config, table)
        for key, (test, wanted) in _STAGE_RULES.items():
            if not test(getattr(settings, key)):
                raise PipelineError(
                    f"{source}: [{table}] {key} must be {wanted}, got {getattr(settings, key)!r}"
                )
    from trainer.errors import TrainerError
    from trainer.zoo import check_model_options

    try:
        check_model_options(config.model, config.model_options)
    except TrainerError as error:
        raise PipelineError(f"{source}: model_options: {error}") from None


# --- stage bookkeeping --------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(settings: dict[str, Any], inputs: list[Path]) -> str:
    payload = {"settings": settings, "inputs": {str(p): _file_digest(p) for p in inputs}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Stage:
    name: str
    title: str
    outputs: list[Path]
    inputs: list[Path]
    settings: dict[str, Any]
    run: Callable[[], dict[str, Any]]


def _write_json(path: Path, document: Any) -> None:
    from formats.files import write_atomic

    write_atomic(path, (json.dumps(document, indent=2, sort_keys=True, default=str) + "\n").encode())


def _run_stage(stage: Stage, state_dir: Path, index: int, total: int) -> dict[str, Any]:
    marker = state_dir / f"{stage.name}.json"
    missing_inputs = [p for p in stage.inputs if not p.exists()]
    if missing_inputs:
        raise PipelineError(f"stage {stage.name}: missing input {missing_inputs[0]}")
    fingerprint = _fingerprint(stage.settings, stage.inputs)
    if marker.exists() and all(p.exists() for p in stage.outputs):
        recorded = json.loads(marker.read_text())
        if recorded.get("fingerprint") == fingerprint:
            console.print(f"[dim][{index}/{total}] {stage.title}: up to date, skipped[/dim]")
            return recorded["summary"]
    console.rule(f"[bold][{index}/{total}] {stage.title}")
    marker.unlink(missing_ok=True)
    started = time.perf_counter()
    summary = stage.run()
    summary["seconds"] = round(time.perf_counter() - started, 1)
    _write_json(marker, {"fingerprint": fingerprint, "summary": summary})
    console.print(f"[green]{stage.title}: done in {summary['seconds']:.0f} s[/green]")
    return summary


# --- the stages ---------------------------------------------------------------------------------


def _train_stage(
    config: PipelineConfig, name: str, settings: TrainSettings, run_dir: Path, **options: Any
) -> Stage:
    train_options = {
        "model": config.model,
        "model_options": config.model_options,
        "subset": config.subset,
        "val_size": config.val_size,
        "augment": config.augment,
        "data": config.data,
        "data_dir": config.data_dir,
        "out": str(run_dir),
        "epochs": settings.epochs,
        "lr": settings.lr,
        "optimizer": settings.optimizer,
        "schedule": settings.schedule,
        "batch_size": settings.batch_size,
        "seed": config.seed,
        "threads": config.threads,
        "verbose": True,
        **options,
    }
    init = Path(options["init"]) if options.get("init") else None

    def run() -> dict[str, Any]:
        from trainer.train import TrainConfig, train

        # An interrupted run resumes; a run with other settings or another --init checkpoint (a
        # retrained baseline) starts afresh.
        settings_path = run_dir / ".pipeline-settings.json"
        identity = {**train_options, "init_sha256": _file_digest(init) if init else None}
        identity = json.loads(json.dumps(identity, default=str))
        resume = (
            (run_dir / "last.pt").exists()
            and settings_path.exists()
            and json.loads(settings_path.read_text()) == identity
        )
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(settings_path, identity)
        result = train(TrainConfig(**train_options, resume=resume))
        return {
            "best_epoch": result.best_epoch,
            "best_val_acc": result.best_val_acc,
            "test_acc": result.best_test_acc,
            "history": result.history,
            "mapping_warmup": result.mapping_warmup,
        }

    return Stage(
        name=name,
        title=f"train {name} ({train_options.get('binarizer', 'ste')}, {train_options['epochs']} epochs"
        + (
            f" + {options['warmup_mapping_epochs']} mapping warm-up"
            if options.get("warmup_mapping_epochs")
            else ""
        )
        + (", data-free mapping warm-up first" if options.get("binarizer") == "lns" else "")
        + ")",
        outputs=[run_dir / "best.pt", run_dir / "metrics.jsonl"],
        inputs=[init] if init else [],
        settings=train_options,
        run=run,
    )


def _export_stage(checkpoint: Path, onnx_path: Path) -> Stage:
    def run() -> dict[str, Any]:
        from trainer.export import export_checkpoint

        proto = export_checkpoint(checkpoint, onnx_path)
        return {"onnx_bytes": onnx_path.stat().st_size, "nodes": len(proto.graph.node)}

    return Stage("export", "export the deploy graph to ONNX", [onnx_path], [checkpoint], {}, run)


def _convert_stage(onnx_path: Path, lce_path: Path, float_path: Path, native_path: Path) -> Stage:
    def run() -> dict[str, Any]:
        from converter.audit import audit, print_audit
        from converter.conversion import convert_with_report
        from formats.files import write_atomic

        summary: dict[str, Any] = {}
        for target, path in (("lce", lce_path), ("tflite", float_path), ("native", native_path)):
            conversion = convert_with_report(onnx_path, target=target)
            write_atomic(path, conversion.flatbuffer)
            report = audit(conversion.flatbuffer, conversion)
            print_audit(report, console=console, title=f"{path.name} ({target})")
            summary[target] = {
                "bytes": len(conversion.flatbuffer),
                "ops": report.op_histogram,
                "headline": report.headline,
            }
        return summary

    return Stage(
        "convert",
        "convert to LCE (bit-packed), float TFLite and native (.ebnn)",
        [lce_path, float_path, native_path],
        [onnx_path],
        {},
        run,
    )


def _verify_stage(config: PipelineConfig, onnx_path: Path, tflite_paths: list[Path], out_json: Path) -> Stage:
    """Each converted file (.tflite in LCE, .ebnn in the native runtime) against ONNX Runtime."""

    def run() -> dict[str, Any]:
        from formats.models import read_metadata
        from runtime.verify import verify
        from trainer.data import normalized_split

        meta = read_metadata(onnx_path)
        inputs, labels = normalized_split(config.data, config.data_dir, "test", config.verify_samples,
                                          meta.mean, meta.std)  # fmt: skip
        summary: dict[str, Any] = {"samples": len(inputs)}
        for path in tflite_paths:
            result = verify(onnx_path, path, inputs, labels)
            summary["onnx"] = {"accuracy": result.reference_accuracy}
            summary[path.name] = {
                "accuracy": result.candidate_accuracy,
                "agreement": result.agreement,
                "max_abs_diff": result.max_abs_diff,
                "mean_abs_diff": result.mean_abs_diff,
                "passed": result.passed,
            }
            console.print(f"{path.name}: {result.describe()}")
            if not result.passed:
                raise PipelineError(f"verification failed for {path}: {result.describe()}")
        _write_json(out_json, summary)
        return summary

    settings = {"samples": config.verify_samples, "data": config.data}
    return Stage(
        "verify",
        "verify against ONNX Runtime on the test set",
        [out_json],
        [onnx_path, *tflite_paths],
        settings,
        run,
    )


def _bench_stage(config: PipelineConfig, models: list[Path], verify_json: Path, out_dir: Path) -> Stage:
    json_path, plot_path = out_dir / "bench.json", out_dir / "bench.png"

    def run() -> dict[str, Any]:
        from devices.bench import benchmark

        verified = json.loads(verify_json.read_text())  # the accuracy measured on each file
        accuracy = {str(p): verified["onnx" if p.suffix == ".onnx" else p.name]["accuracy"] for p in models}
        report = benchmark(
            [str(p) for p in models],
            threads=config.bench_threads,
            runs=config.bench_runs,
            warmup=config.bench_warmup,
            lce_kernel=("default", "indirect"),
            accuracy=accuracy,
        )
        report.print(console)
        report.write_json(json_path)
        report.plot(plot_path)
        return {"results": len(report.results), "ok": report.ok}

    settings = {
        "threads": list(config.bench_threads),
        "runs": config.bench_runs,
        "warmup": config.bench_warmup,
    }
    return Stage(
        "bench",
        "measure latency and memory on this host",
        [json_path, plot_path],
        [*models, verify_json],
        settings,
        run,
    )


# --- the pipeline -------------------------------------------------------------------------------


def run_pipeline(config: PipelineConfig) -> Path:
    """Run every stage that is not up to date; returns the path of the report."""
    from edgebnn import report as report_module

    out = Path(config.out)
    try:
        (out / ".stages").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PipelineError(f"cannot create the run folder {out}: {error.strerror}") from None
    baseline_dir, lns_dir, finetune_dir = out / "baseline", out / "lns", out / "finetune"
    onnx_path = out / f"{config.model}.onnx"
    lce_path, float_path = out / f"{config.model}-lce.tflite", out / f"{config.model}-float.tflite"
    native_path = out / f"{config.model}.ebnn"
    verify_json = out / "verify.json"
    init = str(baseline_dir / "best.pt")
    finetune = config.finetune
    lns_options: dict[str, Any] = {"warmup_mapping_epochs": finetune.warmup_mapping_epochs}
    if finetune.warmup_mapping_steps is not None:
        lns_options["warmup_mapping_steps"] = finetune.warmup_mapping_steps

    stages = [_train_stage(config, "baseline", config.baseline, baseline_dir, binarizer="ste")]
    stages.append(
        _train_stage(
            config,
            "lns",
            finetune,
            lns_dir,
            binarizer="lns",
            alpha=config.alpha,
            rho=config.rho,
            mapping_lr=config.mapping_lr,
            init=init,
            **lns_options,
        )
    )
    if config.control:
        # Plain fine-tuning: the sign(W) binarizer with the same joint epochs, schedule, seed and data
        # order from the same baseline. A mapping warm-up (on data or not) changes only LNS's mapping
        # networks, so the control gets no extra epochs for it: equal joint steps (issue 14).
        stages.append(_train_stage(config, "finetune", finetune, finetune_dir, binarizer="ste", init=init))
    deploy_dir = lns_dir if config.deploy == "lns" else finetune_dir
    stages += [
        _export_stage(deploy_dir / "best.pt", onnx_path),
        _convert_stage(onnx_path, lce_path, float_path, native_path),
        _verify_stage(config, onnx_path, [lce_path, float_path, native_path], verify_json),
        _bench_stage(config, [lce_path, float_path, onnx_path, native_path], verify_json, out),
    ]
    started = time.perf_counter()
    summaries: dict[str, dict[str, Any]] = {}
    total = len(stages) + 1
    for index, stage in enumerate(stages, start=1):
        summaries[stage.name] = _run_stage(stage, out / ".stages", index, total)
    console.rule(f"[bold][{total}/{total}] report")
    report_path = report_module.write_report(config, out, summaries)
    console.print(f"[bold green]pipeline finished in {time.perf_counter() - started:.0f} s: {report_path}")
    return report_path
