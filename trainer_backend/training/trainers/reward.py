"""Reward modelling: TRL RewardTrainer on a sequence-classification head (num_labels=1) over the same base;
LoRA on the backbone, the new `score` head trained and saved with the adapter. A `margin` column is used
when the data has one."""
from __future__ import annotations

from typing import Any

from ..common import TrainContext, common_args


def build(ctx: TrainContext) -> Any:
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(**common_args(ctx), max_length=ctx.spec.lengths.block_size)
    return RewardTrainer(model=ctx.model, args=args, train_dataset=ctx.train_dataset, eval_dataset=ctx.eval_dataset,
                         processing_class=ctx.tokenizer, peft_config=ctx.peft_config, callbacks=ctx.callbacks)
