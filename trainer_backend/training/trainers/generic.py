"""Generic causal LM (continued pre-training): documents concatenated and cut into fixed block_size chunks."""
from __future__ import annotations

from typing import Any

from ..common import TrainContext
from . import sft


def build(ctx: TrainContext) -> Any:
    # "wrapped" packing concatenates the token stream and chunks it, like run_clm's group_texts.
    return sft.build(ctx, packing_strategy="wrapped")
