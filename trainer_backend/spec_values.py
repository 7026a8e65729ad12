"""Allowed values of spec fields that another reader of configs needs too (the AutoTrain translation): written
once here, below both, so neither restates the other's list."""
from __future__ import annotations

CHAT_TEMPLATES: tuple[str, ...] = ("tokenizer", "chatml", "zephyr", "llama3", "alpaca", "none")
OPTIMIZERS: tuple[str, ...] = ("adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "sgd",
                               "adafactor")
SCHEDULERS: tuple[str, ...] = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts")
