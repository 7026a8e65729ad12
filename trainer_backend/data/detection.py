"""Tell a dataset's format from its columns (a user's column mapping wins) and say why, naming TRL's format.

Published datasets are read as they are: OpenAI / ShareGPT chats with tool calls and a tools column, xLAM- and
BFCL-style function-calling rows, TRL's conversational prompt-completion, instruction + context rows (Dolly), and
nested answers (SQuAD's `answers.text`). A non-empty column the detected format does not read is listed
(`unused_columns`), never dropped in silence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..spec import ColumnMapping
from .fields import MISSING, cell, maybe_json, top_column
from .issues import RowError
from .tool_rows import TOOL_MESSAGE_ROLES

FORMAT_KIND = {"text": "text", "alpaca": "pair", "qa": "pair", "messages": "messages", "sharegpt": "messages",
               "prompt_completion": "messages", "xlam": "messages", "preference": "preference",
               "tokenized": "tokenized", "prompt": "prompt", "feedback": "feedback"}

# Column names each role is recognised by, most specific first.
_CANDIDATES = {
    "messages": ("messages", "conversations", "conversation", "chat", "dialog", "dialogue"),
    "text": ("text", "content", "document", "sentence", "body"),
    "alpaca_prompt": ("instruction",),
    "alpaca_response": ("output", "response"),
    "qa_prompt": ("question", "prompt", "query", "input", "problem", "instruction"),
    "qa_response": ("answer", "response", "completion", "output", "solution", "target", "answers"),
    "context": ("input", "context", "passage", "document", "documents", "article"),
    "chosen": ("chosen", "preferred_output", "chosen_response", "preferred"),
    "rejected": ("rejected", "non_preferred_output", "rejected_response", "dispreferred"),
    "system": ("system", "system_prompt"),
    "label": ("label", "thumbs", "thumbs_up", "feedback", "desirable", "is_good", "liked", "kto_label"),
    "prompt_only": ("prompt", "question", "query", "problem", "instruction"),
    "completion": ("completion", "response", "output", "answer"),
    "tools": ("tools", "functions", "function", "available_tools", "tool_schemas"),
    "calls": ("answers", "ground_truth", "tool_calls", "calls", "function_calls"),
}
_TEXT_KEYS = ("text", "value", "answer", "content")  # the text field of a nested answer ({"text": [...], ...})

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


@dataclass
class Detection:
    format: str
    mapping: ColumnMapping
    reason: str
    # (column, a sample value) of each non-empty column the format does not read: listed, never dropped in silence
    unused: list[tuple[str, str]] = field(default_factory=list)
    tools: bool = False  # rows call tools (or declare them): the chat template must render tools
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        self.kind = FORMAT_KIND[self.format]

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"format": self.format, "kind": self.kind, "reason": self.reason,
               "mapping": self.mapping.model_dump(exclude_none=True, exclude_defaults=True)}
        if self.unused:
            out["unused"] = [{"column": c, "sample": v} for c, v in self.unused]
        return out

    def read_also(self, columns: Optional[tuple[str, ...]]) -> None:
        """Columns something besides the format reads (GRPO's rewards; None: any column) are not unused."""
        self.unused = [] if columns is None else [(c, v) for c, v in self.unused if c not in columns]


def _first(columns: list[str], names: tuple[str, ...], skip: tuple[Optional[str], ...] = ()) -> Optional[str]:
    lower = {c.lower(): c for c in columns if c not in skip}
    return next((lower[n] for n in names if n in lower), None)


def _values(sample: list[dict], column: Optional[str]) -> list[Any]:
    if not column:
        return []
    return [maybe_json(v) for v in (cell(r, column) for r in sample) if v is not MISSING and v is not None]


def _label_column(columns: list[str], sample: list[dict], given: Optional[str]) -> Optional[str]:
    """The thumbs-up/down column: the mapped one, or a known name whose sampled values all read as booleans."""
    if given:
        return given
    col = _first(columns, _CANDIDATES["label"])
    values = _values(sample, col)
    return col if values and all(parse_label(v) is not None for v in values) else None


def _holds_messages(sample: list[dict], column: Optional[str]) -> bool:
    values = _values(sample, column)
    return bool(values) and all(isinstance(v, list) and v and isinstance(v[0], dict) for v in values)


def _holds_calls(sample: list[dict], column: Optional[str]) -> bool:
    """Cells holding function calls: xLAM's [{name, arguments}] or BFCL's [{function: {argument: [values]}}]."""
    values = _values(sample, column)
    return bool(values) and all(isinstance(v, list) and all(isinstance(c, dict) for c in v) for v in values)


def _tool_calls_in(sample: list[dict], column: str) -> bool:
    for conversation in _values(sample, column):
        for m in conversation if isinstance(conversation, list) else []:
            if isinstance(m, dict) and ("tool_calls" in m or "function_call" in m or
                                        str(m.get("role", m.get("from", ""))).lower() in TOOL_MESSAGE_ROLES):
                return True
    return False


def _text_path(column: Optional[str], sample: list[dict]) -> Optional[str]:
    """A column whose cells are objects (SQuAD's answers) read through its text field: `answers.text`."""
    values = _values(sample, column)
    if column and values and all(isinstance(v, dict) for v in values):
        key = next((k for k in _TEXT_KEYS if all(k in v for v in values)), None)
        return f"{column}.{key}" if key else column
    return column


def detect_format(columns: list[str], sample: list[dict], requested: str, user: ColumnMapping) -> Detection:
    """Pick the format from column names and sampled values (user mapping wins) and say why."""
    given = user.model_dump(exclude_none=True, exclude={"roles"})
    m = dict(given)

    def col(role: str, cands: str) -> Optional[str]:
        return m.get(role) or _first(columns, _CANDIDATES[cands])

    fmt, why = requested, "set in the spec"
    label = _label_column(columns, sample, m.get("label"))
    answer = m.get("response") or _first(columns, _CANDIDATES["completion"])
    tools, calls = col("tools", "tools"), m.get("response") or _first(columns, _CANDIDATES["calls"])
    if requested == "auto":
        if "input_ids" in columns:
            fmt, why = "tokenized", "column 'input_ids' holds token ids"
        elif tools and col("prompt", "prompt_only") and _holds_calls(sample, calls) and not col("messages", "messages"):
            fmt = "xlam"
            bfcl = calls == "ground_truth" or tools == "function"
            why = (f"columns '{col('prompt', 'prompt_only')}', '{tools}' and '{calls}' hold a request, the tools it "
                   "may call and the calls that answer it (" +
                   ("BFCL function calling; each argument trains its first acceptable value)" if bfcl else
                    "xLAM / APIGen function calling)"))
        elif label and (col("messages", "messages") or (answer and col("prompt", "qa_prompt"))):
            fmt = "feedback"
            why = f"column '{label}' holds thumbs-up/down labels for " + (
                f"the conversations in '{col('messages', 'messages')}'" if col("messages", "messages") and not answer
                else f"the answers in '{answer}'") + " (TRL: unpaired preference)"
        elif (m.get("chosen") or _first(columns, _CANDIDATES["chosen"])) and \
                (m.get("rejected") or _first(columns, _CANDIDATES["rejected"])):
            chosen = col("chosen", "chosen")
            prompt = _first(columns, ("prompt", "input", "question"))
            shape = "conversational" if _holds_messages(sample, chosen) else "standard"
            fmt, why = "preference", (f"columns '{chosen}' and '{col('rejected', 'rejected')}' found (TRL: {shape} "
                                      f"preference, {'explicit' if prompt else 'implicit'} prompt)")
        elif col("messages", "messages") and not m.get("text") and not m.get("prompt"):
            c = col("messages", "messages")
            first = next((v for v in _values(sample, c) if v), None)
            turn = first[0] if isinstance(first, list) and first and isinstance(first[0], dict) else {}
            fmt = "sharegpt" if "from" in turn or "value" in turn else "messages"
            why = f"column '{c}' holds a list of " + ("{from, value} turns (ShareGPT)" if fmt == "sharegpt"
                                                      else "{role, content} messages (TRL: conversational language "
                                                           "modeling)")
            if c and _tool_calls_in(sample, c):
                why += " with tool calls and tool results" + (f"; column '{tools}' declares the tools" if tools else
                                                               "; the tools are read from the system turn")
        elif answer and col("prompt", "qa_prompt") and _holds_messages(sample, col("prompt", "qa_prompt")) and \
                _holds_messages(sample, answer):
            fmt = "prompt_completion"
            why = (f"columns '{col('prompt', 'qa_prompt')}' and '{answer}' hold lists of messages (TRL: "
                   "conversational prompt-completion; the loss is on the completion only)")
        elif (m.get("prompt") or _first(columns, _CANDIDATES["alpaca_prompt"])) and \
                (m.get("response") or _first(columns, _CANDIDATES["alpaca_response"])) and \
                _first(columns, _CANDIDATES["alpaca_prompt"]):
            fmt = "alpaca"
            why = f"columns 'instruction' and '{col('response', 'alpaca_response')}' found (instruction -> output)"
        elif col("prompt", "qa_prompt") and col("response", "qa_response") and \
                col("prompt", "qa_prompt") != col("response", "qa_response"):
            fmt = "qa"
            why = (f"columns '{col('prompt', 'qa_prompt')}' -> '{col('response', 'qa_response')}' found (TRL: "
                   "prompt-completion)")
        elif (m.get("prompt") or _first(columns, _CANDIDATES["prompt_only"])) and not answer:
            p = col("prompt", "prompt_only")
            fmt = "prompt"
            why = (f"column '{p}' holds prompts and there is no answer column (TRL: "
                   f"{'conversational ' if _holds_messages(sample, p) else ''}prompt-only)")
        elif col("text", "text"):
            fmt, why = "text", f"column '{col('text', 'text')}' holds plain text (TRL: language modeling)"
        else:
            strings = [c for c in columns if sample and all(isinstance(r.get(c), str) for r in sample[:20])]
            if len(strings) == 1:
                fmt, why, m["text"] = "text", f"'{strings[0]}' is the only text column", strings[0]
            else:
                raise RowError(f"cannot tell the format from columns {columns}", fix=(
                    "choose the Data format (Settings → Data) and pick the columns in Column mapping (data.format: "
                    "text, alpaca, qa, messages, sharegpt, prompt_completion, xlam, preference or tokenized; "
                    "data.column_mapping, e.g. {prompt: question, response: answer}; a nested field as a dotted "
                    "path: answers.text)"))
    _fill_mapping(fmt, m, columns, sample, label, answer, tools, calls)
    extra = [f"'{m['input']}' is added to the prompt after a blank line"] if m.get("input") and FORMAT_KIND[fmt] in \
        ("pair", "prompt") else []
    extra += [f"'{v}' is read from the nested field" for k, v in m.items()
              if k in ("prompt", "response", "input") and isinstance(v, str) and v not in columns and "." in v]
    if extra:
        why += "; " + "; ".join(extra)
    if given:
        why += f"; column mapping from the spec: {given}"
    det = Detection(fmt, ColumnMapping(**m, roles=user.roles), why)
    det.unused = unused_columns(det, columns, sample)
    det.tools = fmt == "xlam" or bool(m.get("tools")) or (det.kind == "messages" and bool(m.get("messages")) and
                                                          _tool_calls_in(sample, m["messages"]))
    return det


def _fill_mapping(fmt: str, m: dict, columns: list[str], sample: list[dict], label: Optional[str],
                  answer: Optional[str], tools: Optional[str], calls: Optional[str]) -> None:
    """The detected format's columns, for every role the user did not map."""
    def col(role: str, cands: str, skip: tuple[Optional[str], ...] = ()) -> Optional[str]:
        return m.get(role) or _first(columns, _CANDIDATES[cands], skip)

    kind = FORMAT_KIND[fmt]
    if kind == "text":
        m.setdefault("text", col("text", "text") or "text")
    elif fmt in ("alpaca", "qa"):
        prompt_role, response_role = ("alpaca_prompt", "alpaca_response") if fmt == "alpaca" else \
            ("qa_prompt", "qa_response")
        m.setdefault("prompt", col("prompt", prompt_role) or ("instruction" if fmt == "alpaca" else "prompt"))
        m.setdefault("response", _text_path(col("response", response_role), sample) or
                     ("output" if fmt == "alpaca" else "response"))
        context = _first(columns, _CANDIDATES["context"], (m["prompt"], top_column(m["response"], columns)))
        if "input" not in m and context:
            m["input"] = context
    elif fmt == "prompt_completion":
        m.setdefault("prompt", col("prompt", "qa_prompt"))
        m.setdefault("response", answer)
    elif fmt == "xlam":
        m.setdefault("prompt", col("prompt", "prompt_only"))
        m.setdefault("response", calls)
    elif kind == "messages":
        m.setdefault("messages", col("messages", "messages") or "messages")
    elif kind == "prompt":
        m.setdefault("prompt", col("prompt", "prompt_only") or "prompt")
        context = _first(columns, _CANDIDATES["context"], (m["prompt"],))
        if "input" not in m and context and not _holds_messages(sample, m["prompt"]):
            m["input"] = context
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
    if kind in ("messages", "prompt") and tools and "tools" not in m:
        m["tools"] = tools
    if kind in ("pair", "messages", "preference", "prompt", "feedback") and "system" not in m and \
            _first(columns, _CANDIDATES["system"]):
        m["system"] = _first(columns, _CANDIDATES["system"])


# Columns a format reads without a mapping entry naming them.
_IMPLIED = {"tokenized": ("input_ids", "labels", "attention_mask")}


def unused_columns(det: Detection, columns: list[str], sample: list[dict]) -> list[tuple[str, str]]:
    """(column, a sample value) of each non-empty column the detected format does not read."""
    mapped = det.mapping.model_dump(exclude_none=True, exclude={"roles"}).values()
    read = {top_column(v, columns) for v in mapped if isinstance(v, str)} | set(_IMPLIED.get(det.format, ()))
    out = []
    for c in columns:
        if c in read:
            continue
        value = next((v for v in (r.get(c) for r in sample) if v not in (None, "", [], {})
                      and not (isinstance(v, str) and not v.strip())), None)
        if value is not None:
            text = " ".join(str(value).split())
            out.append((c, text if len(text) <= 60 else text[:57] + "..."))
    return out
