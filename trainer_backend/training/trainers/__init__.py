"""One thin module per trainer. Each exposes `build(ctx) -> transformers.Trainer`."""
from __future__ import annotations

from importlib import import_module
from types import ModuleType

from ...spec import AVAILABLE_TRAINERS


class TrainerNotAvailable(ValueError):
    pass


def trainer_module(name: str) -> ModuleType:
    if name not in AVAILABLE_TRAINERS:
        raise TrainerNotAvailable(
            f"trainer '{name}' is not yet available in this version of LoRA Studio "
            f"(available: {', '.join(sorted(AVAILABLE_TRAINERS))})")
    return import_module(f"{__name__}.{name}")
