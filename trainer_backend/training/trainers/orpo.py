"""Odds-Ratio Preference Optimisation: TRL's ORPOTrainer (trl.experimental.orpo in TRL 1.x). No reference
model at all: the SFT loss on `chosen` plus beta times the log odds-ratio term."""
from __future__ import annotations

from typing import Any

from ..common import TrainContext, common_args


def build(ctx: TrainContext) -> Any:
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    ln = ctx.spec.lengths
    args = ORPOConfig(**common_args(ctx), beta=ctx.spec.training.beta, max_length=ln.block_size,
                      max_completion_length=ln.max_completion_length)
    return ORPOTrainer(model=ctx.model, args=args, train_dataset=ctx.train_dataset, eval_dataset=ctx.eval_dataset,
                       processing_class=ctx.tokenizer, peft_config=ctx.peft_config, callbacks=ctx.callbacks)
