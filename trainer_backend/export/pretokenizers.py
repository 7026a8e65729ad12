"""Which llama.cpp pre-tokenizer a tokenizer.json uses, read from its configuration.

llama.cpp's converter names a BPE tokenizer's pre-tokenizer by hashing the token ids of a test string and looking
the hash up in a table of published models; any other vocabulary (a tokenizer a person trained or extended
themselves, or a newer release of a known family) stops the conversion with "BPE pre-tokenizer was not
recognized". The pre-tokenizer is the regular expression that splits text before BPE runs, and the tokenizer
file states it: when it is, word for word, the split of a family llama.cpp implements, that family's name is right
whatever the vocabulary. The export's round-trip check still compares the token ids of every held-out prompt, so
a wrong name could not pass unnoticed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
# The split patterns as Hugging Face tokenizer files write them, with the name llama.cpp gives each
# (src/llama-vocab.cpp implements the same expressions). The first matching entry wins.
SPLIT_PATTERNS: dict[str, str] = {
    "llama-bpe": _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}
# GPT-2's byte-level pre-tokenizer with its built-in expression (ByteLevel use_regex=True, no prefix space).
GPT2 = "gpt-2"


def _steps(pre: Optional[dict[str, Any]]) -> list[dict[str, Any]]:
    if not pre:
        return []
    return list(pre.get("pretokenizers") or []) if pre.get("type") == "Sequence" else [pre]


def _split_pattern(step: dict[str, Any]) -> Optional[str]:
    pattern = step.get("pattern") or {}
    return pattern.get("Regex") if step.get("type") == "Split" and not step.get("invert") else None


def pretokenizer_name(tokenizer_json: str | Path) -> Optional[str]:
    """llama.cpp's name for the file's pre-tokenizer, or None when it is not one llama.cpp implements."""
    try:
        config = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    bpe_model = config.get("model") or {}
    if bpe_model.get("type") != "BPE":
        return None
    steps = _steps(config.get("pre_tokenizer"))
    byte_level = [s for s in steps if s.get("type") == "ByteLevel"]
    if len(byte_level) != 1 or byte_level[0].get("add_prefix_space"):
        return None
    if len(steps) == 1:  # ByteLevel alone: its own expression unless switched off
        return GPT2 if byte_level[0].get("use_regex", True) else None
    if len(steps) != 2 or steps[1] is not byte_level[0] or byte_level[0].get("use_regex", True):
        return None
    pattern = _split_pattern(steps[0])
    return next((name for name, known in SPLIT_PATTERNS.items() if pattern == known), None)
