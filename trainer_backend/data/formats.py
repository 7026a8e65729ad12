"""Normalise rows to a few canonical shapes (detection.py tells the format and why).

Canonical examples:
  text:        {"text": str}
  pair:        {"prompt": str, "completion": str, "system": str | None}   (alpaca, question/answer, ...)
  messages:    {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": str, "tool_calls"?}, ...],
                "tools"?: [tool schema], "train_from"?: int}   (chats, tool calling, conversational prompt-completion)
  preference:  {"prompt": [messages], "chosen": [messages], "rejected": [messages]}
  tokenized:   {"input_ids": [int], "labels": [int] | None}
  prompt:      {"prompt": [messages], "references": {column: value}, "answer": str | None}   (grpo; rl_rows.py)
  feedback:    {"prompt": [messages], "completion": [messages], "label": bool}            (kto; rl_rows.py)

Tool schemas, calls and results take tool_calls.py's canonical shapes (tool_rows.py reads the published ones).
"""
from __future__ import annotations

import json
import re
from typing import Any, Optional

from .detection import Detection
from .fields import MISSING, cell, is_path, maybe_json
from .issues import RowError
from .tool_rows import (TOOL_MESSAGE_ROLES, check_tool_turns, merge_call_turns, row_tools, tool_message,
                        tools_in_system, xlam_example)

ROLE_ALIASES = {"system": "system", "user": "user", "assistant": "assistant", "human": "user", "gpt": "assistant",
                "prompter": "user"}

# The names chat templates read an assistant turn's reasoning by (Qwen3/DeepSeek, GPT-OSS/LFM2.5, Gemma 4).
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


# ---- normalisation ----------------------------------------------------------------------------------


def _text(row: dict, column: Optional[str], what: str, required: bool = True) -> str:
    if column is None:
        return ""
    value = cell(row, column, first=is_path(column, row))
    if value is MISSING:
        if not required:
            return ""
        raise RowError(f"missing column '{column}' ({what}); this row has columns {sorted(row)}", column,
                       f"pick the {what} column in Column mapping (data.column_mapping.{what}), or add the column to "
                       "the file")
    if value is None:
        value = ""
    if isinstance(value, (int, float, bool)) and not isinstance(value, bool):
        value = str(value)  # a CSV label like 3 or a numeric answer
    if not isinstance(value, str):
        raise RowError(f"{what} must be text, got {type(value).__name__}", column,
                       f"store text in this column, or pick another {what} column in Column mapping "
                       f"(data.column_mapping.{what}; a nested field as a dotted path, e.g. answers.text)")
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
    out: list[dict] = []
    for i, msg in enumerate(value, 1):
        if not isinstance(msg, dict):
            raise RowError(f"message {i} is a {type(msg).__name__}, expected an object", column)
        role = msg.get("role", msg.get("from"))
        key = str(role).lower()
        if role is not None and key not in aliases and key in TOOL_MESSAGE_ROLES or \
                aliases.get(key) == "assistant" and (msg.get("tool_calls") or msg.get("function_call")):
            out.append(tool_message(msg, i, key if key in TOOL_MESSAGE_ROLES else "assistant", column))
            continue
        content = msg["content"] if "content" in msg else msg.get("value")
        if role is None or ("content" not in msg and "value" not in msg):
            raise RowError(f"message {i} needs 'role' and 'content' (or ShareGPT 'from' and 'value'); "
                           f"it has keys {sorted(msg)}", column,
                           "write each message as {\"role\": ..., \"content\": ...}")
        mapped = aliases.get(key)
        if mapped is None:
            raise RowError(f"message {i} has role '{role}'; expected one of user/assistant/system/tool", column,
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
    out = merge_call_turns(out)
    if system and out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": system})
    if need_assistant and not any(m["role"] == "assistant" for m in out):
        raise RowError("conversation has no assistant turn, so there is nothing to learn", column,
                       "add an assistant reply or remove the row")
    return out


def tool_conversation(row: dict, column: str, tools_column: Optional[str], messages: list[dict]) -> dict:
    """A conversation with the tools its row declares ({"messages", "tools"}), calls and results checked. Without
    a tools column, tools written as JSON into the system turn are read from there."""
    tools = row_tools(row, tools_column)
    if not tools and tools_column is None and any(m.get("tool_calls") for m in messages):
        tools, messages = tools_in_system(messages)
    if not tools and not any(m.get("tool_calls") or m["role"] == "tool" for m in messages):
        return {"messages": messages}
    check_tool_turns(messages, tools, column)
    return {"messages": messages, "tools": tools}


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
    value = maybe_json(value)
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


def normalize_row(row: dict, det: Detection, system_prompt: Optional[str] = None, need_assistant: bool = True) -> dict:
    """One raw row -> one canonical example; raises RowError naming the column. `need_assistant=False`: a
    conversation may end before any answer (GRPO prompts)."""
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
    if det.format == "xlam":
        assert m.prompt and m.response  # detection maps both
        return xlam_example(row, m.prompt, m.tools, m.response)
    system = _text(row, m.system, "system", required=False) or system_prompt
    if det.format == "prompt_completion":
        return _prompt_completion(row, det, system)
    if det.kind == "messages":
        value = cell(row, m.messages) if m.messages else MISSING
        if value is MISSING:
            raise RowError(f"missing column '{m.messages}'", m.messages, "pick the conversation column in Column "
                                                                        "mapping (data.column_mapping.messages)")
        assert m.messages is not None
        return tool_conversation(row, m.messages, m.tools,
                                 normalize_messages(value, m.messages, m.roles, system, need_assistant))
    if det.kind == "preference":
        if m.prompt and cell(row, m.prompt) is not MISSING:
            raw_prompt = maybe_json(cell(row, m.prompt))
            prompt_turns = ([{"role": "user", "content": _text(row, m.prompt, "prompt")}]
                            if isinstance(raw_prompt, str)
                            else normalize_messages(raw_prompt, m.prompt, m.roles, need_assistant=False))
        else:
            prompt_turns = []
        for c in (m.chosen, m.rejected):
            if c is None or cell(row, c) is MISSING:
                raise RowError(f"missing column '{c}'", c, "pick the chosen and rejected columns in Column mapping "
                                  "(data.column_mapping.chosen/rejected)")
        assert m.chosen is not None and m.rejected is not None
        chosen = _as_turns(cell(row, m.chosen), m.chosen, m.roles)
        rejected = _as_turns(cell(row, m.rejected), m.rejected, m.roles)
        prompt_turns, chosen, rejected = _split_preference(prompt_turns, chosen, rejected)
        if chosen == rejected:
            raise RowError("chosen and rejected answers are identical, so there is no preference to learn",
                           m.chosen, "remove the row or fix one of the answers")
        if system and (not prompt_turns or prompt_turns[0]["role"] != "system"):
            prompt_turns = [{"role": "system", "content": system}] + prompt_turns
        if not any(t["role"] == "user" for t in prompt_turns):
            raise RowError("no prompt: neither a prompt column nor a shared conversation prefix",
                           m.prompt or m.chosen, "map the prompt column with data.column_mapping.prompt")
        example: dict[str, Any] = {"prompt": prompt_turns, "chosen": chosen, "rejected": rejected}
        if m.margin:
            try:
                example["margin"] = float(cell(row, m.margin))  # type: ignore[arg-type]  # MISSING: TypeError
            except (KeyError, TypeError, ValueError):
                raise RowError(f"margin must be a number, got {row.get(m.margin)!r}", m.margin,
                               "fill the margin column with numbers, or unmap it") from None
        return example
    if det.kind in ("prompt", "feedback"):  # read by data/rl_rows.py for the trainers that take them
        raise RowError(f"{det.format} data is for trainer {'grpo' if det.kind == 'prompt' else 'kto'}",
                       fix="choose that trainer, or data of a format this trainer takes")
    return _normalize_tokenized(row)


def _prompt_completion(row: dict, det: Detection, system: Optional[str]) -> dict:
    """TRL's conversational prompt-completion: the prompt's messages, then the completion's; only the completion's
    assistant turns train (`train_from`: the index of the first message that may)."""
    m = det.mapping
    parts = []
    for column, what in ((m.prompt, "prompt"), (m.response, "completion")):
        value = maybe_json(cell(row, column)) if column else MISSING
        if value is MISSING:
            raise RowError(f"missing column '{column}' ({what})", column,
                           f"pick the {what} column in Column mapping (data.column_mapping."
                           f"{'prompt' if what == 'prompt' else 'response'})")
        parts.append([{"role": "user" if what == "prompt" else "assistant", "content": _text(row, column, what)}]
                     if isinstance(value, str) else
                     normalize_messages(value, column, m.roles, need_assistant=what == "completion"))
    prompt, completion = parts
    if system and prompt[0]["role"] != "system":
        prompt.insert(0, {"role": "system", "content": system})
    if completion[0]["role"] != "assistant":
        raise RowError(f"the completion starts with a {completion[0]['role']} message; it must start with the "
                       "assistant's answer", m.response, "move everything before the answer into the prompt column")
    assert m.response is not None
    example = tool_conversation(row, m.response, m.tools, prompt + completion)
    return {**example, "train_from": len(prompt)}


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
