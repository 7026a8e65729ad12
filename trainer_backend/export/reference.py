"""What the trained model does on held-out prompts: the reference every exported file is compared with.

Computed once per export from base + adapter (PEFT, unmerged, in full precision) before the merge: each prompt's
text and token ids exactly as training rendered them (inference.render_prompt, the path Chat uses), the greedy
answer for the first N tokens and where it stops, and the log-probabilities at each of those positions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..inference import render_prompt
from ..training.adapter_meta import AdapterMeta

# Used beside (or instead of) held-out rows: short turns that reach the tokenizer's corners (digits, unicode,
# whitespace runs, code, an earlier turn) so a tokenizer mismatch shows even when the held-out rows are plain.
PROBE_CONVERSATIONS: list[list[dict]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Add 1234 and 56.78, then explain   the steps.\n\n- one\n- two"}],
    [{"role": "user", "content": "Traduis « bonjour » en 日本語 and say 😀 back."}],
    [{"role": "user", "content": "Write a Python function:\n```python\ndef f(x):\n\treturn x ** 2\n```"}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a short story about a fox."}],
    [{"role": "user", "content": "I've been told he's there; 'RE you sure? We'Ve a'lL"}],
]


@dataclass
class PromptReference:
    messages: list[dict]
    text: str                    # the rendered prompt, as training rendered it
    add_special: bool            # whether the tokenizer adds its special tokens (BOS) to `text`
    ids: list[int]               # the prompt's token ids as the model saw them in training
    answer: list[int]            # greedy continuation (at most N tokens; ends with the stop token when it stopped)
    stop: Optional[int]          # the end-of-turn / EOS token the answer stopped at, None if it ran N tokens
    logprobs: Any = field(repr=False, default=None)  # float32 [len(answer), vocab]: next-token log-probs


@dataclass
class Reference:
    prompts: list[PromptReference]
    stop_ids: set[int]           # every token that ends an answer for this job (end-of-turn, EOS)
    end_of_turn: Optional[str]   # the template's end-of-turn string (meta.end_of_turn)
    vocab_size: int
    max_tokens: int              # the answer budget N


def held_out_conversations(job_dir: Path, limit: int, system_prompt: Optional[str] = None) -> list[list[dict]]:
    """Prompts (conversations up to the last user turn) from the job's validation split, then the probes (with the
    system prompt training added to conversations that had none)."""
    rows: list[list[dict]] = []
    try:
        from ..evaluation.heldout import held_out_prompts

        rows = held_out_prompts(job_dir, limit)
    except Exception:  # noqa: BLE001 - no spec, no validation split, data gone: the probes still check the file
        rows = []
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return (rows + [system + probe for probe in PROBE_CONVERSATIONS])[:max(limit, 1)]


def stop_token_ids(tokenizer: Any, model: Any, meta: AdapterMeta) -> set[int]:
    ids: set[int] = set()
    if meta.end_of_turn:
        found = tokenizer.convert_tokens_to_ids(meta.end_of_turn)
        if isinstance(found, int) and found != tokenizer.unk_token_id:
            ids.add(found)
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def build_reference(model: Any, tokenizer: Any, meta: AdapterMeta, conversations: list[list[dict]],
                    max_tokens: int) -> Reference:
    """Greedy answers and per-position log-probs of `model` (base + adapter) on each conversation."""
    import torch
    from transformers import GenerationConfig

    stops = stop_token_ids(tokenizer, model, meta)
    prompts = []
    for messages in conversations:
        text, add_special = render_prompt(tokenizer, meta, messages)
        ids = tokenizer(text, add_special_tokens=add_special)["input_ids"]
        prompt = torch.tensor([ids], device=model.device)
        config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, eos_token_id=sorted(stops),
                                  pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                  else sorted(stops)[0])
        with torch.no_grad():
            out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), generation_config=config)
            answer = [int(t) for t in out[0, len(ids):]]
            full = model(input_ids=out).logits[0, len(ids) - 1:-1].float().cpu()
        logprobs = torch.log_softmax(full, dim=-1).numpy()
        stop = answer[-1] if answer and answer[-1] in stops else None
        prompts.append(PromptReference(messages, text, add_special, ids, answer, stop, logprobs))
    return Reference(prompts, stops, meta.end_of_turn, int(model.config.vocab_size), max_tokens)
