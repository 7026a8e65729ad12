"""Allowed values of spec fields that another reader of configs needs too (the AutoTrain translation): written
once here, below both, so neither restates the other's list."""
from __future__ import annotations

import re

CHAT_TEMPLATES: tuple[str, ...] = ("tokenizer", "chatml", "hermes", "zephyr", "llama3", "alpaca", "none")
OPTIMIZERS: tuple[str, ...] = ("adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "sgd",
                               "adafactor")
SCHEDULERS: tuple[str, ...] = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts")


# A run's name (project_name): a folder name, a Hub repo name's stem and a job label at once.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def run_name_from(text: str, fallback: str = "lora-studio-run") -> str:
    """The nearest valid run name to free-form text (other tools' project names): RUN_NAME's characters only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip("._-")[:96].rstrip("-") or fallback
