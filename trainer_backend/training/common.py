"""What every trainer shares: the context it is built from and the TrainingArguments derived from the spec."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..job_files import CHECKPOINTS_DIR, latest_checkpoint
from ..spec import JobSpec
from .model_loading import precision, use_cpu


@dataclass
class TrainContext:
    spec: JobSpec
    model: Any
    tokenizer: Any
    train_dataset: Any
    eval_dataset: Optional[Any]
    peft_config: Optional[Any]
    callbacks: list = field(default_factory=list)
    data_ready: bool = False  # the datasets are final (cut, packed where packing applies): trainers use them as is
    end_of_turn: Optional[str] = None  # what ends an assistant turn (generating trainers stop there)
    events: Optional[Any] = None       # the run's EventLog (trainers that record more than metrics: grpo samples)


def common_args(ctx: TrainContext) -> dict[str, Any]:
    """Keyword arguments for any TRL *Config (they all extend transformers.TrainingArguments)."""
    spec = ctx.spec
    tr, job_dir = spec.training, spec.job_dir
    prec = precision(spec)
    report_to = {"none": "none", "tensorboard": "tensorboard", "trackio": "trackio"}[tr.log]
    has_eval = tr.eval_strategy != "no" and ctx.eval_dataset is not None  # the report notes when eval is off
    return dict(
        output_dir=str(job_dir / CHECKPOINTS_DIR),
        learning_rate=tr.learning_rate, num_train_epochs=tr.epochs, max_steps=tr.max_steps,
        per_device_train_batch_size=tr.batch_size, per_device_eval_batch_size=tr.batch_size,
        gradient_accumulation_steps=tr.gradient_accumulation, warmup_steps=tr.warmup_ratio,
        lr_scheduler_type=tr.scheduler, optim=tr.optimizer, weight_decay=tr.weight_decay,
        max_grad_norm=tr.max_grad_norm, seed=tr.seed, data_seed=tr.seed,
        bf16=prec == "bf16", fp16=prec == "fp16", use_cpu=use_cpu(spec),
        activation_checkpointing=tr.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if tr.gradient_checkpointing else None,
        logging_steps=tr.logging_steps, logging_first_step=True,
        eval_strategy=tr.eval_strategy if has_eval else "no", eval_steps=tr.eval_steps,
        save_strategy=tr.save_strategy, save_steps=tr.save_steps, save_total_limit=tr.save_total_limit,
        report_to=report_to, run_name=spec.project_name, project=spec.project_name,
        include_num_input_tokens_seen="non_padding", disable_tqdm=True, dataloader_num_workers=0,
    )


def resolve_checkpoint(spec: JobSpec) -> Optional[str]:
    """'latest' -> newest checkpoint-N folder in the job dir; a path stays a path."""
    want = spec.training.resume_from_checkpoint
    if not want:
        return None
    if want != "latest":
        if not Path(want).is_dir():
            raise FileNotFoundError(f"training.resume_from_checkpoint: no checkpoint folder at {want}")
        return want
    latest = latest_checkpoint(spec.job_dir)  # a save cut short by a kill does not count
    if latest is None:
        raise FileNotFoundError(f"training.resume_from_checkpoint=latest: no checkpoint in "
                                f"{spec.job_dir / CHECKPOINTS_DIR}")
    return str(latest)
