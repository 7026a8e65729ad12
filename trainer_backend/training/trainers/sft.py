"""Supervised fine-tuning: TRL SFTTrainer on our pre-tokenised rows (labels already mask prompts)."""
from __future__ import annotations

from typing import Any

from ..common import TrainContext, common_args
from ..model_loading import resolve_packing


def build(ctx: TrainContext, packing_strategy: str = "bfd") -> Any:
    from trl import SFTConfig, SFTTrainer

    # bfd packing is padding-free: samples share a row but restart position_ids, so attention never
    # crosses a sample boundary (flash-attention and SDPA both honour that).
    # data_ready: our rows are cut to max_length (and packed, when packing) already; TRL's own pass over them
    # would only cost time. packing stays set so the collator stays padding-free for packed rows.
    args = SFTConfig(**common_args(ctx), max_length=ctx.spec.lengths.block_size, packing=resolve_packing(ctx.spec),
                     packing_strategy=packing_strategy, completion_only_loss=None, dataset_num_proc=None,
                     dataset_kwargs={"skip_prepare_dataset": True} if ctx.data_ready else None)
    return SFTTrainer(model=ctx.model, args=args, train_dataset=ctx.train_dataset, eval_dataset=ctx.eval_dataset,
                      processing_class=ctx.tokenizer, peft_config=ctx.peft_config, callbacks=ctx.callbacks)
