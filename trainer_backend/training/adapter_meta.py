"""How an adapter was trained (`adapter/lora_studio.json`), typed, read and written only here.

`model_load` records how the base model was loaded for training (revision, trust_remote_code, dtype, the exact
quantization config): chat, compare, evaluate, merge and push load the base with the same settings
(training/model_loading.load_model), so a QLoRA adapter is served on the base it was trained on.

Pure pydantic: the hub and the UI read it without importing torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ..job_files import META_FILE
from ..spec import PromptTemplate


class ModelLoad(BaseModel):
    """Everything `from_pretrained` needs to load the base exactly as training did."""
    model_config = ConfigDict(extra="ignore")

    base_model: str
    revision: Optional[str] = None
    trust_remote_code: bool = False
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    quantization: Literal["none", "int8", "int4"] = "none"
    quantization_config: Optional[dict[str, Any]] = None  # BitsAndBytesConfig.to_dict() as trained
    attn_implementation: Optional[str] = None

    def unquantized(self, dtype: str) -> "ModelLoad":
        """The same base, same revision, in full precision (merging into 4/8-bit weights would round the adapter
        away)."""
        return self.model_copy(update={"quantization": "none", "quantization_config": None, "dtype": dtype})


class AdapterMeta(BaseModel):
    model_config = ConfigDict(extra="ignore")  # files written by older versions still load

    base_model: str
    trainer: str = "sft"
    chat_template: Optional[str] = None          # the data.chat_template setting (tokenizer, chatml, none...)
    chat_template_source: Optional[str] = None   # which template text trained (the dataset report's line)
    end_of_turn: Optional[str] = None
    prompt_template: Optional[PromptTemplate] = None  # data.prompt_template as trained (preset unresolved)
    lora: bool = True
    quantization: Literal["none", "int8", "int4"] = "none"
    format: Optional[str] = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    model_load: Optional[ModelLoad] = None       # None in adapters trained before it was recorded
    adapter_dtype: Optional[str] = None          # the adapter weights' dtype in training (bf16 for TRL's QLoRA)

    def load_settings(self) -> ModelLoad:
        """How to load the base: as recorded, or (older adapters) the same base and quantization with defaults."""
        if self.model_load is not None:
            return self.model_load
        return ModelLoad(base_model=self.base_model, quantization=self.quantization)

    def prompt_parts(self) -> Optional[PromptTemplate]:
        """The prompt template that trained, with a preset's text filled in (as data/templates.py renders it)."""
        tpl = self.prompt_template
        if tpl is None or tpl.preset is None:
            return tpl
        from ..data.templates import PROMPT_PRESETS  # here: the data package is not needed to read the file

        return tpl.filled_from(PROMPT_PRESETS[tpl.preset])

    def single_turn_prompt(self) -> Optional[str]:
        """The prompt part a one-message chat fills (every placeholder takes the message), or None without a
        prompt template. Only the message is given, so the variant for empty extra columns applies."""
        parts = self.prompt_parts()
        return (parts.prompt_if_empty or parts.prompt) if parts else None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def read_adapter_meta(adapter_dir: str | Path) -> Optional[AdapterMeta]:
    """The adapter's metadata, or None when the folder has none (an adapter not made by LoRA Studio)."""
    path = Path(adapter_dir) / META_FILE
    if not path.is_file():
        return None
    return AdapterMeta.model_validate(json.loads(path.read_text(encoding="utf-8")))


def write_adapter_meta(adapter_dir: str | Path, meta: AdapterMeta) -> None:
    (Path(adapter_dir) / META_FILE).write_text(json.dumps(meta.to_dict(), indent=2), encoding="utf-8")
