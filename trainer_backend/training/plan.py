"""A plan before the start: parameters, peak memory by part, tokens, steps, time and cost of a job.

Every figure says how it was obtained: `counted` (from the model's shapes or the prepared data), `estimated`
(a formula or a table, documented below), or `measured` (a probe: a few real optimizer steps on the actual data
and hardware). The model is instantiated on the meta device to count parameters — no weights are loaded — except
for the opt-in probe.

Memory model (bytes; T = tokens in one micro-batch = batch_size x block_size x sequences per row (2 for preference
pairs: chosen and rejected go through the model together), H hidden, I intermediate, L layers, V vocabulary, b =
bytes of the compute dtype; what each trainer needs comes from trainer_registry.py):
  weights        quantizable linear weights x (0.56 for int4 nf4 + double quant, 1.06 int8, b otherwise) +
                 the rest (embeddings, head, norms) x b; twice for a trainer with a reference model trained
                 without LoRA (TRL loads a frozen copy; with LoRA the reference is the base, adapter off)
  lora+optimizer trainable x 16 (fp32 weight, gradient and two Adam moments)
  activations    without checkpointing L x T x (10 H + 4 I) x b; with it L x T x H x b + one layer's full set
                 (SDPA / flash attention: no sequence-squared term)
  logits         T x V x (b + 8) (the logits, their float copy for the loss, and its gradient)
  runtime        the framework: 0.52 GiB for a CPU process (Python, torch, transformers, TRL, datasets — measured
                 on the CI machine), 0.6 GiB CUDA context + 10% allocator slack on a GPU
Time without a probe: 6 N (full) or 4 N (LoRA: no weight gradients for the base) FLOPs per token at 35% of the
GPU's peak from HARDWARE below. No time is estimated for a CPU or a GPU the table does not know: FLOPs say nothing
useful there (the tiny demo's 40 steps are 0.2 s of FLOPs on cpu-basic's 0.1 TFLOP/s; they took 4 min 16 s on
2 cores), so the plan says so and offers the probe. A probe's time is its seconds per step x steps plus what it
took to load the model and data before its first step. Cost: hours x the hourly price of a named Spaces tier
(Hugging Face list prices, 2026; check the current ones); this machine, unless it is a Space, has none.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from ..spec import JobSpec
from ..trainer_registry import trainer_info

GIB = 2**30
CPU_RUNTIME_GIB = 0.52
GPU_RUNTIME_GIB = 0.6
MFU = 0.35

# name: (peak dense TFLOP/s in the training dtype, GiB of accelerator memory, USD per hour on Spaces)
HARDWARE: dict[str, tuple[float, Optional[float], Optional[float]]] = {
    "cpu-basic": (0.1, None, 0.0), "cpu-upgrade": (0.2, None, 0.03),
    "t4-small": (65, 16, 0.40), "t4-medium": (65, 16, 0.60), "l4x1": (121, 24, 0.80), "l4x4": (484, 96, 3.80),
    "a10g-small": (125, 24, 1.00), "a10g-large": (125, 24, 1.50), "a10g-largex2": (250, 48, 3.00),
    "a100-large": (312, 80, 2.50), "h100": (989, 80, 4.50), "h200": (989, 141, 5.00),
}


@dataclass
class Figure:
    value: Optional[float]
    unit: str
    how: str           # counted | estimated | measured
    note: str = ""

    def text(self) -> str:
        if self.value is None:
            return f"unknown ({self.note})" if self.note else "unknown"
        if self.unit == "s" and self.value >= 60:  # 256 s reads as 4 min 16 s
            minutes, seconds = divmod(round(self.value), 60)
            clock = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min {seconds} s"
            return f"{clock} ({self.how}{'; ' + self.note if self.note else ''})"
        whole = float(self.value).is_integer() and self.unit not in ("GiB", "USD")
        number = f"{self.value:,.0f}" if whole or self.value >= 100 else f"{self.value:,.2f}"
        return f"{number} {self.unit} ({self.how}{'; ' + self.note if self.note else ''})"


@dataclass
class JobPlan:
    model: str
    hardware: str
    precision: str
    quantization: str
    gradient_checkpointing: bool
    parameters_total: Figure
    parameters_trainable: Figure
    memory_gib: dict[str, Figure]
    train_tokens: Figure
    steps: Figure
    time_seconds: Figure
    cost_usd: Figure
    fits: Optional[bool]
    notes: list[str] = field(default_factory=list)
    evaluation_seconds: Optional[Figure] = None  # the report after training (plan_evaluation.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        m = self.memory_gib
        verdict = "" if self.fits is None else (" — fits" if self.fits else " — does NOT fit: see notes")
        other = ("without", m["activations_without_checkpointing"]) if self.gradient_checkpointing else \
            ("with", m["activations_with_checkpointing"])
        lines = [f"**Plan** for `{self.model}` on **{self.hardware}** ({self.precision}, quantization "
                 f"{self.quantization}){verdict}",
                 f"- parameters: {self.parameters_total.text()}; trainable {self.parameters_trainable.text()}",
                 f"- peak memory: **{m['peak'].text()}** = weights {m['weights'].value:.2f} + LoRA/optimizer "
                 f"{m['lora_and_optimizer'].value:.2f} + activations {m['activations'].value:.2f} + logits "
                 f"{m['logits'].value:.2f} + runtime {m['runtime'].value:.2f} GiB (activations {other[0]} "
                 f"gradient checkpointing: {other[1].value:.2f} GiB)",
                 f"- data: {self.train_tokens.text()}; {self.steps.text()}",
                 f"- time: {self.time_seconds.text()}; " +
                 ("no cost: your own machine" if self.cost_usd.note == OWN_MACHINE else
                  f"cost: {self.cost_usd.text()}")]
        if self.evaluation_seconds is not None:
            lines.append(f"- evaluation report after training: {self.evaluation_seconds.text()}")
        return "\n".join(lines + [f"- note: {n}" for n in self.notes])


def _counts(spec: JobSpec, task: str) -> tuple[int, int, int, Any]:
    """(total, trainable, quantizable linear) parameters and the config, from a meta-device model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from .model_loading import hub_kwargs, lora_config

    config = AutoConfig.from_pretrained(spec.model.base_model, **hub_kwargs(spec.model))
    auto = AutoModelForSequenceClassification if task == "seq_cls" else AutoModelForCausalLM
    if task == "seq_cls":
        config.num_labels = 1
    with torch.device("meta"):  # shapes only, no memory; tied embeddings stay one tensor (counted once)
        model = auto.from_config(config, trust_remote_code=spec.model.trust_remote_code)
    total = sum(p.numel() for p in model.parameters())
    head = getattr(model, "lm_head", None) or getattr(model, "score", None)
    quantizable = sum(m.weight.numel() for m in model.modules()
                      if isinstance(m, torch.nn.Linear) and m is not head)
    peft = lora_config(spec, "SEQ_CLS" if task == "seq_cls" else "CAUSAL_LM")
    if peft is None:
        return total, total, quantizable, config
    from peft import get_peft_model

    with torch.device("meta"):
        wrapped = get_peft_model(model, peft)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    return total, trainable, quantizable, config


def _memory(spec: JobSpec, total: int, trainable: int, quantizable: int, config: Any, dtype_bytes: int,
            on_gpu: bool) -> dict[str, Figure]:
    q = spec.training.quantization
    trainer = trainer_info(spec.training.trainer)
    per_linear = {"int4": 0.56, "int8": 1.06}.get(q, dtype_bytes)
    weights = quantizable * per_linear + (total - quantizable) * dtype_bytes
    reference_copy = trainer.reference_model and not spec.lora.enabled
    if reference_copy:
        weights *= 2
    optimizer = trainable * 16
    text = getattr(config, "text_config", None) or config
    hidden = getattr(text, "hidden_size", 0) or 0
    inter = getattr(text, "intermediate_size", 4 * hidden) or 4 * hidden
    layers = getattr(text, "num_hidden_layers", 0) or 0
    vocab = getattr(text, "vocab_size", 0) or 0
    tokens = spec.training.batch_size * spec.lengths.block_size * trainer.sequences_per_row
    layer_full = tokens * (10 * hidden + 4 * inter) * dtype_bytes
    without_ckpt = layers * layer_full
    with_ckpt = layers * tokens * hidden * dtype_bytes + layer_full
    activations = with_ckpt if spec.training.gradient_checkpointing else without_ckpt
    logits = tokens * vocab * (dtype_bytes + 8)
    runtime = GPU_RUNTIME_GIB * GIB + 0.1 * (weights + optimizer + activations + logits) if on_gpu \
        else CPU_RUNTIME_GIB * GIB
    est = lambda v, note="": Figure(round(v / GIB, 6), "GiB", "estimated", note)  # noqa: E731
    weights_note = f"quantization {q}" + ("; with the frozen reference copy" if reference_copy else "")
    return {"weights": est(weights, weights_note), "lora_and_optimizer": est(optimizer),
            "activations": est(activations), "activations_without_checkpointing": est(without_ckpt),
            "activations_with_checkpointing": est(with_ckpt), "logits": est(logits),
            "runtime": est(runtime, "GPU context + allocator slack" if on_gpu else "Python + libraries"),
            "peak": est(weights + optimizer + activations + logits + runtime)}


def _tokens_and_steps(spec: JobSpec, train_ds: Any, report_tokens: int = 0) -> tuple[Figure, Figure, int]:
    """Tokens in the prepared train split, and optimizer steps (max_steps, or epochs over the data). Rows of text
    that the trainer tokenises itself (dpo, orpo, kto, grpo) are counted from the dataset report."""
    from .model_loading import resolve_packing

    import pyarrow.compute as pc

    tokens = 0
    id_columns = [c for c in train_ds.column_names if c.endswith("input_ids")]
    for column in id_columns:
        for batch in train_ds.select_columns([column]).with_format("arrow").iter(batch_size=8192):  # flat memory
            tokens += int(pc.sum(pc.list_value_length(batch[column])).as_py() or 0)
    if not id_columns:
        tokens = report_tokens
    rows = len(train_ds)
    per_step = spec.training.batch_size * spec.training.gradient_accumulation
    if trainer_info(spec.training.trainer).rows == "prompts":  # a step's sequences are num_generations per prompt
        rows *= spec.grpo.num_generations
        tokens *= spec.grpo.num_generations
    if spec.training.max_steps and spec.training.max_steps > 0:
        steps = spec.training.max_steps
        how = "from training.max_steps"
    else:
        sequences = math.ceil(tokens / spec.lengths.block_size) if resolve_packing(spec) else rows
        steps = max(1, math.ceil(sequences / per_step)) * math.ceil(spec.training.epochs)
        how = f"{spec.training.epochs:g} epoch(s) of {sequences:,} sequences, {per_step} per step"
    step_tokens = min(tokens / max(rows, 1) * per_step, spec.lengths.block_size * per_step)
    rows_note = f"{len(train_ds):,} rows in the prepared train split" + (
        "" if id_columns else "; prompt + answer tokens from the dataset report" if rows == len(train_ds) else
        f"; each prompt + {spec.grpo.max_completion_length} completion tokens, {spec.grpo.num_generations} "
        "completions per prompt")
    return (Figure(tokens, "tokens", "counted", rows_note),
            Figure(steps, "optimizer steps", "counted", how), int(step_tokens))


def named_hardware() -> Optional[str]:
    """The Spaces tier this app runs on (SPACE_HARDWARE on a Space, or LORA_STUDIO_HARDWARE), if it names one."""
    import os

    from ..settings import settings

    named = os.environ.get("SPACE_HARDWARE") or settings().hardware
    return named if named in HARDWARE else None


def this_machine(on_gpu: bool) -> tuple[str, Optional[float], Optional[float]]:
    """(how the plan names this machine, its GPU's GiB, the GPU's peak TFLOP/s from HARDWARE or None): the
    machine as itself (its cores or its GPU), never a Spaces tier it is not."""
    import os

    from ..model_info import gpu_memory

    gpu, gib = gpu_memory()
    if not (on_gpu and gpu):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return f"this machine ({cores} CPU core{'s' * (cores != 1)}{', GPU not used' if gpu else ''})", None, None
    name = gpu.lower()
    key = next((k for k in ("h200", "h100", "a100", "a10g", "l4", "t4") if k in name), None)
    peak = next((HARDWARE[h][0] for h in HARDWARE if key and h.startswith(key)), None)
    return f"this machine ({gpu}, {gib:.0f} GiB)", gib, peak


OWN_MACHINE = "your own machine: no hourly price"
PROBE_OFFER = "tick *Measure the time with 3 real steps* (or `plan --probe-steps 3`) for a measured time"


def plan_job(spec: JobSpec, hardware: Optional[str] = None, probe_steps: int = 0) -> JobPlan:
    """The plan of `spec`. probe_steps > 0 loads the model and times that many real optimizer steps."""
    from .model_loading import precision, use_cpu
    from .run import prepare_job

    task = trainer_info(spec.training.trainer).head
    hardware = hardware or named_hardware()
    if hardware:  # a Spaces tier (named, or the Space this runs on): its GPU (if any) decides the precision
        on_gpu = HARDWARE.get(hardware, (None, None, None))[1] is not None
        prec: str = spec.training.mixed_precision if spec.training.mixed_precision != "auto" else \
            ("fp16" if hardware.startswith("t4") else "bf16") if on_gpu else "no"
        peak_tflops, capacity_gib, price = HARDWARE.get(hardware, (None, None, None))
        label = hardware
    else:  # this machine, as itself
        on_gpu, prec = not use_cpu(spec), precision(spec)
        label, capacity_gib, peak_tflops = this_machine(on_gpu)
        price = None
    dtype_bytes = 2 if prec in ("bf16", "fp16") else 4
    total, trainable, quantizable, config = _counts(spec, task)
    memory = _memory(spec, total, trainable, quantizable, config, dtype_bytes, on_gpu)
    _, prepared = prepare_job(spec)
    train_ds, _ = prepared.to_datasets()
    report_tokens = prepared.train.stats.tokens.total if prepared.train.stats.tokens else 0
    tokens, steps, step_tokens = _tokens_and_steps(spec, train_ds, report_tokens)
    assert steps.value is not None  # counted: max_steps, or epochs over the data
    notes: list[str] = []
    if probe_steps > 0 and not (hardware and hardware != named_hardware()):  # a probe measures this machine
        seconds_per_step, startup = probe(spec, probe_steps)
        time_fig = Figure(round(seconds_per_step * steps.value + startup, 1), "s", "measured",
                          f"{probe_steps} real optimizer steps: {seconds_per_step:.3f} s/step x {steps.value:g} "
                          f"steps + {startup:.1f} s to load the model and data; evaluation and checkpoints add to it")
    elif peak_tflops and on_gpu:
        flops = (4 if trainable < total else 6) * total * step_tokens * steps.value
        time_fig = Figure(round(flops / (peak_tflops * 1e12 * MFU), 1), "s", "estimated",
                          f"{peak_tflops:g} TFLOP/s peak at {MFU:.0%} utilisation; training steps only")
    elif not on_gpu:
        time_fig = Figure(None, "s", "estimated", "not estimated for a CPU, whose speed FLOPs do not predict; " +
                          (PROBE_OFFER if not hardware or hardware == named_hardware() else
                           f"a probe measures this machine, not {hardware}"))
    else:
        time_fig = Figure(None, "s", "estimated", f"no throughput known for {label}; {PROBE_OFFER}")
    if price is None:
        cost = Figure(None, "USD", "estimated", OWN_MACHINE if not hardware else "price unknown")
    elif time_fig.value is None:
        cost = Figure(None, "USD", "estimated", f"{hardware} at ${price:.2f}/h, for a time not known")
    else:
        cost = Figure(round(time_fig.value / 3600 * price, 2), "USD", "estimated",
                      f"{hardware} at ${price:.2f}/h (Spaces list price; check the current one)")
    if trainer_info(spec.training.trainer).rows == "prompts" and probe_steps <= 0:
        notes.append("the time leaves out generating the completions, which usually takes most of a GRPO step: "
                     "run a probe (a few real steps) to measure it")
    fits = None
    if capacity_gib and on_gpu:
        peak = memory["peak"].value
        assert peak is not None  # an estimate: always a number
        fits = peak <= capacity_gib * 0.95
        if not fits:
            notes.append(f"~{peak:.1f} GiB is more than {hardware}'s {capacity_gib} GiB: turn on "
                         "training.gradient_checkpointing, lower training.batch_size or lengths.block_size, or use "
                         "training.quantization: int4 (out-of-memory steps also halve the micro-batch by themselves)")
    from .plan_evaluation import report_seconds

    valid_rows = prepared.valid.stats.rows_valid if prepared.valid is not None else 0
    weight_bytes = (memory["weights"].value or 0.0) * GIB
    seconds, how = report_seconds(spec, weight_bytes, label, on_gpu, valid_rows)
    return JobPlan(spec.model.base_model, label, {"no": "fp32"}.get(prec, prec), spec.training.quantization,
                   spec.training.gradient_checkpointing, Figure(total, "parameters", "counted"),
                   Figure(trainable, "parameters", "counted", f"{100 * trainable / max(total, 1):.2f}%"),
                   memory, tokens, steps, time_fig, cost, fits, notes,
                   Figure(seconds, "s", "counted" if seconds == 0 else "estimated", how))


def probe(spec: JobSpec, steps: int) -> tuple[float, float]:
    """(seconds per optimizer step, seconds before the first step: loading the model and data), from `steps`
    real steps on the actual data (one more first, not counted: warm-up)."""
    import tempfile

    from ..run_events import Log
    from .run import run_training

    with tempfile.TemporaryDirectory(prefix="lora-studio-probe-") as tmp:
        training = spec.training.model_copy(update={"max_steps": steps + 1, "save_strategy": "no",
                                                    "eval_strategy": "no", "logging_steps": 1,
                                                    "resume_from_checkpoint": None})
        trial = spec.model_copy(update={"training": training, "output_dir": tmp,
                                        "hub": spec.hub.model_copy(update={"push_to_hub": False})})
        times: list[float] = []
        started = time.perf_counter()
        run_training(trial, echo=lambda record: times.append(time.perf_counter()) if isinstance(record, Log)
                     else None)
    if len(times) < 2:
        raise RuntimeError("the probe logged fewer than 2 steps")
    per_step = (times[-1] - times[0]) / (len(times) - 1)
    return per_step, max(0.0, times[0] - started - per_step)
