"""Run one training job end to end: spec -> data -> model -> TRL trainer -> adapter, recorded in events.jsonl."""
from __future__ import annotations

import json
import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..data import DataError, prepare_data
from ..data.progress import PreparationCancelled, PreparationProgress, ProgressCallback
from ..job_files import (ADAPTER_DIR, REPORT_FILE, SPEC_FILE, STOP_REQUEST_FILE, checkpoint_dir, latest_checkpoint,
                         read_stop_request)
from ..job_status import JobStatus
from ..run_events import Failed, Finished, FittedToHardware, OomAdjusted, Phase, Preparing, Stopped
from ..spec import JobSpec
from ..trainer_registry import trainer_info
from .adapter_meta import AdapterMeta, write_adapter_meta
from .common import TrainContext, resolve_checkpoint
from .events import Echo, EventLog, StopRequest
from .hardware import fit_to_hardware
from .model_loading import load_base_model, load_tokenizer, lora_config, model_load_settings, use_cpu
from .oom import free_memory, install_fault_hook, is_out_of_memory, smaller_batch
from .train_data import trainer_datasets
from .trainers import TrainerNotAvailable, trainer_module


@dataclass
class RunResult:
    status: JobStatus  # SUCCEEDED | STOPPED (a push, if asked for, happens above: hub/publish.py)
    job_dir: Path
    metrics: dict
    adapter_dir: Optional[Path] = None
    checkpoint: Optional[str] = None
    step: int = 0  # optimizer steps done (the same on every rank of a distributed run)


def prepare_job(spec: JobSpec, progress: Optional[ProgressCallback] = None,
                on_fitted: Optional[Callable[[list[str]], object]] = None) -> tuple[Any, Any]:
    """Everything that can fail before the model is loaded: trainer availability, tokenizer, data. Settings
    this machine cannot honour are replaced here, where the job runs (a warning in the report, and `on_fitted`
    hears of them), never where it is checked or submitted: a job checked on a CPU still asks a GPU for QLoRA."""
    trainer_module(spec.training.trainer)
    _check_tracker(spec.training.log)
    _check_rewards(spec)
    hardware_warnings = fit_to_hardware(spec)
    if hardware_warnings and on_fitted:
        on_fitted([w.message for w in hardware_warnings])
    tokenizer = load_tokenizer(spec.model)
    prepared = prepare_data(spec, tokenizer, progress=progress)
    prepared.warnings[:0] = hardware_warnings
    return tokenizer, prepared


def _check_rewards(spec: JobSpec) -> None:
    """A reward that cannot be built (a python file that does not load, a function it lacks) fails here, before
    the data is prepared or a model loaded."""
    from ..rewards import RewardError, build_reward_functions

    try:
        build_reward_functions(spec.grpo.rewards)
    except RewardError as exc:
        raise TrainerNotAvailable(f"grpo.rewards: {exc}") from None


def _check_tracker(name: str) -> None:
    import importlib.util

    if name != "none" and importlib.util.find_spec(name) is None:
        raise TrainerNotAvailable(f"training.log={name} needs the '{name}' package: pip install {name}")


def run_training(spec: JobSpec, echo: Optional[Echo] = None,
                 stop: Optional[StopRequest] = None) -> RunResult:
    job_dir = spec.job_dir
    job_dir.mkdir(parents=True, exist_ok=True)
    spec.save(job_dir / SPEC_FILE)  # secrets are never part of the saved spec
    events = EventLog(job_dir, echo)
    owns_signals = stop is None and threading.current_thread() is threading.main_thread()
    stop = stop or StopRequest()
    if owns_signals:
        stop.install()
    try:
        return _run(spec, events, stop)
    except DataError as exc:
        events.write(Failed(error="data validation failed", kind="data",  # one line per distinct problem
                            issues=exc.lines(lambda path: Path(path).name or path), truncated=exc.truncated))
        raise
    except TrainerNotAvailable as exc:  # a setting this machine or the rewards cannot honour: no traceback
        events.write(Failed(error=str(exc), kind="spec"))
        raise
    except BaseException as exc:
        tb = traceback.format_exc()
        last = f"{type(exc).__name__}: {exc}".strip().splitlines()[-1] if str(exc) else type(exc).__name__
        events.write(Failed(error=last, traceback=tb[-8000:]))
        raise
    finally:
        if owns_signals:
            stop.uninstall()


def _run(spec: JobSpec, events: EventLog, stop: StopRequest) -> RunResult:
    from .callbacks import EventsCallback  # transformers: imported when a run starts, not by validate

    job_dir = spec.job_dir
    module = trainer_module(spec.training.trainer)
    (job_dir / STOP_REQUEST_FILE).unlink(missing_ok=True)  # why an earlier run was stopped is not this run's reason
    events.write(Phase(phase="preparing data"))  # the phases before step 0: what the Jobs tab shows meanwhile
    try:
        tokenizer, prepared = prepare_job(spec, _preparing_events(events, stop),
                                          lambda changes: events.write(FittedToHardware(changes=changes)))
    except PreparationCancelled:
        prepared = None
    checkpoint = resolve_checkpoint(spec)
    if prepared is None or stop.requested:  # stopped while the data was being prepared: don't load the model
        events.write(Stopped(step=0, checkpoint=checkpoint, **stop_reason(job_dir)))
        return RunResult(JobStatus.STOPPED, job_dir, {}, checkpoint=checkpoint)
    (job_dir / REPORT_FILE).write_text(json.dumps(prepared.report(), indent=2, ensure_ascii=False), encoding="utf-8")
    train_ds, eval_ds, data_ready = trainer_datasets(prepared, spec)

    valid_rows = len(prepared.valid) if prepared.valid is not None else 0  # rows, not packed blocks
    info = {"train_rows": len(prepared.train), "valid_rows": valid_rows,
            "device": "cpu" if use_cpu(spec) else "cuda", "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
    while True:  # more than once only after an out-of-memory adjustment (training/oom.py)
        events.write(Phase(phase="loading model"))
        trainer = _build_trainer(spec, module, tokenizer, train_ds, eval_ds,
                                 [EventsCallback(events, stop, {**info, "resumed_from": checkpoint})], data_ready,
                                 prepared.end_of_turn, events)
        if checkpoint:  # weights, optimizer and data position: trainer.train reads them before its first step
            events.write(Phase(phase="restoring checkpoint"))
        try:
            output = trainer.train(resume_from_checkpoint=checkpoint)
            break
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            step, error = trainer.state.global_step, str(exc).splitlines()[0][:300]
        del trainer  # leaving the except block dropped the failed step's frames; now the tensors can go
        free_memory()
        smaller = smaller_batch(spec)  # OutOfMemoryAtFloor at micro-batch 1: the run fails with the fix
        latest = latest_checkpoint(job_dir)
        checkpoint = str(latest) if latest else None
        events.write(OomAdjusted(step=step, error=error,
                                 batch_size=smaller.training.batch_size,
                                 gradient_accumulation=smaller.training.gradient_accumulation,
                                 previous_batch_size=spec.training.batch_size,
                                 previous_gradient_accumulation=spec.training.gradient_accumulation,
                                 resume_from=checkpoint))
        spec = smaller
        spec.save(job_dir / SPEC_FILE)  # a resume of this job starts with the micro-batch that fits
    metrics = {**dict(output.metrics), **_last_rewards(trainer.state.log_history)}
    step = trainer.state.global_step

    if stop.requested:
        ckpt = checkpoint_dir(job_dir, step)
        if not trainer.is_world_process_zero():
            return RunResult(JobStatus.STOPPED, job_dir, metrics, checkpoint=str(ckpt), step=step)
        events.write(Stopped(step=step, checkpoint=str(ckpt) if ckpt.exists() else None, **stop_reason(job_dir)))
        return RunResult(JobStatus.STOPPED, job_dir, metrics, checkpoint=str(ckpt), step=step)

    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    if eval_ds is not None:  # final eval numbers belong in the summary; reuse the one just run if any
        metrics.update(evals[-1] if evals and evals[-1].get("step") == step else trainer.evaluate())
    adapter_dir = job_dir / ADAPTER_DIR
    trainer.save_model(str(adapter_dir))  # collective under FSDP/DeepSpeed; writes on rank 0 only
    if not trainer.is_world_process_zero():
        return RunResult(JobStatus.SUCCEEDED, job_dir, metrics, adapter_dir, step=step)
    tokenizer.save_pretrained(str(adapter_dir))
    write_adapter_meta(adapter_dir, AdapterMeta(
        base_model=spec.model.base_model, trainer=spec.training.trainer, chat_template=spec.data.chat_template,
        chat_template_source=prepared.template.describe() if prepared.template else None,
        end_of_turn=prepared.end_of_turn,
        prompt_template=spec.data.prompt_template,
        lora=spec.lora.enabled, quantization=spec.training.quantization,
        format=prepared.detection.format if prepared.detection else "template", metrics=metrics,
        model_load=model_load_settings(spec), adapter_dtype=_trained_dtype(trainer.model)))
    events.write(Finished(step=step, metrics=metrics, adapter_dir=str(adapter_dir)))
    return RunResult(JobStatus.SUCCEEDED, job_dir, metrics, adapter_dir, step=step)


def _build_trainer(spec: JobSpec, module: Any, tokenizer: Any, train_ds: Any, eval_ds: Any,
                   callbacks: list, data_ready: bool = False, end_of_turn: Optional[str] = None,
                   events: Optional[EventLog] = None) -> Any:
    """A fresh base model and trainer (a retry after out-of-memory must not reuse a model LoRA already wraps)."""
    import datasets
    from transformers import PrinterCallback

    task = trainer_info(spec.training.trainer).head
    model = load_base_model(spec, task, tokenizer)
    install_fault_hook(model)
    ctx = TrainContext(spec, model, tokenizer, train_ds, eval_ds,
                       lora_config(spec, "SEQ_CLS" if task == "seq_cls" else "CAUSAL_LM"), callbacks,
                       data_ready=data_ready, end_of_turn=end_of_turn, events=events)
    # A trainer that maps our memory-mapped rows (DPO tokenising, say) would otherwise write `datasets` cache
    # files into the prepared-data cache entry, beside files that are checked; its results go to a temporary
    # folder instead, as they did when the rows were in memory.
    caching = datasets.is_caching_enabled()
    datasets.disable_caching()
    try:
        trainer = module.build(ctx)
    finally:
        if caching:
            datasets.enable_caching()
    trainer.remove_callback(PrinterCallback)  # events.jsonl (and its console echo) replace the dict prints
    return trainer


def _preparing_events(events: EventLog, stop: StopRequest) -> ProgressCallback:
    """`preparing` events (at most one a second) so the Jobs tab shows "preparing data 37%" before step 0; a stop
    request ends the preparation."""
    last = [0.0]

    def on_progress(p: PreparationProgress) -> None:
        if stop.requested:
            raise PreparationCancelled()
        now = time.monotonic()
        if p.phase == "preparing" and now - last[0] < 1.0:
            return
        last[0] = now
        events.write(Preparing(phase=p.phase, progress=round(p.fraction, 4), rows=p.rows,
                               total_rows=p.total_rows, rows_per_second=round(p.rows_per_second or 0, 1) or None,
                               eta_seconds=round(p.eta_seconds, 1) if p.eta_seconds is not None else None))
    return on_progress


def _last_rewards(history: list[dict]) -> dict[str, float]:
    """The last logged reward figures (grpo: total and per reward, KL, completion length; kto: rewards/...), as
    train_* metrics: what the run ended on, for the summary and the model card."""
    last: dict = next((h for h in reversed(history) if "reward" in h or any(k.startswith("rewards/") for k in h)), {})
    keys = [k for k in last if k in ("reward", "reward_std", "kl") or k.startswith(("rewards/", "completions/mean_l"))]
    return {f"train_{k}": float(last[k]) for k in keys if isinstance(last[k], (int, float))}


def _trained_dtype(model: Any) -> Optional[str]:
    """The dtype the trainable weights (the LoRA adapter) were trained in; serving computes with them in it."""
    dtype = next((p.dtype for p in model.parameters() if p.requires_grad), None)
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def stop_reason(job_dir: Path) -> dict[str, Any]:
    """Why this run was asked to stop (a sweep's pruner, its budget), for its Stopped record; {} for a plain stop."""
    reason, note = read_stop_request(job_dir)
    return {"reason": reason, "note": note} if reason in ("pruned", "budget") else {}
