"""Tool-calling rows as they are published, read into tool_calls.py's canonical shapes and checked before training.

- OpenAI chat: assistant `tool_calls` (arguments a JSON string or an object), `tool` results answering a
  `tool_call_id`, the legacy `function_call` / `function` role; the tools in a column (`tools`, or legacy
  `functions`).
- ShareGPT function calling (LLaMA-Factory, Glaive): `function_call` turns holding the call as JSON, `observation`
  (or `tool`) turns holding its result; the tools in a column as a JSON string, or as JSON in the system turn.
- xLAM / APIGen rows (`query`, `tools`, `answers`) and BFCL rows (`question`, `function`, `ground_truth`): one
  request answered by calls; BFCL's lists of acceptable values train their first value.

Every call must name a tool the row declares, with arguments that fit that tool's parameters, and every tool result
must answer a call: a row that breaks this is refused with its message number and column, before any GPU time.
"""
from __future__ import annotations

import json
import re
from typing import Any, Optional

from ..tool_calls import (ToolFormatError, call_problems, calls_from_ground_truth, normalize_call, normalize_calls,
                          normalize_tools)
from .fields import MISSING, cell, maybe_json
from .issues import RowError

# Message roles that are tool traffic: a call turn (ShareGPT) or a result (OpenAI, legacy OpenAI, ShareGPT).
CALL_ROLES = ("function_call", "tool_call")
RESULT_ROLES = ("tool", "function", "observation", "tool_response")
TOOL_MESSAGE_ROLES = CALL_ROLES + RESULT_ROLES
_TOOLS_FIX = ("declare every tool the row calls in its tools column (a list of {name, description, parameters}), "
              "or fix the call")


def _error(exc: ToolFormatError, where: str, column: Optional[str]) -> RowError:
    return RowError(f"{where}: {exc.message}", column, exc.fix or _TOOLS_FIX)


def _result_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def tool_message(msg: dict, i: int, role: str, column: Optional[str]) -> dict:
    """Message i (1-based) of a conversation, a tool call or result, in the canonical shape."""
    where = f"message {i}"
    content = msg["content"] if "content" in msg else msg.get("value")
    try:
        if role in CALL_ROLES:  # ShareGPT: the whole turn is the call (or a list of calls)
            return {"role": "assistant", "content": "", "tool_calls": normalize_calls(content)}
        if role in RESULT_ROLES:
            out = {"role": "tool", "content": _result_text(content)}
            if isinstance(msg.get("tool_call_id"), str):
                out["tool_call_id"] = msg["tool_call_id"]
            if isinstance(msg.get("name"), str):
                out["name"] = msg["name"]
            return out
        raw = msg.get("tool_calls") if msg.get("tool_calls") else [msg["function_call"]]
        calls = [normalize_call(c) for c in (raw if isinstance(raw, list) else [raw])]
    except ToolFormatError as exc:
        raise _error(exc, where, column) from None
    text = content if isinstance(content, str) else ""
    return {"role": "assistant", "content": text, "tool_calls": calls}


def merge_call_turns(messages: list[dict]) -> list[dict]:
    """ShareGPT writes an assistant's text and its calls (or parallel calls) as separate turns: one message each."""
    out: list[dict] = []
    for m in messages:
        prev = out[-1] if out else None
        if m.get("tool_calls") and prev is not None and prev["role"] == "assistant" and \
                (prev.get("tool_calls") or not m["content"]):
            prev["tool_calls"] = prev.get("tool_calls", []) + m["tool_calls"]
            continue
        out.append(m)
    return out


_JSON_OBJECT_START = re.compile(r"[\[{]")


def tools_in_system(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """Tools written as JSON into the system turn (Glaive: "...access to the following functions -\\n{...}"):
    (the tools, the messages with that JSON taken out of the system turn). No JSON there: ([], messages)."""
    if not messages or messages[0]["role"] != "system":
        return [], messages
    text = messages[0]["content"]
    decoder, found, kept, pos = json.JSONDecoder(), [], [], 0
    for match in _JSON_OBJECT_START.finditer(text):
        if match.start() < pos:
            continue
        try:
            value, end = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        items = value if isinstance(value, list) else [value]
        if items and all(isinstance(t, dict) and ("name" in t or "function" in t) for t in items):
            found += items
            kept.append(text[pos:match.start()])
            pos = end
    if not found:
        return [], messages
    kept.append(text[pos:])
    system = " ".join(" ".join(kept).split()).rstrip(" -:")
    try:
        tools = normalize_tools(found)
    except ToolFormatError as exc:
        raise _error(exc, "the tools in the system turn", None) from None
    rest = messages[1:]
    return tools, ([{"role": "system", "content": system}] + rest if system else rest)


def row_tools(row: dict, column: Optional[str]) -> list[dict]:
    """The tools a row declares in its tools column (canonical schemas); [] without one."""
    value = cell(row, column) if column else MISSING
    if value is MISSING:
        return []
    try:
        return normalize_tools(value)
    except ToolFormatError as exc:
        raise RowError(exc.message, column, exc.fix or "store the tools as a JSON list of "
                       "{name, description, parameters}") from None


def check_tool_turns(messages: list[dict], tools: list[dict], column: Optional[str]) -> None:
    """Every call names a declared tool with arguments that fit its parameters; every result answers a call."""
    pending: list[Optional[str]] = []  # ids (None: no id) of calls not answered yet, oldest first
    for i, m in enumerate(messages, 1):
        if m.get("tool_calls"):
            for call in m["tool_calls"]:
                problems = call_problems(call, tools)
                if problems:
                    name = call["function"]["name"]
                    raise RowError(f"message {i} calls '{name}': {problems[0]}", column,
                                   _TOOLS_FIX if not tools or "declare" in problems[0] else
                                   "make the arguments fit the tool's parameters (or fix its schema)")
            pending = [c.get("id") for c in m["tool_calls"]]
        elif m["role"] == "tool":
            wanted = m.get("tool_call_id")
            if wanted is not None and wanted in pending:
                pending.remove(wanted)
            elif wanted is not None and any(p is not None for p in pending):
                raise RowError(f"message {i} is a tool result for call id '{wanted}', which no call before it has "
                               f"(open calls: {', '.join(p for p in pending if p)})", column,
                               "give each tool result the tool_call_id of the call it answers")
            elif pending:
                pending.pop(0)
            else:
                raise RowError(f"message {i} is a tool result that answers no call (no assistant tool call is "
                               "waiting for one)", column,
                               "put the assistant's tool call before its result, or remove the result")
        elif m["role"] == "user":
            pending = []


def _request(value: Any, column: Optional[str]) -> list[dict]:
    """An xLAM query (text) or BFCL question (a list of turns, each a list of messages) as messages."""
    value = maybe_json(value)
    if isinstance(value, str) and value.strip():
        return [{"role": "user", "content": value}]
    turns = value[0] if isinstance(value, list) and value and isinstance(value[0], list) else value
    if isinstance(turns, list) and turns and all(isinstance(t, dict) and isinstance(t.get("content"), str)
                                                 for t in turns):
        return [{"role": str(t.get("role", "user")), "content": t["content"]} for t in turns]
    raise RowError("the request is empty or not text", column, "fill in the user's request, or remove the row")


def xlam_example(row: dict, prompt: str, tools_column: Optional[str], calls_column: str) -> dict:
    """An xLAM / BFCL row -> {"messages": [request..., assistant calls], "tools": [...]}."""
    value = cell(row, prompt)
    if value is MISSING:
        raise RowError(f"missing column '{prompt}' (the request)", prompt, "map it with data.column_mapping.prompt")
    messages = _request(value, prompt)
    tools = row_tools(row, tools_column)
    raw = maybe_json(cell(row, calls_column))
    if raw is MISSING or raw in (None, "", []):
        raise RowError(f"no calls in column '{calls_column}'", calls_column,
                       "give the calls that answer the request, e.g. [{\"name\": ..., \"arguments\": {...}}]")
    try:
        items = raw if isinstance(raw, list) else [raw]
        bfcl = all(isinstance(c, dict) and len(c) == 1 and "name" not in c and isinstance(next(iter(c.values())), dict)
                   for c in items)
        calls = calls_from_ground_truth(items) if bfcl else normalize_calls(items)
    except ToolFormatError as exc:
        raise _error(exc, "the answer calls", calls_column) from None
    example = {"messages": messages + [{"role": "assistant", "content": "", "tool_calls": calls}], "tools": tools}
    check_tool_turns(example["messages"], tools, calls_column)
    return example
