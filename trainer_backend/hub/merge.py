"""Merge a LoRA adapter into its base model, checked: the merged model must give the same logits as base+adapter.

The base is loaded through the one loader (training/model_loading.load_model) with the revision and
trust_remote_code training recorded, in full precision (float32, or bfloat16 when that is its own dtype), never
quantized, whatever the training used: merging into 4/8-bit weights would round the adapter away. A base
checkpoint that is itself quantized (GPTQ, AWQ, bnb) cannot be merged into and is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..trainer_registry import trainer_info
from ..training.adapter_meta import AdapterMeta, read_adapter_meta
from .client import HubError
from .pull import resolve_base_model

SAMPLE_MESSAGES = [{"role": "user", "content": "Hello! Can you tell me what 2 + 2 is?"}]
# Allowed max |logit difference|, relative to the largest logit (at least 1).
TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 1e-2}


@dataclass(frozen=True)
class MergeReport:
    base_model: str
    dtype: str
    max_abs_diff: float
    tolerance: float


@dataclass
class LoadedAdapter:
    """Base + adapter loaded for merging (PEFT model, eval mode), in the dtype the merge runs in."""
    model: Any
    tokenizer: Any
    meta: AdapterMeta
    base_model: str
    dtype: str           # float32, or bfloat16 when that is the base's own dtype
    saved_dtype: str     # what the merged weights are written in: the base's own on-disk dtype


def load_for_merge(adapter_dir: str | Path, base_model: Optional[str] = None, token: Optional[str] = None,
                   trust_remote_code: bool = False) -> LoadedAdapter:
    """The base (never quantized, in full precision) with the adapter attached, ready for `merge_loaded`."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from ..training.model_loading import load_base_config, load_model

    adapter_dir = Path(adapter_dir)
    base = base_model or resolve_base_model(adapter_dir)
    meta = read_adapter_meta(adapter_dir) or AdapterMeta(base_model=base)
    trained = meta.load_settings()
    load = trained.model_copy(update={"base_model": base,
                                      "trust_remote_code": trained.trust_remote_code or trust_remote_code})
    extra: dict[str, Any] = {"token": token} if token else {}
    config = load_base_config(load, **extra)
    if getattr(config, "quantization_config", None):
        raise HubError(f"cannot merge into {base}: the checkpoint itself is quantized; merge into a full-precision "
                       "copy of the base instead")
    own = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None))
    dtype = torch.bfloat16 if own.endswith("bfloat16") else torch.float32
    name = str(dtype).removeprefix("torch.")
    model = load_model(load.unquantized(name), trainer_info(meta.trainer).head, **extra)
    model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False).eval()
    saved = "float16" if own.endswith("float16") and not own.endswith("bfloat16") else name
    return LoadedAdapter(model, AutoTokenizer.from_pretrained(str(adapter_dir)), meta, base, name, saved)


def merge_loaded(loaded: LoadedAdapter, out_dir: str | Path, save_dtype: Optional[str] = None) -> MergeReport:
    """Merge in place, check the merged logits against base+adapter, save safetensors + tokenizer to `out_dir`
    (in `save_dtype`, default the base's own); raise HubError if the logits differ. `loaded` is merged after."""
    import torch

    model, name = loaded.model, loaded.dtype
    inputs = _sample_inputs(loaded.tokenizer)
    with torch.no_grad():
        expected = model(**inputs).logits.float()
        merged = model.merge_and_unload()
        got = merged(**inputs).logits.float()
    diff = float((expected - got).abs().max())
    tolerance = TOLERANCE[name] * max(1.0, float(expected.abs().max()))
    if not diff <= tolerance:  # also catches NaN
        raise HubError(f"merged model does not match base+adapter (max |logit diff| {diff:.3g} > {tolerance:.3g} in "
                       f"{name}); the adapter was not pushed merged — push the adapter alone")
    target = save_dtype or loaded.saved_dtype
    if target != name:
        merged = merged.to(getattr(torch, target))  # the check ran in full precision
    merged.save_pretrained(str(out_dir))
    loaded.tokenizer.save_pretrained(str(out_dir))
    loaded.model = merged
    return MergeReport(loaded.base_model, name, diff, tolerance)


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_model: Optional[str] = None,
                  token: Optional[str] = None, trust_remote_code: bool = False) -> MergeReport:
    """Write base+adapter merged (safetensors + tokenizer) to `out_dir`; raise HubError if the logits differ."""
    return merge_loaded(load_for_merge(adapter_dir, base_model, token, trust_remote_code), out_dir)


def _sample_inputs(tokenizer: Any) -> dict[str, Any]:
    if getattr(tokenizer, "chat_template", None):
        try:
            out = tokenizer.apply_chat_template(SAMPLE_MESSAGES, add_generation_prompt=True, return_dict=True,
                                                return_tensors="pt")
            return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}
        except Exception:  # noqa: BLE001 - a template that needs other roles: plain text is as good a probe
            pass
    return dict(tokenizer(SAMPLE_MESSAGES[0]["content"], return_tensors="pt"))
