"""Out of memory is a setting to change, not the end of a run.

When a step runs out of memory, the run halves the micro-batch and doubles gradient accumulation — the same
effective batch, so the same optimizer steps and learning-rate schedule — and continues from its last checkpoint
(from the start when there is none). Each adjustment is an event. At micro-batch 1 the run fails with a message
that says what would fit.

For tests on CPU: LORA_STUDIO_FAULT_OOM_TOKENS=N makes any forward pass whose micro-batch holds more than N
tokens raise torch.OutOfMemoryError, as a GPU would.
"""
from __future__ import annotations

import gc
import os
from typing import Any

from ..spec import JobSpec

FAULT_ENV = "LORA_STUDIO_FAULT_OOM_TOKENS"


class OutOfMemoryAtFloor(RuntimeError):
    """Out of memory with a micro-batch of 1: nothing left to halve."""


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def smaller_batch(spec: JobSpec) -> JobSpec:
    """The same spec with half the micro-batch and twice the accumulation (same effective batch)."""
    tr = spec.training
    if tr.batch_size <= 1:
        raise OutOfMemoryAtFloor(
            f"out of memory even with a micro-batch of 1 at lengths.block_size={spec.lengths.block_size}: lower "
            "lengths.block_size, turn on training.gradient_checkpointing, use training.quantization: int4, or "
            "pick a smaller base model / larger GPU")
    half = tr.batch_size // 2
    accumulation = tr.gradient_accumulation * tr.batch_size // half  # exact also for odd sizes' floor
    return spec.model_copy(update={"training": tr.model_copy(update={"batch_size": half,
                                                                     "gradient_accumulation": accumulation})})


def free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort
        pass


def install_fault_hook(model: Any) -> None:
    """The test fault described above; a no-op unless LORA_STUDIO_FAULT_OOM_TOKENS is set."""
    limit = int(os.environ.get(FAULT_ENV, "0") or 0)
    if limit <= 0:
        return
    import torch

    def check(module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.numel() > limit:
            raise torch.OutOfMemoryError(f"injected: a micro-batch of {ids.numel()} tokens exceeds {limit} "
                                         f"({FAULT_ENV})")
    model.register_forward_pre_hook(check, with_kwargs=True)
