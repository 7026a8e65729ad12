"""The round-trip check's pass/warn thresholds per format (roundtrip.py judges; the README and cards state them)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    top1_pass: float      # at least this share of positions agree: pass
    top1_warn: float      # at least this: warn; below: fail
    kl_pass: float        # mean KL per token at most this: pass
    kl_warn: float
    same_stop_pass: float


# f16 must match the adapter as closely as rounding allows; the quantized files may drift (llama.cpp's own
# measurements put q4_K_M's mean KL at a few hundredths on 7B models) but must still stop where it stops.
THRESHOLDS: dict[str, Thresholds] = {
    "f32": Thresholds(0.99, 0.95, 0.001, 0.01, 1.0),
    "f16": Thresholds(0.99, 0.95, 0.01, 0.05, 1.0),
    "bf16": Thresholds(0.98, 0.93, 0.02, 0.1, 1.0),
    "q8_0": Thresholds(0.97, 0.90, 0.05, 0.2, 0.9),
    "q4_K_M": Thresholds(0.85, 0.70, 0.3, 1.0, 0.75),
}
