"""Direct Preference Optimisation: TRL DPOTrainer. With LoRA the reference model is the same weights with the
adapter disabled, so no second copy of the base sits in memory."""
from __future__ import annotations

from typing import Any

from ..common import TrainContext, common_args


def build(ctx: TrainContext) -> Any:
    from trl import DPOConfig, DPOTrainer

    tr = ctx.spec.training
    # Prompt/completion limits were applied by the data layer; max_length is the pair's total budget.
    args = DPOConfig(**common_args(ctx), beta=tr.beta, loss_type=[tr.dpo_loss_type],
                     max_length=ctx.spec.lengths.block_size, truncation_mode="keep_start")
    return DPOTrainer(model=ctx.model, ref_model=None, args=args, train_dataset=ctx.train_dataset,
                      eval_dataset=ctx.eval_dataset, processing_class=ctx.tokenizer, peft_config=ctx.peft_config,
                      callbacks=ctx.callbacks)
