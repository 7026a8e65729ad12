"""Rows for the trainers that learn from signals rather than target text: GRPO (prompts whose completions the
model generates and reward functions score) and KTO (single answers labelled thumbs-up or thumbs-down).

GRPO takes the prompt side of any conversational format (messages without the last assistant turn, alpaca's
instruction + input, a question) plus the reference values its rewards read from the row, checked here: a reward
naming a column the row lacks is a data error with file, row and column, found before training. The prompt is
stored as the exact text the model generates from (its chat template's generation prompt included).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional

from ..spec import JobSpec
from ..tool_calls import TOOL_REFERENCE
from .detection import Detection, parse_label
from .encode import DROPPED_TOO_LONG, OK, TRUNCATED, EncodedRows, EncodeSettings
from .fields import MISSING, cell, maybe_json
from .formats import _text, normalize_messages, normalize_row
from .issues import RowError
from .preference import fit_answers, keep_tokens, render_answers, render_prompt

REFERENCES_COLUMN = "references"  # GRPO rows: the reference values of the row, as one JSON object per row


def reference_columns(spec: JobSpec) -> Optional[tuple[str, ...]]:
    """The columns GRPO rewards read from each row; None = every column (a Python reward may read any)."""
    rewards = spec.grpo.rewards
    if any(r.type == "python" for r in rewards):
        return None
    return tuple(dict.fromkeys([r.column for r in rewards if r.column] +
                               [TOOL_REFERENCE for r in rewards if r.type == "tool_call"]))


def reference_readers(spec: JobSpec) -> dict[str, str]:
    """column -> the reward that reads it (for messages naming what needs the column)."""
    out: dict[str, str] = {}
    for r in spec.grpo.rewards:
        if r.column or r.type == "tool_call":
            out.setdefault(r.column or TOOL_REFERENCE, f"reward '{r.label}'")
    return out


# ---- normalisation ------------------------------------------------------------------------------------------


def _prompt_messages(row: dict, det: Detection,
                     system_prompt: Optional[str]) -> tuple[list[dict], Optional[str], list[dict], list[dict]]:
    """(prompt messages, the row's own answer text if it has one, the tools it declares, the calls its answer
    makes) for any format GRPO takes."""
    m = det.mapping
    if det.kind == "messages":  # any conversational format, read as SFT reads it (tools checked alike)
        example = normalize_row(row, det, system_prompt, need_assistant=False)
        messages, tools = example["messages"], example.get("tools") or []
        answer, calls = None, []
        if messages[-1]["role"] == "assistant":  # a full conversation: its last answer is the reference
            answer, calls, messages = messages[-1]["content"] or None, messages[-1].get("tool_calls", []), messages[:-1]
        if not messages or messages[-1]["role"] not in ("user", "tool"):
            raise RowError("the conversation does not end with a user turn to answer", m.messages or m.prompt,
                           "end each conversation with the user's message (an assistant reply after it is fine)")
        return messages, answer, tools, calls
    system = _text(row, m.system, "system", required=False) or system_prompt
    raw = maybe_json(cell(row, m.prompt)) if m.prompt else MISSING
    if isinstance(raw, list):  # TRL's conversational prompt-only
        assert m.prompt is not None
        messages = normalize_messages(raw, m.prompt, m.roles, system, need_assistant=False)
        if messages[-1]["role"] != "user":
            raise RowError("the prompt does not end with a user turn to answer", m.prompt,
                           "end each prompt with the user's message")
    else:
        prompt = _text(row, m.prompt, "prompt")
        extra = _text(row, m.input, "input", required=False) if m.input else ""
        if extra.strip():
            prompt = f"{prompt}\n\n{extra}"
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    answer = _text(row, m.response, "response", required=False) if m.response else None
    return messages, answer or None, [], []


def _json_value(value: Any) -> Any:
    """A cell as JSON (reward functions get it back as such); other types (dates, bytes) as their text."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def normalize_prompt_row(row: dict, det: Detection, system_prompt: Optional[str],
                         wanted: Optional[tuple[str, ...]], readers: dict[str, str]) -> dict:
    """One raw row -> {"prompt": [messages], "references": {column: value}, "answer": str | None}; `wanted`
    and `readers` as reference_columns() and reference_readers() give them."""
    messages, answer, tools, calls = _prompt_messages(row, det, system_prompt)
    references: dict[str, Any] = {}
    if wanted is None:  # a Python reward: every column but the prompt's own
        used = {det.mapping.messages, det.mapping.prompt, det.mapping.input, det.mapping.system}
        references = {k: _json_value(v) for k, v in row.items() if k not in used}
    if tools:  # what the tool_call reward scores a completion's calls against
        references[TOOL_REFERENCE] = {"calls": calls, "tools": tools}
    for column in wanted or ():
        if column == TOOL_REFERENCE:
            if not tools:
                raise RowError(f"{readers.get(column, 'a reward')} scores tool calls, but this row declares no "
                               "tools", det.mapping.tools or det.mapping.messages or det.mapping.prompt,
                               "train it on tool-calling rows (a tools column, and the calls that answer), or "
                               "remove the tool_call reward")
            continue
        value = cell(row, column)
        if value is MISSING:
            raise RowError(f"missing column '{column}' that {readers.get(column, 'a reward')} reads; this row has columns "
                           f"{sorted(row)}", column, "add the column to the file, or pick one of these in the reward's "
                           "column cell of the Rewards table (grpo.rewards[].column)")
        parsed = maybe_json(value) if isinstance(value, str) else value
        if parsed is None or (isinstance(parsed, str) and not parsed.strip()) or parsed == []:
            raise RowError(f"column '{column}' that {readers.get(column, 'a reward')} reads is empty", column,
                           "fill in the reference answer or remove the row")
        references[column] = _json_value(value)
    example = {"prompt": messages, "references": references, "answer": answer}
    return {**example, "tools": tools} if tools else example


def normalize_feedback_row(row: dict, det: Detection, system_prompt: Optional[str]) -> dict:
    """One raw row -> {"prompt": [messages], "completion": [assistant message], "label": bool}."""
    m = det.mapping
    column = m.label or "label"
    value = cell(row, column)
    if value is MISSING:
        raise RowError(f"missing column '{column}' (thumbs-up/down label)", column,
                       "add the label column, or map it with data.column_mapping.label")
    label = parse_label(value)
    if label is None:
        raise RowError(f"label must be a thumbs-up or thumbs-down value, got {value!r}", column,
                       "use true/false (also 1/0, yes/no, up/down, good/bad, 👍/👎)")
    system = _text(row, m.system, "system", required=False) or system_prompt
    if m.response:  # prompt + completion columns
        raw = maybe_json(cell(row, m.prompt)) if m.prompt else None
        if isinstance(raw, list):
            prompt = normalize_messages(raw, m.prompt or "prompt", m.roles, system, need_assistant=False)
        else:
            prompt = [{"role": "user", "content": _text(row, m.prompt, "prompt")}]
            if system:
                prompt.insert(0, {"role": "system", "content": system})
        answer = maybe_json(cell(row, m.response))
        if isinstance(answer, list):
            turns = normalize_messages(answer, m.response, m.roles)
            completion = [turns[-1]]
        else:
            completion = [{"role": "assistant", "content": _text(row, m.response, "response")}]
    else:  # a conversation whose last assistant turn got the thumbs
        conversation = m.messages or "messages"
        if cell(row, conversation) is MISSING:
            raise RowError(f"missing column '{conversation}'", conversation,
                           "map the conversation column with data.column_mapping.messages")
        turns = normalize_messages(cell(row, conversation), conversation, m.roles, system)
        last = max(i for i, t in enumerate(turns) if t["role"] == "assistant")
        prompt, completion = turns[:last], [turns[last]]
    if not any(t["role"] == "user" for t in prompt):
        raise RowError("no user turn before the rated answer", m.prompt or m.messages,
                       "give each row the prompt the answer replies to")
    return {"prompt": prompt, "completion": completion, "label": label}


# ---- encoding ----------------------------------------------------------------------------------------------


def encode_prompts(examples: list[dict], tokenizer: Any, s: EncodeSettings, template: Optional[str],
                   on_error: Callable[[int, RowError], None]) -> EncodedRows:
    """GRPO rows: the prompt text, cut (from the left) to what leaves room for a full completion."""
    out = EncodedRows()
    budget = s.block_size - (s.max_completion_length or 0)
    limit = min(budget, s.max_prompt_length or budget)
    for i, ex in enumerate(examples):
        try:
            text = render_prompt(ex["prompt"], tokenizer, template, ex.get("tools"))
        except RowError as exc:
            on_error(i, exc)
            out.failed()
            continue
        n = len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        out.lengths.append(n + (s.max_completion_length or 0))
        if n > limit and s.too_long == "drop":
            out.outcomes.append(DROPPED_TOO_LONG)
            continue
        text, _, cut = keep_tokens(text, tokenizer, limit, from_end=True)
        out.outcomes.append(TRUNCATED if cut else OK)
        out.rows[i] = {"prompt": text, REFERENCES_COLUMN: json.dumps(ex["references"], ensure_ascii=False)}
    return out


def encode_feedback(examples: list[dict], tokenizer: Any, s: EncodeSettings, template: Optional[str],
                    on_error: Callable[[int, RowError], None]) -> EncodedRows:
    """KTO rows: prompt and completion texts (as DPO's, one answer instead of two) and the label."""
    out = EncodedRows()
    for i, ex in enumerate(examples):
        try:
            prompt, (completion,) = render_answers(ex["prompt"], [ex["completion"]], tokenizer, template)
        except RowError as exc:
            on_error(i, exc)
            out.failed()
            continue
        outcome, prompt, (completion,), total = fit_answers(prompt, [completion], tokenizer, s)
        out.lengths.append(total)
        out.outcomes.append(outcome)
        if outcome not in (OK, TRUNCATED):
            continue
        out.rows[i] = {"prompt": prompt, "completion": completion, "label": bool(ex["label"])}
    return out
