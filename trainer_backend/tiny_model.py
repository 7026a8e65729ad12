"""Build a tiny random-init Llama-style model + byte-level BPE tokenizer locally.

Used by the tests and by the offline demo: no download, a few seconds on CPU.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]

# Plain ChatML without {% generation %} markers: stands in for a typical Hub tokenizer's own template.
TOKENIZER_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_BUILTIN_CORPUS = (
    "The quick brown fox jumps over the lazy dog. What is the capital of France? The capital of France is Paris. "
    "Question: how many apples are left? Answer: 3 apples. ### Instruction: Write a short poem. ### Response: "
    "Roses are red. user assistant system Hello! How can I help you today? Thank you, goodbye. 0 1 2 3 4 5 6 7 8 9"
)


def build_tiny_model(out_dir: str | Path, corpus: Optional[Iterable[str]] = None, vocab_size: int = 1024,
                     hidden_size: int = 64, num_layers: int = 2, chat_template: Optional[str] = TOKENIZER_CHAT_TEMPLATE,
                     seed: int = 0, initializer_range: float = 0.1) -> Path:
    """Write a tiny causal LM + tokenizer to `out_dir` and return the path. Idempotent if already built."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = list(corpus) if corpus is not None else []
    tok.train_from_iterator(texts + [_BUILTIN_CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token=None,
                                   pad_token="<|pad|>", model_max_length=2048,
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    # A wider init than the usual 0.02: with tied 0.02-scale embeddings a 64-wide model's logits stay near
    # uniform whatever LoRA learns, so loss could not fall far enough to show learning.
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                         num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True, initializer_range=initializer_range,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [fast.eos_token_id, fast.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(out)
    return out
