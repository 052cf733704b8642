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
    warmup_mapping_epochs: int = 0


@dataclass
class PipelineConfig:
    """Defaults are the 15-minute demo on 2 CPU cores; ``full()`` is the complete study's budget."""

    out: str = "runs/demo"
    data: str = "fashion-mnist"
    data_dir: str | None = None
    model: str = "fmnist-bnn"
    # The demo trains a half-width fmnist-bnn on 15,000 images: a full-width epoch over all 55,000
    # takes ~14 minutes on 2 cores (docs/training.md), this one ~1 minute.
    model_options: dict[str, Any] | None = field(default_factory=lambda: {"width": 32})
    subset: int | None = 15000
    val_size: int | None = 5000
    augment: bool | None = False  # crop+flip pays off only over many epochs (docs/training.md); None = on

    seed: int = 0
    threads: int | None = None
    baseline: TrainSettings = field(default_factory=lambda: TrainSettings(epochs=3, lr=2e-3))
    finetune: TrainSettings = field(
        default_factory=lambda: TrainSettings(epochs=2, lr=2e-4, warmup_mapping_epochs=1)
    )
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
            model_options=None,
            subset=None,
            augment=None,
            baseline=TrainSettings(epochs=15, lr=2e-3),
            finetune=TrainSettings(epochs=10, lr=2e-4, warmup_mapping_epochs=2),
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
                changes[key] = tuple(int(v) for v in value)
            else:
                changes[key] = value
        config = dataclasses.replace(self, **changes)
        if config.deploy not in ("lns", "finetune"):
            raise PipelineError(f"{source}: deploy must be 'lns' or 'finetune', got {config.deploy!r}")
        if config.deploy == "finetune" and not config.control:
            raise PipelineError(f"{source}: deploy = 'finetune' needs control = true")
        return config


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
        }

    return Stage(
        name=name,
        title=f"train {name} ({train_options.get('binarizer', 'ste')}, {train_options['epochs']} epochs"
        + (
            f" + {options['warmup_mapping_epochs']} mapping warm-up"
            if options.get("warmup_mapping_epochs")
            else ""
        )
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
    common = {"init": init, "warmup_mapping_epochs": finetune.warmup_mapping_epochs}

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
            **common,
        )
    )
    if config.control:
        # Plain fine-tuning: the same schedule with the sign(W) binarizer. It has no mapping network to
        # warm up, so it trains its warm-up epochs jointly as well: the same budget in epochs.
        epochs = finetune.epochs + finetune.warmup_mapping_epochs
        stages.append(
            _train_stage(
                config, "finetune", finetune, finetune_dir, binarizer="ste", init=init, epochs=epochs
            )
        )
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
