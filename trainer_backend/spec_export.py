"""What an export of a finished job makes: merged weights, GGUF files, a LoRA GGUF adapter, an Ollama Modelfile.

The same section drives the Jobs tab's Export form, `python -m trainer_backend export JOB --formats ...`, the
/export_job endpoint and a spec's `export:` block (which exports right after training, before the push).
"""
from __future__ import annotations

from typing import Literal, Optional

from .spec_base import _f, _Section

ExportFormat = Literal["merged", "f16", "bf16", "q8_0", "q4_K_M", "lora_gguf", "modelfile"]
EXPORT_FORMATS: tuple[str, ...] = ("merged", "f16", "bf16", "q8_0", "q4_K_M", "lora_gguf", "modelfile")
GGUF_FORMATS: tuple[str, ...] = ("f16", "bf16", "q8_0", "q4_K_M")  # whole-model GGUF files, one per format
MergedDtype = Literal["auto", "float16", "bfloat16", "float32"]
GgufRepo = Literal["separate", "same"]


class ExportSpec(_Section):
    formats: list[ExportFormat] = _f(
        [], "What to make: merged safetensors, GGUF files (f16, bf16, q8_0, q4_K_M; one load, several files), a LoRA "
            "GGUF adapter for the base's GGUF, an Ollama Modelfile. Each GGUF is checked against the adapter it came "
            "from (tokens, greedy answers, stop token). In a job spec: exported right after training (empty: "
            "nothing).", "basic", label="Export formats")
    merged_dtype: MergedDtype = _f("auto", "dtype of the merged safetensors (auto: the base's own).",
                                   label="Merged weights dtype")
    check_prompts: int = _f(8, "Held-out prompts the round-trip check compares the GGUF with the adapter on.",
                            ge=1, le=64, label="Check prompts")
    check_tokens: int = _f(32, "Greedy tokens compared per prompt.", ge=4, le=256, label="Check tokens per prompt")
    gguf_repo: GgufRepo = _f("separate", "Where a push puts GGUF files: a '<repo>-GGUF' repo (what llama.cpp, "
                                         "LM Studio and Ollama users look for) or the adapter's own repo.",
                             label="GGUF files go to")
    system_prompt: Optional[str] = _f(None, "System prompt the Modelfile sets (default: the one the job trained "
                                            "with, if any).", label="Modelfile system prompt")

