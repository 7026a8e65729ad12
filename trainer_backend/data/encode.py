"""Canonical examples -> token ids + labels (-100 where no loss), with length limits applied.

The training string is built once, here, and used both for training and for the dataset report, so what
the report shows is exactly what the model sees.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .chat_render import render_chat

IGNORE = -100


@dataclass
class EncodeSettings:
    kind: str                      # canonical kind: text | pair | messages | preference | tokenized | template
    chat_template: Optional[str]   # Jinja source, or None for plain text
    completion_only_loss: bool
    block_size: int
    too_long: str = "truncate"     # truncate | drop
    max_prompt_length: Optional[int] = None
    max_completion_length: Optional[int] = None
    cap_length: bool = True        # False for generic (continued pre-training chunks the stream itself)


@dataclass
class Encoded:
    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    source_index: list[int] = field(default_factory=list)   # index into the normalised rows
    full_lengths: list[int] = field(default_factory=list)   # length before any truncation, per input row
    truncated: int = 0
    dropped_too_long: int = 0
    dropped_no_loss: int = 0
    history_turns: int = 0  # assistant turns kept as untrained context (chat_render.py says why)


def _as_messages(example: dict) -> list[dict]:
    if "messages" in example:
        return example["messages"]
    if "chosen" in example:  # preference rows are shown/measured as prompt + chosen
        return example["prompt"] + example["chosen"]
    msgs = [{"role": "system", "content": example["system"]}] if example.get("system") else []
    return msgs + [{"role": "user", "content": example["prompt"]}, {"role": "assistant", "content": example["completion"]}]


def plan_text(example: dict, tokenizer: Any, s: EncodeSettings) -> tuple[str, list[tuple[int, int]]]:
    """The exact training string and the character spans that carry loss."""
    text, spans, _ = plan_chat_text(example, tokenizer, s)
    return text, spans


def plan_chat_text(example: dict, tokenizer: Any, s: EncodeSettings) -> tuple[str, list[tuple[int, int]], int]:
    """plan_text, plus how many assistant turns the template keeps as untrained history."""
    eos = tokenizer.eos_token or ""
    history_turns = 0
    if s.kind == "text":
        text, spans = example["text"], [(0, len(example["text"]))]
    elif s.chat_template is not None and s.kind != "template":
        chat = render_chat(tokenizer, s.chat_template, _as_messages(example))
        text, spans, history_turns = chat.text, chat.spans, chat.history_turns
    else:  # prompt/completion as plain text (prompt template, or chat_template: none)
        prompt, completion = example["prompt"], example["completion"]
        if example.get("system") and s.kind != "template":
            prompt = f"{example['system']}\n\n{prompt}"
        if s.chat_template is None and s.kind == "pair" and not prompt.endswith(("\n", " ")) \
                and not completion.startswith((" ", "\n")):
            prompt += "\n"
        text, spans = prompt + completion, [(len(prompt), len(prompt) + len(completion))]
    if not s.completion_only_loss or s.kind == "text":
        spans = [(0, len(text))]
    if eos and not text.rstrip().endswith(eos):  # EOS exactly once, and trained, so generation stops
        spans = spans + [(len(text), len(text) + len(eos))]
        text += eos
    bos = getattr(tokenizer, "bos_token", None)
    if bos and s.chat_template is None and getattr(tokenizer, "add_bos_token", True) and not text.startswith(bos):
        text, spans = bos + text, [(a + len(bos), b + len(bos)) for a, b in spans]
    return text, spans, history_turns


def _labels(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    arr = np.asarray(ids, dtype=np.int64)
    if not offsets:
        return arr.tolist()
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    keep = np.zeros(len(ids), dtype=bool)
    for a, b in spans:
        keep |= (off[:, 1] > a) & (off[:, 0] < b)
    return np.where(keep, arr, IGNORE).tolist()


def tokenize_plans(texts: list[str], spans: list[list[tuple[int, int]]], tokenizer: Any) -> tuple[list, list]:
    if not texts:  # every row was rejected (reported by the caller); the fast tokenizer fails on an empty batch
        return [], []
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids = enc["input_ids"]
        return ids, [_labels(i, o, sp) for i, o, sp in zip(ids, enc["offset_mapping"], spans)]
    # Slow tokenizers have no offsets: tokenise span by span (boundaries may differ slightly).
    all_ids, all_labels = [], []
    for text, sp in zip(texts, spans):
        cuts = sorted({0, len(text), *[p for ab in sp for p in ab]})
        ids, labels = [], []
        for a, b in zip(cuts, cuts[1:]):
            piece = tokenizer(text[a:b], add_special_tokens=False, verbose=False)["input_ids"]
            trainable = any(x <= a and b <= y for x, y in sp)
            ids += piece
            labels += piece if trainable else [IGNORE] * len(piece)
        all_ids.append(ids)
        all_labels.append(labels)
    return all_ids, all_labels


def apply_limits(ids: list[int], labels: list[int], s: EncodeSettings) -> tuple[Optional[list], Optional[list], str]:
    """Apply prompt/completion/block limits. Returns (ids, labels, outcome) with outcome in
    ok | truncated | dropped_too_long | dropped_no_loss."""
    outcome = "ok"
    first = next((i for i, l in enumerate(labels) if l != IGNORE), None)
    if first is None:
        return None, None, "dropped_no_loss"
    if s.max_prompt_length and first > s.max_prompt_length:
        cut = first - s.max_prompt_length
        ids, labels, first, outcome = ids[cut:], labels[cut:], s.max_prompt_length, "truncated"
    if s.max_completion_length and len(ids) - first > s.max_completion_length:
        end = first + s.max_completion_length
        ids, labels, outcome = ids[:end], labels[:end], "truncated"
    if s.cap_length and len(ids) > s.block_size:
        if s.too_long == "drop":
            return None, None, "dropped_too_long"
        ids, labels, outcome = ids[: s.block_size], labels[: s.block_size], "truncated"
    if all(l == IGNORE for l in labels):
        return None, None, "dropped_no_loss"
    return ids, labels, outcome


def encode_examples(examples: list[dict], tokenizer: Any, s: EncodeSettings,
                    on_error: Any = None) -> Encoded:
    """Encode canonical examples. `on_error(index, RowError)` receives rows the template rejects."""
    from .issues import RowError

    out = Encoded()
    if s.kind == "tokenized":
        for i, ex in enumerate(examples):
            ids, labels = ex["input_ids"], ex.get("labels") or list(ex["input_ids"])
            out.full_lengths.append(len(ids))
            ids, labels, outcome = apply_limits(ids, labels, s)
            _record(out, i, ids, labels, outcome)
        return out
    texts, spans, index = [], [], []
    for i, ex in enumerate(examples):
        try:
            t, sp, history_turns = plan_chat_text(ex, tokenizer, s)
        except RowError as exc:
            if on_error is None:
                raise
            on_error(i, exc)
            continue
        out.history_turns += history_turns
        texts.append(t)
        spans.append(sp)
        index.append(i)
    all_ids, all_labels = tokenize_plans(texts, spans, tokenizer)
    for i, ids, labels in zip(index, all_ids, all_labels):
        out.full_lengths.append(len(ids))
        ids, labels, outcome = apply_limits(ids, labels, s)
        _record(out, i, ids, labels, outcome)
    return out


def _record(out: Encoded, i: int, ids: Optional[list], labels: Optional[list], outcome: str) -> None:
    if ids is None:
        setattr(out, outcome, getattr(out, outcome) + 1)
        return
    out.truncated += outcome == "truncated"
    out.input_ids.append(ids)
    out.labels.append(labels)
    out.source_index.append(i)


def render_masked(ids: list[int], labels: list[int], tokenizer: Any, open_mark: str = "[[no loss: ",
                  close_mark: str = "]]") -> str:
    """Decode a training example, wrapping the spans that carry no loss in markers."""
    parts: list[str] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or (labels[i] == IGNORE) != (labels[start] == IGNORE):
            text = tokenizer.decode(ids[start:i], skip_special_tokens=False)
            parts.append(f"{open_mark}{text}{close_mark}" if labels[start] == IGNORE else text)
            start = i
    return "".join(parts)
