"""GGUF files from a merged model or an adapter, with llama.cpp's own tools (llama_cpp.py).

Each step writes under a temporary name and renames, so a crash never leaves a half file under a real name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from .llama_cpp import CONVERTER_TYPES, QUANT_FTYPES, LlamaCppError, quantize, run_tool

LORA_TYPE = "f16"  # the LoRA GGUF's tensors: f16, as llama.cpp's own LoRA adapters are published


def gguf_name(stem: str, fmt: str) -> str:
    return f"{stem}-{fmt}.gguf"


def convert_model(model_dir: Path, dest: Path, outtype: str, log: Path) -> Path:
    """HF folder (safetensors + tokenizer) -> GGUF at `outtype` (f16, bf16, f32) with convert_hf_to_gguf.py."""
    if outtype not in CONVERTER_TYPES:
        raise ValueError(f"the converter writes {', '.join(CONVERTER_TYPES)}; quantize {outtype} from one of them")
    tmp = dest.with_name(f".{dest.name}.partial")
    run_tool("convert_hf_to_gguf.py", [str(model_dir), "--outtype", outtype, "--outfile", str(tmp)], log)
    os.replace(tmp, dest)
    return dest


def quantize_model(source: Path, dest: Path, quant: str) -> Path:
    if quant not in QUANT_FTYPES:
        raise ValueError(f"unknown quantization {quant}; llama.cpp's quantizer here makes {', '.join(QUANT_FTYPES)}")
    quantize(source, dest, quant)
    return dest


def convert_lora(adapter_dir: Path, base_dir: Path, dest: Path, log: Path) -> Path:
    """PEFT LoRA adapter -> LoRA GGUF for the base's GGUF, with convert_lora_to_gguf.py."""
    tmp = dest.with_name(f".{dest.name}.partial")
    run_tool("convert_lora_to_gguf.py", [str(adapter_dir), "--base", str(base_dir), "--outtype", LORA_TYPE,
                                         "--outfile", str(tmp)], log)
    os.replace(tmp, dest)
    return dest


def set_metadata(path: Path, log: Path, args: list[str]) -> None:
    """Rewrite a GGUF's metadata with gguf-py's gguf_new_metadata.py (a copy, then renamed over the original)."""
    tmp = path.with_name(f".{path.name}.partial")
    run_tool("gguf/scripts/gguf_new_metadata.py", [str(path), str(tmp), "--force", *args], log)
    os.replace(tmp, path)


def missing_stops(path: Path, tokenizer: Any, stop_ids: set[int]) -> list[str]:
    """The training stop tokens llama.cpp would not end generation at, read from the file's vocabulary."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        return [tokenizer.convert_ids_to_tokens(t) for t in sorted(stop_ids)
                if t < n_vocab and not llama_cpp.llama_vocab_is_eog(vocab, t)]
    finally:
        llm.close()


def fix_stops(path: Path, tokenizer: Any, stop_ids: set[int], end_of_turn: Optional[str], log: Path) -> list[str]:
    """Make llama.cpp stop where training stops: when the template's end-of-turn token is not an end-of-generation
    token in the file (the converter took EOS from the base's tokenizer), record it as the end-of-turn token
    (tokenizer.ggml.eot_token_id). Returns what it set, in words."""
    missing = missing_stops(path, tokenizer, stop_ids)
    if not missing:
        return []
    target = end_of_turn if end_of_turn in missing else missing[0]
    set_metadata(path, log, ["--special-token", "eot", target])
    return [f"set the end-of-turn token to {target} (llama.cpp would not have stopped at it)"]


def local_model_dir(base_model: str, revision: Optional[str], token: Optional[str]) -> Path:
    """The base model as a folder the converter can read: itself when it is one, else its Hub snapshot (config,
    tokenizer and safetensors only)."""
    folder = Path(base_model).expanduser()
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(base_model, revision=revision, token=token,
                                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja",
                                                      "tokenizer*"]))
    except Exception as err:  # noqa: BLE001 - the Hub's errors are many; the export says which base and why
        raise LlamaCppError(f"could not fetch the base model {base_model} for its GGUF: {err}") from err
