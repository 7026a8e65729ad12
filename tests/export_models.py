"""Tiny Llama- and Qwen-family models as their families publish them, for the export tests.

Each gets its family's architecture (LlamaForCausalLM / Qwen2ForCausalLM), its family's pre-tokenizer (the split
expression of Llama 3 / Qwen2 in front of byte-level BPE: what llama.cpp implements as llama-bpe / qwen2), its real
chat template from TRL's vendor set (llama3, qwen2_5) with the special tokens that template writes, and rows 256
wide, so llama.cpp's k-quants (q4_K_M: rows in blocks of 256) quantize it as they would a real model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from trainer_backend.export.pretokenizers import SPLIT_PATTERNS

FAMILIES = {
    # family: (TRL template, pre-tokenizer, special tokens: EOS first, then the template's markers)
    "llama": ("llama3", "llama-bpe", ["<|end_of_text|>", "<|begin_of_text|>", "<|start_header_id|>",
                                      "<|end_header_id|>", "<|eot_id|>", "<|pad|>"]),
    "qwen2": ("qwen2_5", "qwen2", ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]),
    # A person's own template whose end-of-turn token llama.cpp does not know by name: only the GGUF's metadata
    # can tell llama.cpp to stop there.
    "custom": ("custom", "qwen2", ["<|endoftext|>", "<|turn|>", "<|end_of_turn|>", "<|pad|>"]),
}
CUSTOM_TEMPLATE = (
    "{% for m in messages %}<|turn|>{{ m['role'] }}: {% if m['role'] == 'assistant' %}{% generation %}"
    "{{ m['content'] }}<|end_of_turn|>{% endgeneration %}{% else %}{{ m['content'] }}<|end_of_turn|>{% endif %}\n"
    "{% endfor %}{% if add_generation_prompt %}<|turn|>assistant: {% endif %}")
END_OF_TURN = {"llama": "<|eot_id|>", "qwen2": "<|im_end|>", "custom": "<|end_of_turn|>"}


def build_family_model(out: Path, family: str, corpus: Iterable[str], vocab_size: int = 600, seed: int = 0) -> Path:
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config,
                              Qwen2ForCausalLM)

    from trainer_backend.data.vendor_templates import trl_vendor_templates

    template_name, pre, specials = FAMILIES[family]
    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERNS[pre]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(corpus), trainer=trainer)
    bos = "<|begin_of_text|>" if family == "llama" else None
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=specials[0], bos_token=bos, pad_token="<|pad|>",
                                   model_max_length=2048)
    fast.chat_template = CUSTOM_TEMPLATE if family == "custom" else trl_vendor_templates()[template_name]
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    shape = dict(vocab_size=len(fast), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                 initializer_range=0.1, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                 bos_token_id=fast.bos_token_id)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**shape, tie_word_embeddings=False))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**shape, tie_word_embeddings=True))
    end_of_turn = fast.convert_tokens_to_ids(END_OF_TURN[family])
    model.generation_config.eos_token_id = [fast.eos_token_id, end_of_turn]
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(out)
    return out
