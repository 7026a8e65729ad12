"""How big is a base model, and will it fit this machine's GPU with the chosen quantization? (An estimate.)"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

BYTES_PER_PARAM = {"none": 2.0, "int8": 1.0, "int4": 0.55}  # bf16 weights; nf4 + double-quant overhead


@dataclass
class ModelFit:
    model: str
    parameters: Optional[int]
    quantization: str
    weights_gib: Optional[float]
    estimated_gib: Optional[float]   # weights + LoRA/optimizer + activations headroom
    gpu: Optional[str]
    gpu_gib: Optional[float]
    fits: Optional[bool]
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        if self.parameters is None:
            return f"**{self.model}**: size unknown ({self.note})"
        size = f"{self.parameters / 1e9:.2f} B" if self.parameters >= 1e8 else f"{self.parameters / 1e6:.2f} M"
        where = f"{self.gpu} ({self.gpu_gib:.0f} GiB)" if self.gpu else "no GPU detected (CPU training is slow)"
        verdict = "" if self.fits is None else (" — fits" if self.fits else " — likely does NOT fit")
        return (f"**{self.model}**: {size} parameters; ~{self.estimated_gib:.1f} GiB to train with "
                f"quantization={self.quantization} on {where}{verdict}. {self.note}")


def count_parameters(model_id: str, revision: Optional[str] = None) -> tuple[Optional[int], str]:
    """Parameter count from safetensors metadata (local folder or Hub) without loading weights."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        total = 0
        for index in path.glob("*.safetensors.index.json"):
            meta = json.loads(index.read_text()).get("metadata", {})
            if "total_parameters" in meta:
                return int(meta["total_parameters"]), "from the checkpoint index"
        from safetensors import safe_open

        files = sorted(path.glob("*.safetensors"))
        for f in files:
            with safe_open(str(f), framework="pt") as st:
                for key in st.keys():
                    shape = st.get_slice(key).get_shape()
                    n = 1
                    for d in shape:
                        n *= d
                    total += n
        return (total, "counted from local weights") if files else (None, "no safetensors files found")
    try:
        from huggingface_hub import HfApi

        from .access import hub_token

        token = hub_token()  # the caller's own in the app (a member's private repo, never the owner's)
        info = HfApi(endpoint=os.environ.get("HF_ENDPOINT")).model_info(model_id, revision=revision,
                                                                         expand=["safetensors"], token=token)
        if info.safetensors and info.safetensors.total:
            return int(info.safetensors.total), "from the Hub's safetensors metadata"
        return None, "the Hub has no safetensors metadata for this repo"
    except Exception as exc:  # offline, gated, missing: the estimate is optional, say why
        return None, f"could not read model info ({type(exc).__name__})"


def gpu_memory() -> tuple[Optional[str], Optional[float]]:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory / 2**30
    except Exception:
        pass
    return None, None


def estimate_fit(model_id: str, quantization: str = "none", lora: bool = True,
                 revision: Optional[str] = None) -> ModelFit:
    params, note = count_parameters(model_id, revision)
    gpu, gpu_gib = gpu_memory()
    if params is None:
        return ModelFit(model_id, None, quantization, None, None, gpu, gpu_gib, None, note)
    weights = params * BYTES_PER_PARAM.get(quantization, 2.0) / 2**30
    # LoRA: adapters + optimizer are small; activations with checkpointing ~ 20-40% of bf16 weights at 2k ctx.
    # Full fine-tuning: fp32 master weights + Adam moments ~ 16 bytes/param.
    estimate = weights * 1.3 + 1.0 if lora else params * 16 / 2**30 + weights * 0.3
    fits = None if gpu_gib is None else estimate <= gpu_gib * 0.95
    return ModelFit(model_id, params, quantization, round(weights, 2), round(estimate, 2), gpu, gpu_gib, fits, note)
