"""Settings that need hardware this machine lacks (fp16, 8/4-bit loading without a CUDA GPU) are replaced by
what it can do, each with a warning that says so — a config written for a GPU box (AutoTrain's published ones
ask for fp16/bf16 and int4) still validates and trains here instead of crashing inside torch or bitsandbytes.
The saved spec.yaml keeps what the user asked for, so the same file runs as written on a GPU."""
from __future__ import annotations

from ..data.issues import DataIssue
from ..spec import JobSpec
from .model_loading import use_cpu


def fit_to_hardware(spec: JobSpec) -> list[DataIssue]:
    """Adjust `spec` in place for a CPU-only run; returns one warning per setting changed."""
    tr = spec.training
    if tr.mixed_precision not in ("fp16", "bf16") and tr.quantization == "none":
        return []  # nothing to fit: no need to import torch to ask whether there is a GPU (validate stays quick)
    if not use_cpu(spec):
        return []
    warnings: list[DataIssue] = []
    if tr.mixed_precision in ("fp16", "bf16"):
        warnings.append(DataIssue(
            f"training.mixed_precision={tr.mixed_precision} needs a GPU; this run trains in fp32 on the CPU",
            fix="use mixed_precision: auto (bf16/fp16 on a GPU, fp32 on CPU)", severity="warning"))
        tr.mixed_precision = "no"
    if tr.quantization != "none":
        warnings.append(DataIssue(
            f"training.quantization={tr.quantization} needs a CUDA GPU (bitsandbytes); this run loads the base "
            "model unquantized and trains the LoRA adapter on full-precision weights",
            fix="use quantization: none on CPU; keep int4/int8 for GPU machines", severity="warning"))
        tr.quantization = "none"
    return warnings
