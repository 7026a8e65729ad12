"""Canonical examples -> token ids + labels (-100 where no loss), with length limits applied.

The training string is built once, here, and used both for training and for the dataset report, so what
the report shows is exactly what the model sees. Token work is columnar: a chunk of examples is tokenised in one
batch and its ids, labels and limits are computed on flat numpy arrays, so no per-token Python object is made
on the way to the Arrow shards (`EncodedColumns`); `encode_examples` gives the same result as Python lists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Callable, Optional

import numpy as np

from .chat_render import ChatRenderer, render_chat

IGNORE = -100

# What became of one normalised example (an Arrow shard stores it per record; the report counts them).
OK, TRUNCATED, DROPPED_TOO_LONG, DROPPED_NO_LOSS, FAILED = range(5)
KEPT = (OK, TRUNCATED)


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
class EncodedColumns:
    """One chunk, columnar. Per example (aligned with the input): outcome, full length (-1 when the template
    rejected it), assistant turns kept as history. Per kept example: its ids/labels as slices of flat arrays."""
    outcome: np.ndarray        # int8
    full_length: np.ndarray    # int32
    history: np.ndarray        # int16
    ids: np.ndarray            # int32, the kept examples' tokens back to back
    labels: np.ndarray         # int32
    offsets: np.ndarray        # int32, len(examples) + 1: example i is ids[offsets[i]:offsets[i + 1]] (empty if dropped)


@dataclass
class EncodedRows:
    """Rows kept as the texts (or ids) a TRL trainer tokenises itself: preference pairs, KTO feedback, GRPO prompts.
    Per example (aligned with the input): outcome and length in tokens before limits (-1 when it failed)."""
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)  # example index -> its training columns (kept only)
    outcomes: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def failed(self) -> None:
        self.outcomes.append(FAILED)
        self.lengths.append(-1)


@dataclass
class Encoded:
    """The same as Python lists (tests, small callers)."""
    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    source_index: list[int] = field(default_factory=list)   # index into the normalised rows
    full_lengths: list[int] = field(default_factory=list)   # length before any truncation, per tokenised row
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


def plan_chat_text(example: dict, tokenizer: Any, s: EncodeSettings,
                   renderer: Optional[ChatRenderer] = None) -> tuple[str, list[tuple[int, int]], int]:
    """plan_text, plus how many assistant turns the template keeps as untrained history. `renderer`: the
    settings' chat template for this tokenizer, reused over a chunk."""
    eos = tokenizer.eos_token or ""
    history_turns = 0
    chat_rendered, bare_answer = s.chat_template is not None and s.kind not in ("text", "template"), False
    if s.kind == "text":
        text, spans = example["text"], [(0, len(example["text"]))]
    elif chat_rendered:
        assert s.chat_template is not None
        chat = render_chat(tokenizer, s.chat_template, _as_messages(example), renderer, example.get("tools"),
                           example.get("train_from", 0))
        text, spans, history_turns = chat.text, chat.spans, chat.history_turns
        bare_answer = chat.bare_answer
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
    # Trained to stop: a chat template ends each answer with its own end-of-turn marker, which is trained and is
    # what generation stops at; EOS is added only after an answer the template leaves bare. Plain text gets EOS
    # exactly once.
    if eos and (bare_answer if chat_rendered else not text.rstrip().endswith(eos)):
        spans = spans + [(len(text), len(text) + len(eos))]
        text += eos
    bos = getattr(tokenizer, "bos_token", None)
    if bos and s.chat_template is None and getattr(tokenizer, "add_bos_token", True) and not text.startswith(bos):
        text, spans = bos + text, [(a + len(bos), b + len(bos)) for a, b in spans]
    return text, spans, history_turns


def _flat(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged lists -> (values, bounds) with row r = values[bounds[r]:bounds[r + 1]]."""
    bounds = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lists], out=bounds[1:])
    values = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(bounds[-1]))
    return values, bounds


def tokenize_plans(texts: list[str], spans: list[list[tuple[int, int]]],
                   tokenizer: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, labels, bounds) flat: a token carries loss when its characters overlap a span."""
    if not texts:  # every row was rejected (reported by the caller); the fast tokenizer fails on an empty batch
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(1, np.int64)
    if getattr(tokenizer, "is_fast", False):
        # One call through the tokenizer sets the backend as a plain call would (no truncation, no padding,
        # its special-token splitting); the backend then encodes without building a dict per row.
        tokenizer(texts[:1], add_special_tokens=False, verbose=False)
        encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e) for e in encodings), dtype=np.int64, count=len(encodings))
        bounds = np.zeros(len(encodings) + 1, dtype=np.int64)
        np.cumsum(lengths, out=bounds[1:])
        total = int(bounds[-1])
        # straight from the encodings into numpy (no per-row lists kept): this is most of the cost after encoding
        ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=total)
        pairs = chain.from_iterable(chain.from_iterable(e.offsets for e in encodings))
        offsets = np.fromiter(pairs, dtype=np.int64, count=2 * total)
        starts, ends = offsets[0::2], offsets[1::2]
        keep = np.zeros(total, dtype=bool)
        width = max(len(sp) for sp in spans)
        table = np.zeros((len(texts), max(width, 1), 2), dtype=np.int64)  # (0, 0) pads: overlaps nothing
        for r, sp in enumerate(spans):
            if sp:
                table[r, : len(sp)] = sp
        for k in range(width):
            span_start, span_end = np.repeat(table[:, k, 0], lengths), np.repeat(table[:, k, 1], lengths)
            keep |= (ends > span_start) & (starts < span_end)
        return ids, np.where(keep, ids, IGNORE), bounds
    # Slow tokenizers have no offsets: tokenise span by span (boundaries may differ slightly).
    all_ids, all_labels = [], []
    for text, sp in zip(texts, spans):
        cuts = sorted({0, len(text), *[p for ab in sp for p in ab]})
        row_ids: list[int] = []
        row_labels: list[int] = []
        for a, b in zip(cuts, cuts[1:]):
            piece = tokenizer(text[a:b], add_special_tokens=False, verbose=False)["input_ids"]
            trainable = any(x <= a and b <= y for x, y in sp)
            row_ids += piece
            row_labels += piece if trainable else [IGNORE] * len(piece)
        all_ids.append(row_ids)
        all_labels.append(row_labels)
    ids, bounds = _flat(all_ids)
    return ids, _flat(all_labels)[0], bounds


def limit_rows(labels: np.ndarray, bounds: np.ndarray, s: EncodeSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prompt/completion/block limits for every row: (start, end) kept within each row, and its outcome."""
    n = len(bounds) - 1
    trained = labels != IGNORE
    before = np.zeros(len(labels) + 1, dtype=np.int64)  # trained tokens before each position
    np.cumsum(trained, out=before[1:])
    where = np.flatnonzero(trained)
    starts, ends = np.zeros(n, np.int64), np.zeros(n, np.int64)
    outcome = np.full(n, OK, dtype=np.int8)
    for r in range(n):
        b0, b1 = int(bounds[r]), int(bounds[r + 1])
        if before[b1] == before[b0]:
            outcome[r] = DROPPED_NO_LOSS
            continue
        first = int(where[before[b0]]) - b0
        start, end, state = 0, b1 - b0, OK
        if s.max_prompt_length and first > s.max_prompt_length:
            start, first, state = first - s.max_prompt_length, s.max_prompt_length, TRUNCATED
        if s.max_completion_length and end - start - first > s.max_completion_length:
            end, state = start + first + s.max_completion_length, TRUNCATED
        if s.cap_length and end - start > s.block_size:
            if s.too_long == "drop":
                outcome[r] = DROPPED_TOO_LONG
                continue
            end, state = start + s.block_size, TRUNCATED
        if before[b0 + end] == before[b0 + start]:
            outcome[r] = DROPPED_NO_LOSS
            continue
        starts[r], ends[r], outcome[r] = b0 + start, b0 + end, state
    return starts, ends, outcome


def _gather(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """values[starts[i]:ends[i]] back to back, with the offsets of each piece."""
    lengths = ends - starts
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return values[index], offsets


def encode_columns(examples: list[dict], tokenizer: Any, s: EncodeSettings,
                   on_error: Optional[Callable[[int, Any], None]] = None) -> EncodedColumns:
    """Encode canonical examples. `on_error(index, RowError)` receives rows the template rejects."""
    from .issues import RowError

    n = len(examples)
    planned = list(range(n))
    history = np.zeros(n, dtype=np.int16)
    if s.kind == "tokenized":
        ids, bounds = _flat([ex["input_ids"] for ex in examples])
        labels, _ = _flat([ex.get("labels") or ex["input_ids"] for ex in examples])
    else:
        texts, spans, planned = [], [], []
        chat = s.chat_template is not None and s.kind not in ("text", "template")  # as plan_chat_text decides
        renderer = ChatRenderer(tokenizer, s.chat_template) if chat and s.chat_template else None
        for i, ex in enumerate(examples):
            try:
                t, sp, history[i] = plan_chat_text(ex, tokenizer, s, renderer)
            except RowError as exc:
                if on_error is None:
                    raise
                on_error(i, exc)
                continue
            texts.append(t)
            spans.append(sp)
            planned.append(i)
        ids, labels, bounds = tokenize_plans(texts, spans, tokenizer)
    starts, ends, planned_outcome = limit_rows(labels, bounds, s)
    outcome = np.full(n, FAILED, dtype=np.int8)
    full_length = np.full(n, -1, dtype=np.int32)
    row_start, row_end = np.zeros(n, np.int64), np.zeros(n, np.int64)
    outcome[planned], full_length[planned] = planned_outcome, np.diff(bounds)
    row_start[planned], row_end[planned] = starts, ends
    kept_ids, offsets = _gather(ids, row_start, row_end)
    kept_labels, _ = _gather(labels, row_start, row_end)
    return EncodedColumns(outcome, full_length, history, kept_ids.astype(np.int32), kept_labels.astype(np.int32),
                          offsets.astype(np.int32))


def encode_examples(examples: list[dict], tokenizer: Any, s: EncodeSettings,
                    on_error: Optional[Callable[[int, Any], None]] = None) -> Encoded:
    """encode_columns as Python lists."""
    cols = encode_columns(examples, tokenizer, s, on_error)
    out = Encoded(history_turns=int(cols.history.sum()))
    for i, state in enumerate(cols.outcome.tolist()):
        if state != FAILED:
            out.full_lengths.append(int(cols.full_length[i]))
        if state in KEPT:
            a, b = int(cols.offsets[i]), int(cols.offsets[i + 1])
            out.input_ids.append(cols.ids[a:b].tolist())
            out.labels.append(cols.labels[a:b].tolist())
            out.source_index.append(i)
        out.truncated += state == TRUNCATED
        out.dropped_too_long += state == DROPPED_TOO_LONG
        out.dropped_no_loss += state == DROPPED_NO_LOSS
    return out


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
