"""The job spec's LoRA, sequence-length and training sections (spec.py assembles them into the JobSpec)."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import field_validator

from .spec_base import _f, _Section
from .spec_values import OPTIMIZERS, SCHEDULERS

TrainerName = Literal["sft", "generic", "reward", "dpo", "orpo", "kto", "grpo"]  # = trainer_registry.TRAINERS (a test checks)
_LORA_ON = "lora.enabled=true"


class LoraSpec(_Section):
    enabled: bool = _f(True, "Train a LoRA adapter (off = full fine-tuning).", "basic", label="Train a LoRA adapter")
    r: int = _f(16, "LoRA rank: more is more capacity (and memory).", "basic", ge=1, le=1024, label="Rank",
                when=_LORA_ON)
    alpha: int = _f(32, "LoRA alpha (scaling numerator).", ge=1, le=4096, label="Alpha", when=_LORA_ON)
    dropout: float = _f(0.05, "LoRA dropout.", ge=0, lt=1, label="Dropout", when=_LORA_ON)
    target_modules: str = _f("all-linear", "'all-linear' or a comma-separated list of module names.",
                             label="Target modules", when=_LORA_ON)
    use_dora: bool = _f(False, "Weight-decomposed LoRA (DoRA).", label="DoRA", when=_LORA_ON)
    use_rslora: bool = _f(False, "Rank-stabilised scaling (alpha / sqrt(r)).", label="rsLoRA scaling",
                          when=_LORA_ON)

    def target_list(self) -> str | list[str]:
        if self.target_modules.strip() == "all-linear":
            return "all-linear"
        return [m.strip() for m in self.target_modules.split(",") if m.strip()]


class LengthSpec(_Section):
    block_size: int = _f(1024, "Training sequence length: packed block size, and the cap for one sample.",
                         "basic", ge=8, label="Sequence length (tokens)", group="training")
    model_max_length: int = _f(2048, "Longest context the model is used with.", ge=8,
                               label="Model context length", group="training")
    max_prompt_length: Optional[int] = _f(None, "Prompt tokens kept (older tokens cut from the left).", ge=1,
                                          label="Prompt tokens kept", group="training")
    max_completion_length: Optional[int] = _f(None, "Completion tokens kept (cut from the right).", ge=1,
                                              label="Answer tokens kept", group="training")


class TrainingSpec(_Section):
    trainer: TrainerName = _f("sft", "sft, generic (continued pre-training), reward, dpo, orpo, kto (thumbs-up/down "
                                     "feedback) or grpo (rewards a program checks).", "basic", label="Trainer",
                              group="method")
    quantization: Literal["none", "int8", "int4"] = _f("none", "Load the base in 8/4-bit (QLoRA; needs a GPU).",
                                                       "basic", label="Quantization", group="pick-model")
    learning_rate: float = _f(2e-4, "Peak learning rate.", "basic", gt=0, le=1, label="Learning rate")
    epochs: float = _f(1.0, "Training epochs.", "basic", gt=0, le=1000, label="Epochs")
    max_steps: int = _f(-1, "Stop after this many optimizer steps (-1: use epochs).", "basic", ge=-1,
                        label="Max steps")
    batch_size: int = _f(2, "Per-device batch size.", "basic", ge=1, le=4096, label="Batch size (per device)")
    gradient_accumulation: int = _f(4, "Batches accumulated per optimizer step.", ge=1, le=4096,
                                    label="Gradient accumulation")
    warmup_ratio: float = _f(0.03, "Fraction of steps spent warming up the learning rate.", ge=0, lt=1,
                             label="Warm-up share")
    scheduler: Literal[SCHEDULERS] = _f("cosine", "Learning-rate schedule.", label="LR schedule")  # type: ignore[valid-type]
    optimizer: Literal[OPTIMIZERS] = _f("adamw_torch", "Optimizer.", label="Optimizer")  # type: ignore[valid-type]
    weight_decay: float = _f(0.0, "Weight decay.", ge=0, le=1, label="Weight decay")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 disables).", ge=0, label="Gradient clipping")
    seed: int = _f(42, "Random seed (data split, shuffling, init).", label="Seed")
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = _f(
        "auto", "'auto': bf16 where the GPU supports it, else fp16 on GPU, none on CPU.", label="Precision")
    gradient_checkpointing: bool = _f(True, "Trade compute for memory.", label="Gradient checkpointing")
    packing: Optional[bool] = _f(None, "Pack samples into full blocks (no cross-sample attention). Default: on "
                                       "for generic, and for sft with flash-attention (padding-free kernels); "
                                       "dynamic padding otherwise, which benchmarks faster on SDPA/CPU.",
                                 label="Packing", when="trainer.rows=sequences")
    completion_only_loss: bool = _f(True, "Loss only on responses / assistant turns (not on prompts).", "basic",
                                    label="Loss on answers only", when="training.trainer=sft")
    logging_steps: int = _f(10, "Log metrics every N steps.", ge=1, label="Log every (steps)", group="evaluation")
    eval_strategy: Literal["no", "steps", "epoch"] = _f("epoch", "When to evaluate (needs a validation split).",
                                                        label="Evaluate", group="evaluation")
    eval_steps: Optional[int] = _f(None, "Evaluate every N steps when eval_strategy is 'steps'.", ge=1,
                                   label="Evaluate every (steps)", group="evaluation",
                                   when="training.eval_strategy=steps")
    save_strategy: Literal["no", "steps", "epoch"] = _f("epoch", "When to save checkpoints.",
                                                        label="Save checkpoints", group="evaluation")
    save_steps: Optional[int] = _f(None, "Save every N steps when save_strategy is 'steps'.", ge=1,
                                   label="Save every (steps)", group="evaluation", when="training.save_strategy=steps")
    save_total_limit: int = _f(2, "Checkpoints kept on disk.", ge=1, label="Checkpoints kept", group="evaluation")
    resume_from_checkpoint: Optional[str] = _f(None, "Checkpoint folder to resume from, or 'latest'.")
    use_cpu: Optional[bool] = _f(None, "Force CPU training (default: CPU only when no GPU is visible).",
                                 label="Force CPU", group="compute", when="compute.backend=local")
    log: Literal["none", "tensorboard", "trackio"] = _f("none", "Extra metrics tracker (events.jsonl is always "
                                                                "written).", label="Tracker", group="evaluation")
    distributed: Literal["auto", "none", "ddp", "fsdp", "deepspeed"] = _f(
        "auto", "Multi-process strategy: auto = DDP over every visible GPU; fsdp / deepspeed (ZeRO-2) shard "
                "optimizer state and weights for models that do not fit one GPU.", label="Multi-GPU strategy",
        group="compute")
    num_processes: Optional[int] = _f(None, "Processes to train with (default: one per visible GPU, 1 on CPU; "
                                            "> 1 on CPU runs data-parallel over gloo).", ge=1, le=1024,
                                      label="Processes", group="compute")
    accelerate_config: Optional[str] = _f(None, "An accelerate config file (multi-node, custom FSDP/DeepSpeed); "
                                                "overrides `distributed`.", label="Accelerate config file",
                                          group="compute", when="compute.backend=local")
    beta: float = _f(0.1, "DPO/ORPO/KTO beta: how far from the reference the model may move (GRPO has its own: "
                          "grpo.beta).", gt=0, label="Beta", group="method", when="trainer.uses_beta")
    dpo_loss_type: Literal["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
                           "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm"] = _f(
        "sigmoid", "DPO loss: sigmoid (original DPO), ipo, hinge, robust, ...", label="DPO loss", group="method",
        when="trainer.uses_dpo_loss_type")

    @field_validator("eval_strategy", "save_strategy", "mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, v: Any) -> Any:
        return "no" if v is False else v  # YAML 1.1 reads a bare `no` as false
