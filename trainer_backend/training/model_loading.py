"""The one place that loads tokenizers and base models, builds quantization and LoRA configs.

Training records how it loaded the base (`model_load_settings` -> adapter_meta.ModelLoad in lora_studio.json);
chat, compare, evaluate, merge and push load it through `load_model` with those settings, so what is served is
the model that was trained (same revision, dtype and quantization)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from ..access import check_hub_read, hub_token
from ..spec import JobSpec, ModelSpec
from .adapter_meta import ModelLoad

# Pad tokens to try before falling back to EOS (pad == eos hides the EOS in some collators).
_PAD_CANDIDATES = ("<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>", "<|endoftext|>", "<unk>")


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def use_cpu(spec: JobSpec) -> bool:
    return spec.training.use_cpu if spec.training.use_cpu is not None else not has_gpu()


def precision(spec: JobSpec) -> str:
    """'bf16' | 'fp16' | 'no' after resolving 'auto' against the hardware."""
    mp = spec.training.mixed_precision
    if mp != "auto":
        return mp
    if use_cpu(spec):
        return "no"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def compute_dtype(spec: JobSpec) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision(spec), torch.float32)


def hub_kwargs(model: ModelSpec | ModelLoad) -> dict[str, Any]:
    kw: dict[str, Any] = {"trust_remote_code": model.trust_remote_code}
    if model.revision:
        kw["revision"] = model.revision
    token = hub_token()  # in an app event: the caller's own (never the Space's for anyone but its owner)
    if token is None:
        token = os.environ.get("HF_TOKEN") or None  # the CLI, or a training process: its job's token
    if token is not None:
        kw["token"] = token
    if not Path(model.base_model).expanduser().is_dir():  # on a Space: may this caller read it (not the cache)?
        check_hub_read(model.base_model, "model", model.revision, token)
    return kw


def load_tokenizer(model: ModelSpec) -> Any:
    """Tokenizer ready for training: a pad token that is not EOS where possible, right padding."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model.base_model, **hub_kwargs(model))
    if tok.pad_token is None or tok.pad_token == tok.eos_token:
        vocab = tok.get_vocab()
        pad = next((t for t in _PAD_CANDIDATES if t in vocab and t != tok.eos_token), None)
        tok.pad_token = pad or tok.eos_token
    tok.padding_side = "right"
    return tok


def bnb_config(quantization: str, dtype: Any) -> Optional[Any]:
    """bitsandbytes config for int8/int4 (QLoRA: nf4, double quantization, compute in the training dtype)."""
    if quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=dtype)


def quantization_config(spec: JobSpec) -> Optional[Any]:
    return bnb_config(spec.training.quantization, compute_dtype(spec))


def model_load_settings(spec: JobSpec) -> ModelLoad:
    """How training loads the base, as recorded in the adapter's metadata for serving."""
    import json

    quant = quantization_config(spec)
    return ModelLoad(base_model=spec.model.base_model, revision=spec.model.revision,
                     trust_remote_code=spec.model.trust_remote_code,
                     dtype=str(compute_dtype(spec)).removeprefix("torch."), quantization=spec.training.quantization,
                     quantization_config=json.loads(quant.to_json_string(use_diff=False)) if quant is not None else None,
                     attn_implementation=attn_implementation(spec))


def serving_device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def load_model(load: ModelLoad, task: str = "causal", device: str = "cpu", **extra: Any) -> Any:
    """Load the base model as `load` says, on `device`. The only from_pretrained of a base model: training, chat,
    compare, evaluate, merge and push all come here. task: 'causal' or 'seq_cls' (reward models)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, BitsAndBytesConfig

    dtype = getattr(torch, load.dtype)
    kwargs: dict[str, Any] = {**hub_kwargs(load), "dtype": dtype, **extra}
    # the exact config training used; adapters from before it was recorded: the one training builds
    quant = BitsAndBytesConfig.from_dict(load.quantization_config) if load.quantization_config is not None \
        else bnb_config(load.quantization, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": device}  # bitsandbytes quantizes while placing the weights
    if load.attn_implementation:
        kwargs["attn_implementation"] = load.attn_implementation
    if task == "seq_cls":
        model = AutoModelForSequenceClassification.from_pretrained(load.base_model, num_labels=1, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(load.base_model, **kwargs)
    if quant is None and device != "cpu":
        model = model.to(device)
    return model


def load_base_config(load: ModelLoad, **extra: Any) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(load.base_model, **{**hub_kwargs(load), **extra})


def attn_implementation(spec: JobSpec) -> Optional[str]:
    choice = spec.model.attn_implementation
    if choice != "auto":
        return choice
    if not use_cpu(spec):
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def resolve_packing(spec: JobSpec) -> bool:
    """Packing when asked; by default for generic, and for sft only with flash-attention: its variable-length
    kernels make packed rows cheap, while SDPA/eager build a dense block mask over the whole packed row
    (docs/benchmarks.md: dynamic padding was 1.3-1.4x faster than packing on CPU)."""
    if spec.packing is not None:
        return spec.packing
    return attn_implementation(spec) == "flash_attention_2"


def load_base_model(spec: JobSpec, task: str = "causal", tokenizer: Any = None) -> Any:
    """Load the base model for training. task: 'causal' or 'seq_cls' (reward models)."""
    import torch

    load = model_load_settings(spec)
    gpu = torch.cuda.is_available() and not use_cpu(spec)
    model = load_model(load, task, f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if gpu else "cpu")
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if load.quantization != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=spec.training.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    return model


def lora_config(spec: JobSpec, task_type: str = "CAUSAL_LM") -> Optional[Any]:
    if not spec.lora.enabled:
        return None
    from peft import LoraConfig

    lo = spec.lora
    return LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_list(),
                      use_dora=lo.use_dora, use_rslora=lo.use_rslora, bias="none", task_type=task_type,
                      modules_to_save=["score"] if task_type == "SEQ_CLS" else None)
