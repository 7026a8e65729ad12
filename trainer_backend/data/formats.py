"""Detect a dataset's format (explaining why) and normalise rows to a few canonical shapes.

Canonical examples:
  text:        {"text": str}
  pair:        {"prompt": str, "completion": str, "system": str | None}   (alpaca, question/answer, ...)
  messages:    {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}
  preference:  {"prompt": [messages], "chosen": [messages], "rejected": [messages]}
  tokenized:   {"input_ids": [int], "labels": [int] | None}
  prompt:      {"prompt": [messages], "references": {column: value}, "answer": str | None}   (grpo; rl_rows.py)
  feedback:    {"prompt": [messages], "completion": [messages], "label": bool}            (kto; rl_rows.py)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from ..spec import ColumnMapping
from .issues import RowError

ROLE_ALIASES = {"system": "system", "user": "user", "assistant": "assistant", "human": "user", "gpt": "assistant",
                "prompter": "user"}
FORMAT_KIND = {"text": "text", "alpaca": "pair", "qa": "pair", "messages": "messages", "sharegpt": "messages",
               "preference": "preference", "tokenized": "tokenized", "prompt": "prompt", "feedback": "feedback"}

# The names chat templates read an assistant turn's reasoning by (Qwen3/DeepSeek, GPT-OSS/LFM2.5, Gemma 4).
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")

# Column names each role is recognised by, most specific first.
_CANDIDATES = {
    "messages": ("messages", "conversations", "conversation", "chat", "dialog", "dialogue"),
    "text": ("text", "content", "document", "sentence", "body"),
    "alpaca_prompt": ("instruction",),
    "alpaca_response": ("output", "response"),
    "qa_prompt": ("question", "prompt", "query", "input", "problem", "instruction"),
    "qa_response": ("answer", "response", "completion", "output", "solution", "target"),
    "chosen": ("chosen", "preferred_output", "chosen_response", "preferred"),
    "rejected": ("rejected", "non_preferred_output", "rejected_response", "dispreferred"),
    "system": ("system", "system_prompt"),
    "label": ("label", "thumbs", "thumbs_up", "feedback", "desirable", "is_good", "liked", "kto_label"),
    "prompt_only": ("prompt", "question", "query", "problem", "instruction"),
    "completion": ("completion", "response", "output", "answer"),
}
# What a thumbs-up / thumbs-down cell may hold (case-insensitive); anything else is refused with this list.
LABEL_VALUES: dict[str, bool] = {
    **{k: True for k in ("true", "1", "yes", "y", "up", "thumbs_up", "thumbsup", "good", "positive", "desirable",
                          "like", "liked", "accept", "accepted", "+1", "\U0001f44d")},
    **{k: False for k in ("false", "0", "no", "n", "down", "thumbs_down", "thumbsdown", "bad", "negative",
                           "undesirable", "dislike", "disliked", "reject", "rejected", "-1", "\U0001f44e")},
}


def parse_label(value: Any) -> Optional[bool]:
    """A feedback cell as a bool, or None when it is not a thumbs-up / thumbs-down value."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1, -1):
        return value == 1
    if isinstance(value, str):
        return LABEL_VALUES.get(value.strip().lower())
    return None


def _label_column(columns: list[str], sample: list[dict], given: Optional[str]) -> Optional[str]:
    """The thumbs-up/down column: the mapped one, or a known name whose sampled values all read as booleans."""
    if given:
        return given
    col = _first(columns, _CANDIDATES["label"])
    values = [r.get(col) for r in sample if col and r.get(col) is not None]
    return col if values and all(parse_label(v) is not None for v in values) else None


@dataclass
class Detection:
    format: str
    mapping: ColumnMapping
    reason: str
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        self.kind = FORMAT_KIND[self.format]

    def to_dict(self) -> dict:
        return {"format": self.format, "kind": self.kind, "reason": self.reason,
                "mapping": self.mapping.model_dump(exclude_none=True, exclude_defaults=True)}


def _first(columns: list[str], names: tuple[str, ...]) -> Optional[str]:
    lower = {c.lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


def _maybe_json(value: Any) -> Any:
    """CSV cells may hold a conversation as a JSON string."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):  # not JSON (or absurdly deep): the cell stays text
            return value
    return value


def detect_format(columns: list[str], sample: list[dict], requested: str, user: ColumnMapping) -> Detection:
    """Pick the format from column names (user mapping wins) and say why."""
    given = user.model_dump(exclude_none=True, exclude={"roles"})
    m = dict(given)

    def col(role: str, cands: str) -> Optional[str]:
        return m.get(role) or _first(columns, _CANDIDATES[cands])

    fmt, why = requested, "set in the spec"
    label = _label_column(columns, sample, m.get("label"))
    answer = m.get("response") or _first(columns, _CANDIDATES["completion"])
    if requested == "auto":
        if "input_ids" in columns:
            fmt, why = "tokenized", "column 'input_ids' holds token ids"
        elif label and (col("messages", "messages") or (answer and col("prompt", "qa_prompt"))):
            fmt = "feedback"
            why = f"column '{label}' holds thumbs-up/down labels for " + (
                f"the conversations in '{col('messages', 'messages')}'" if col("messages", "messages") and not answer
                else f"the answers in '{answer}'")
        elif (m.get("chosen") or _first(columns, _CANDIDATES["chosen"])) and \
                (m.get("rejected") or _first(columns, _CANDIDATES["rejected"])):
            fmt, why = "preference", f"columns '{col('chosen', 'chosen')}' and '{col('rejected', 'rejected')}' found"
        elif col("messages", "messages") and not m.get("text") and not m.get("prompt"):
            c = col("messages", "messages")
            first = next((_maybe_json(r.get(c)) for r in sample if r.get(c)), None)
            turn = first[0] if isinstance(first, list) and first and isinstance(first[0], dict) else {}
            fmt = "sharegpt" if "from" in turn or "value" in turn else "messages"
            why = f"column '{c}' holds a list of " + ("{from, value} turns (ShareGPT)" if fmt == "sharegpt"
                                                      else "{role, content} messages")
        elif (m.get("prompt") or _first(columns, _CANDIDATES["alpaca_prompt"])) and \
                (m.get("response") or _first(columns, _CANDIDATES["alpaca_response"])) and \
                _first(columns, _CANDIDATES["alpaca_prompt"]):
            fmt = "alpaca"
            why = "columns 'instruction'" + (", 'input'" if _first(columns, ("input",)) else "") + \
                  f" and '{col('response', 'alpaca_response')}' found (instruction + optional input -> output)"
        elif col("prompt", "qa_prompt") and col("response", "qa_response") and \
                col("prompt", "qa_prompt") != col("response", "qa_response"):
            fmt = "qa"
            why = f"columns '{col('prompt', 'qa_prompt')}' -> '{col('response', 'qa_response')}' found (prompt -> answer)"
        elif (m.get("prompt") or _first(columns, _CANDIDATES["prompt_only"])) and not answer:
            fmt = "prompt"
            why = f"column '{col('prompt', 'prompt_only')}' holds prompts and there is no answer column (prompt-only)"
        elif col("text", "text"):
            fmt, why = "text", f"column '{col('text', 'text')}' holds plain text"
        else:
            strings = [c for c in columns if sample and all(isinstance(r.get(c), str) for r in sample[:20])]
            if len(strings) == 1:
                fmt, why, m["text"] = "text", f"'{strings[0]}' is the only text column", strings[0]
            else:
                raise RowError(f"cannot tell the format from columns {columns}", fix=(
                    "choose the Data format (Settings → Data) and pick the columns in Column mapping (data.format: text, alpaca, qa, "
                    "messages, sharegpt, preference or tokenized; data.column_mapping, e.g. {prompt: question, "
                    "response: answer})"))
    kind = FORMAT_KIND[fmt]
    if kind == "text":
        m.setdefault("text", col("text", "text") or "text")
    elif fmt == "alpaca":
        m.setdefault("prompt", col("prompt", "alpaca_prompt") or "instruction")
        m.setdefault("response", col("response", "alpaca_response") or "output")
        if "input" not in m and _first(columns, ("input",)) and m["prompt"].lower() != "input":
            m["input"] = _first(columns, ("input",))
    elif fmt == "qa":
        m.setdefault("prompt", col("prompt", "qa_prompt") or "prompt")
        m.setdefault("response", col("response", "qa_response") or "response")
    elif kind == "messages":
        m.setdefault("messages", col("messages", "messages") or "messages")
    elif kind == "prompt":
        m.setdefault("prompt", col("prompt", "prompt_only") or "prompt")
    elif kind == "feedback":
        m.setdefault("label", label or "label")
        if answer and col("prompt", "qa_prompt"):
            m.setdefault("prompt", col("prompt", "qa_prompt"))
            m.setdefault("response", answer)
        else:
            m.setdefault("messages", col("messages", "messages") or "messages")
    elif kind == "preference":
        m.setdefault("chosen", col("chosen", "chosen") or "chosen")
        m.setdefault("rejected", col("rejected", "rejected") or "rejected")
        if "prompt" not in m and _first(columns, ("prompt", "input", "question")):
            m["prompt"] = _first(columns, ("prompt", "input", "question"))
        if "margin" not in m and _first(columns, ("margin",)):
            m["margin"] = _first(columns, ("margin",))
    if kind in ("pair", "messages", "preference", "prompt", "feedback") and "system" not in m and _first(columns, _CANDIDATES["system"]):
        m["system"] = _first(columns, _CANDIDATES["system"])
    if given:
        why += f"; column mapping from the spec: {given}"
    return Detection(fmt, ColumnMapping(**m, roles=user.roles), why)


# ---- normalisation ----------------------------------------------------------------------------------


def _text(row: dict, column: Optional[str], what: str, required: bool = True) -> str:
    if column is None:
        return ""
    if column not in row:
        if not required:
            return ""
        raise RowError(f"missing column '{column}' ({what}); this row has columns {sorted(row)}", column,
                       f"pick the {what} column in Column mapping (data.column_mapping.{what}), or add the column to "
                       "the file")
    value = row[column]
    if value is None:
        value = ""
    if isinstance(value, (int, float, bool)) and not isinstance(value, bool):
        value = str(value)  # a CSV label like 3 or a numeric answer
    if not isinstance(value, str):
        raise RowError(f"{what} must be text, got {type(value).__name__}", column,
                       f"store text in this column, or pick another {what} column in Column mapping "
                       f"(data.column_mapping.{what})")
    if required and not value.strip():
        raise RowError(f"{what} is empty", column, "fill it in or remove the row")
    return value


def _content(value: Any, where: str, column: Optional[str]) -> str:
    if isinstance(value, list):  # OpenAI content parts: [{"type": "text", "text": ...}]
        parts = [p.get("text") for p in value if isinstance(p, dict) and p.get("type", "text") == "text"]
        texts = [p for p in parts if isinstance(p, str)]
        if len(texts) == len(value):
            return "".join(texts)
    if isinstance(value, str):
        return value
    raise RowError(f"{where} has content of type {type(value).__name__}, expected text", column)


def normalize_messages(value: Any, column: Optional[str], roles: dict[str, str], system: Optional[str] = None,
                       need_assistant: bool = True) -> list[dict[str, str]]:
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:  # a CSV/Parquet cell holding a conversation as (broken) JSON
            raise RowError(f"cell holds invalid JSON: {exc.msg} at character {exc.pos + 1}", column,
                           "write the conversation as a JSON list like [{\"role\": \"user\", \"content\": \"...\"}] "
                           "(in a CSV cell, wrap the cell in quotes and double every quote inside it)") from None
        except RecursionError:
            raise RowError("cell holds JSON nested thousands of levels deep", column,
                           "a conversation is a flat JSON list of {\"role\", \"content\"} objects") from None
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]  # {"messages": [...]} (OpenAI DPO input)
    if isinstance(value, str):
        raise RowError("expected a list of messages, got a plain string", column,
                       "use data.format: text/qa for plain strings, or store the conversation as a JSON list")
    if not isinstance(value, list) or not value:
        raise RowError("conversation is empty" if isinstance(value, list) else
                       f"expected a list of messages, got {type(value).__name__}", column,
                       "store the conversation as a list like [{\"role\": \"user\", \"content\": \"...\"}, ...] "
                       "or remove the row")
    aliases = {**ROLE_ALIASES, **{k.lower(): v for k, v in roles.items()}}
    out: list[dict[str, str]] = []
    for i, msg in enumerate(value, 1):
        if not isinstance(msg, dict):
            raise RowError(f"message {i} is a {type(msg).__name__}, expected an object", column)
        role = msg.get("role", msg.get("from"))
        content = msg["content"] if "content" in msg else msg.get("value")
        if role is None or ("content" not in msg and "value" not in msg):
            raise RowError(f"message {i} needs 'role' and 'content' (or ShareGPT 'from' and 'value'); "
                           f"it has keys {sorted(msg)}", column,
                           "write each message as {\"role\": ..., \"content\": ...}")
        mapped = aliases.get(str(role).lower())
        if mapped is None:
            raise RowError(f"message {i} has role '{role}'; expected one of user/assistant/system", column,
                           f"map it with data.column_mapping.roles: {{{role}: assistant}} (or user/system)")
        text = _content(content, f"message {i}", column)
        if mapped == "system" and i != 1:
            raise RowError(f"message {i} is a system message; only the first message may be one", column,
                           "move the system message to the start of the conversation, or remove it")
        if mapped != "system" and not text.strip():
            raise RowError(f"message {i} ({mapped}) is empty", column, "fill it in or remove the row")
        turn = {"role": mapped, "content": text}
        if mapped == "assistant":  # reasoning travels with its answer: templates that render it train it
            turn.update({k: msg[k] for k in REASONING_FIELDS if isinstance(msg.get(k), str) and msg[k].strip()})
        out.append(turn)
    if system and out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": system})
    if need_assistant and not any(m["role"] == "assistant" for m in out):
        raise RowError("conversation has no assistant turn, so there is nothing to learn", column,
                       "add an assistant reply or remove the row")
    return out


# Anthropic HH-style transcripts: "\n\nHuman: ...\n\nAssistant: ..." (a single newline before a marker is tolerated).
_HH_MARKER = re.compile(r"(?:^|\n)[ \t]*(Human|Assistant):[ \t]?")


def parse_transcript(text: str) -> Optional[list[dict[str, str]]]:
    """Turn an HH-style transcript into messages; None when the text is not one."""
    parts = _HH_MARKER.split(text)
    if len(parts) < 3 or parts[0].strip() or "Assistant" not in parts[1::2]:
        return None
    return [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
            for who, body in zip(parts[1::2], parts[2::2])]


def _as_turns(value: Any, column: Optional[str], roles: dict[str, str]) -> list[dict[str, str]]:
    """A chosen/rejected answer: a string, an HH transcript, or messages whose last assistant turn is the answer."""
    value = _maybe_json(value)
    if isinstance(value, str):
        if not value.strip():
            raise RowError("answer is empty", column, "fill it in or remove the row")
        return parse_transcript(value) or [{"role": "assistant", "content": value}]
    return normalize_messages(value, column, roles)


def _last_assistant(messages: list[dict]) -> int:
    return max(i for i, m in enumerate(messages) if m["role"] == "assistant")


def _split_preference(prompt: list, chosen: list, rejected: list) -> tuple[list, list, list]:
    """Answers that repeat the conversation: split at the last assistant turn (the shared prefix is the prompt)."""
    if prompt:  # an explicit prompt; answers may still repeat it (UltraFeedback-style)
        n = len(prompt)
        if chosen[:n] == prompt and rejected[:n] == prompt and len(chosen) > n and len(rejected) > n:
            chosen, rejected = chosen[n:], rejected[n:]
        return prompt, chosen, rejected
    ic, ir = _last_assistant(chosen), _last_assistant(rejected)
    if chosen[:ic] == rejected[:ir]:
        return chosen[:ic], chosen[ic:], rejected[ir:]
    k = 0  # transcripts that differ before the last turn: the common prefix is all they share
    while k < min(len(chosen), len(rejected)) - 1 and chosen[k] == rejected[k]:
        k += 1
    return chosen[:k], chosen[k:], rejected[k:]


def normalize_row(row: dict, det: Detection, system_prompt: Optional[str] = None) -> dict:
    """One raw row -> one canonical example; raises RowError naming the column."""
    m = det.mapping
    if det.kind == "text":
        return {"text": _text(row, m.text, "text")}
    if det.kind == "pair":
        prompt = _text(row, m.prompt, "prompt")
        extra = _text(row, m.input, "input", required=False) if m.input else ""
        if extra.strip():
            prompt = f"{prompt}\n\n{extra}"
        system = _text(row, m.system, "system", required=False) or system_prompt
        return {"prompt": prompt, "completion": _text(row, m.response, "response"), "system": system or None}
    if det.kind == "messages":
        if m.messages not in row:
            raise RowError(f"missing column '{m.messages}'", m.messages, "pick the conversation column in Column "
                                                                        "mapping (data.column_mapping.messages)")
        system = _text(row, m.system, "system", required=False) or system_prompt
        return {"messages": normalize_messages(row[m.messages], m.messages, m.roles, system)}
    if det.kind == "preference":
        if m.prompt and m.prompt in row:
            raw_prompt = _maybe_json(row[m.prompt])
            prompt_turns = ([{"role": "user", "content": _text(row, m.prompt, "prompt")}]
                            if isinstance(raw_prompt, str)
                            else normalize_messages(raw_prompt, m.prompt, m.roles, need_assistant=False))
        else:
            prompt_turns = []
        for c in (m.chosen, m.rejected):
            if c not in row:
                raise RowError(f"missing column '{c}'", c, "pick the chosen and rejected columns in Column mapping "
                                  "(data.column_mapping.chosen/rejected)")
        chosen = _as_turns(row[m.chosen], m.chosen, m.roles)
        rejected = _as_turns(row[m.rejected], m.rejected, m.roles)
        prompt_turns, chosen, rejected = _split_preference(prompt_turns, chosen, rejected)
        if chosen == rejected:
            raise RowError("chosen and rejected answers are identical, so there is no preference to learn",
                           m.chosen, "remove the row or fix one of the answers")
        system = _text(row, m.system, "system", required=False) or system_prompt
        if system and (not prompt_turns or prompt_turns[0]["role"] != "system"):
            prompt_turns = [{"role": "system", "content": system}] + prompt_turns
        if not any(t["role"] == "user" for t in prompt_turns):
            raise RowError("no prompt: neither a prompt column nor a shared conversation prefix",
                           m.prompt or m.chosen, "map the prompt column with data.column_mapping.prompt")
        example: dict[str, Any] = {"prompt": prompt_turns, "chosen": chosen, "rejected": rejected}
        if m.margin:
            try:
                example["margin"] = float(row[m.margin])
            except (KeyError, TypeError, ValueError):
                raise RowError(f"margin must be a number, got {row.get(m.margin)!r}", m.margin,
                               "fill the margin column with numbers, or unmap it") from None
        return example
    if det.kind in ("prompt", "feedback"):  # read by data/rl_rows.py for the trainers that take them
        raise RowError(f"{det.format} data is for trainer {'grpo' if det.kind == 'prompt' else 'kto'}",
                       fix="choose that trainer, or data of a format this trainer takes")
    return _normalize_tokenized(row)


def _normalize_tokenized(row: dict) -> dict:
    ids = row.get("input_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise RowError("input_ids must be a non-empty list of integers", "input_ids",
                       "store the token ids of each sample as a list of integers")
    labels = row.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(ids)):
        got = f"{len(labels)} labels" if isinstance(labels, list) else f"a {type(labels).__name__}"
        raise RowError(f"labels must be a list as long as input_ids ({len(ids)} ids), got {got}", "labels",
                       "give one label per input id (-100 where no loss), or drop the labels column")
    mask = row.get("attention_mask")
    if mask is not None and (not isinstance(mask, list) or len(mask) != len(ids)):
        raise RowError(f"attention_mask must be a list as long as input_ids ({len(ids)})", "attention_mask",
                       "give one mask value per input id, or drop the attention_mask column")
    return {"input_ids": ids, "labels": labels}
