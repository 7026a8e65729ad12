"""Presets: settings chosen for the person from the model, the hardware and the trainer, each with its reason.

"quick check" proves in minutes that data, template and memory work; "balanced" is a sound first real run;
"best quality" trades time for a better adapter. A preset returns spec values (dotted keys) and one line per
decision; the Train tab fills the form with them (visibly, undoable) and the planner then shows their memory and
time. Nothing here touches a spec: a preset only proposes values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..model_info import ModelFit
from ..trainer_registry import trainer_info


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    purpose: str


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("quick", "Quick check", "a few minutes: proves the data, template and memory work before a long run"),
    Preset("balanced", "Balanced", "a sound first real run: one pass over the data, evaluated, checkpointed"),
    Preset("best", "Best quality", "more capacity and passes for the best adapter; takes about 3x as long"),
)}

# LoRA learning rates per trainer: supervised LoRA tolerates 1e-4..2e-4 (PEFT/QLoRA papers); preference and RL
# trainers move a model that already answers and diverge at those rates (alignment-handbook's QLoRA DPO recipe:
# 5e-6; TRL's GRPO LoRA examples: 1e-5).
LEARNING_RATES = {"sft": 2e-4, "generic": 1e-4, "reward": 1e-4, "dpo": 5e-6, "orpo": 8e-6, "kto": 5e-6,
                  "grpo": 1e-5}
# tiny-demo is random-initialised: it only learns a sample in a minute with a much higher rate.
TINY_LEARNING_RATE = 3e-3
EFFECTIVE_BATCH = 16  # sequences per optimizer step for a real run (batch x accumulation)


@dataclass
class PresetChoice:
    values: dict[str, Any] = field(default_factory=dict)  # dotted spec key -> value
    reasons: list[str] = field(default_factory=list)      # one line per decision, in words

    def set(self, reason: Optional[str] = None, **values: Any) -> None:
        self.values.update({k.replace("__", "."): v for k, v in values.items()})
        if reason:
            self.reasons.append(reason)


def choose(preset: str, trainer: str, fit: Optional[ModelFit], tiny: bool = False) -> PresetChoice:
    """Values for `preset` (PRESETS) given the trainer, what is known of the model and this machine (`fit`:
    model_info.estimate_fit, None when unknown) and whether the model is the offline tiny-demo."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}' (presets: {', '.join(PRESETS)})")
    info = trainer_info(trainer)
    gpu_gib = fit.gpu_gib if fit else None
    c = PresetChoice()
    lr = TINY_LEARNING_RATE if tiny else LEARNING_RATES[trainer]
    if preset == "best" and not tiny:
        lr /= 2
    c.set(f"learning rate {lr:g}: " + ("tiny-demo is random-initialised and learns only at a high rate" if tiny
                                        else f"a usual LoRA rate for {trainer}" + (", halved for the longer run"
                                                                                   if preset == "best" else "")),
          training__learning_rate=lr)
    rank = {"quick": 8, "balanced": 16, "best": 32}[preset]
    c.set(f"LoRA rank {rank}, alpha {2 * rank}: " + {"quick": "small and fast", "balanced": "the common default",
                                                    "best": "more capacity for a harder task"}[preset],
          lora__enabled=True, lora__r=rank, lora__alpha=2 * rank, lora__dropout=0.0 if tiny else 0.05)
    _lengths(c, preset, tiny, gpu_gib)
    _batch(c, preset, trainer, tiny, gpu_gib)
    _quantization(c, fit, tiny)
    if preset == "quick":
        steps = 60 if tiny else 30
        c.set(f"{steps} steps{'' if tiny else ', first 200 rows'}, no checkpoints: done in minutes", training__max_steps=steps,
              data__max_rows=None if tiny else 200, training__save_strategy="no", training__logging_steps=2,
              training__epochs=1.0)
    else:
        epochs = {"balanced": 1.0, "best": 3.0}[preset]
        if tiny:
            c.set("150 steps: the tiny model needs many passes over a small sample", training__max_steps=150,
                  training__logging_steps=5, training__save_strategy="steps", training__save_steps=50)
        else:
            c.set(f"{epochs:g} epoch{'s' if epochs > 1 else ''} over all rows, a checkpoint each epoch (Stop and "
                  "Resume lose little)", training__max_steps=-1, training__epochs=epochs, data__max_rows=None,
                  training__save_strategy="epoch", training__logging_steps=10)
    steps = int(c.values["training.max_steps"])
    held_out = dict(data__valid_split="auto", data__valid_fraction=0.1)
    if steps > 0:
        c.set("10 % held out, evaluated twice: the chart shows whether it learns or memorises", **held_out,
              training__eval_strategy="steps", training__eval_steps=max(1, steps // 2))
    else:
        c.set("10 % held out, evaluated each epoch: the chart shows whether it learns or memorises", **held_out,
              training__eval_strategy="epoch")
    if info.uses_beta:
        c.set("beta 0.1: the usual pull towards the reference model", training__beta=0.1)
    if tiny:
        c.set("chatml template, constant schedule, no warm-up: the tiny model has no chat template of its own",
              data__chat_template="chatml", training__scheduler="constant", training__warmup_ratio=0.0,
              training__gradient_checkpointing=False, training__packing=False)
    return c


def _lengths(c: PresetChoice, preset: str, tiny: bool, gpu_gib: Optional[float]) -> None:
    if tiny:
        c.set("sequences of 64 tokens: the samples are short", lengths__block_size=64)
        return
    block = {"quick": 512, "balanced": 1024, "best": 2048}[preset]
    if gpu_gib is None:
        block = min(block, 512)
        c.set(f"sequences of {block} tokens: no GPU here, longer ones are slow on CPU", lengths__block_size=block)
    else:
        c.set(f"sequences of {block} tokens", lengths__block_size=block,
              lengths__model_max_length=max(2048, block))


def _batch(c: PresetChoice, preset: str, trainer: str, tiny: bool, gpu_gib: Optional[float]) -> None:
    if tiny:
        c.set("batch 4, no accumulation: the tiny model is fast", training__batch_size=4,
              training__gradient_accumulation=1)
        return
    batch = 1 if gpu_gib is None else 2 if gpu_gib < 24 else 4 if gpu_gib < 60 else 8
    per_row = trainer_info(trainer).sequences_per_row
    batch = max(1, batch // per_row) if trainer not in ("kto",) else max(2, batch)
    if trainer == "grpo":  # every group of completions must fit one optimizer step (grpo.num_generations = 4)
        c.set(f"batch {batch} x 4 accumulated, 4 completions per prompt", training__batch_size=batch,
              training__gradient_accumulation=4, grpo__num_generations=4)
        return
    accumulation = 1 if preset == "quick" else max(1, EFFECTIVE_BATCH // (batch * per_row))
    where = "no GPU" if gpu_gib is None else f"{gpu_gib:.0f} GiB of GPU memory"
    c.set(f"batch {batch} x {accumulation} accumulated ({where})", training__batch_size=batch,
          training__gradient_accumulation=accumulation)


def _quantization(c: PresetChoice, fit: Optional[ModelFit], tiny: bool) -> None:
    if tiny or fit is None or fit.gpu_gib is None:
        c.set(None if tiny else "no quantization: 4/8-bit loading needs a GPU", training__quantization="none")
        return
    if fit.fits is False:
        c.set(f"4-bit base (QLoRA): in 16-bit it needs ~{fit.estimated_gib:.0f} GiB, more than this GPU's "
              f"{fit.gpu_gib:.0f} GiB", training__quantization="int4")
    else:
        c.set("16-bit base: it fits this GPU" + (f" (~{fit.estimated_gib:.0f} of {fit.gpu_gib:.0f} GiB)"
                                                 if fit.estimated_gib else ""), training__quantization="none")
