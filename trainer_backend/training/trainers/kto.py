"""Kahneman-Tversky Optimisation: TRL's KTOTrainer on unpaired thumbs-up / thumbs-down answers. With LoRA the
reference model is the base with the adapter disabled. Unless the spec weights them, the two kinds of rows are
balanced as TRL recommends (desirable x weight vs undesirable x weight between 1 and 4/3)."""
from __future__ import annotations

from typing import Any

from ..common import TrainContext, common_args


def class_weights(labels: list[bool], desirable: float | None, undesirable: float | None) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight): the spec's, else weights that make both kinds count alike."""
    n_good = max(sum(1 for x in labels if x), 1)
    n_bad = max(len(labels) - n_good, 1)
    undesirable = undesirable or 1.0
    return desirable or round(n_bad * undesirable / n_good, 4), undesirable


def build(ctx: TrainContext) -> Any:
    from trl import KTOConfig, KTOTrainer

    spec = ctx.spec
    good, bad = class_weights(list(ctx.train_dataset["label"]), spec.kto.desirable_weight,
                              spec.kto.undesirable_weight)
    # Prompt/completion limits were applied by the data layer; max_length is the row's total budget.
    args = KTOConfig(**common_args(ctx), beta=spec.training.beta, max_length=spec.lengths.block_size,
                     desirable_weight=good, undesirable_weight=bad)
    return KTOTrainer(model=ctx.model, ref_model=None, args=args, train_dataset=ctx.train_dataset,
                      eval_dataset=ctx.eval_dataset, processing_class=ctx.tokenizer, peft_config=ctx.peft_config,
                      callbacks=ctx.callbacks)
