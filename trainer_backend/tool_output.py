"""What a model wrote, read as tool calls, and scored against a reference: Evaluate's function-call accuracy, the
chat tab's call bubbles and the GRPO `tool_call` reward all read calls with `extract_calls`, so a completion the
reward pays for is one Evaluate counts. Calls come out in tool_calls.py's canonical form."""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

from .tool_calls import ToolFormatError, function_of, call_problems, normalize_call, normalize_calls


@dataclass
class GeneratedCalls:
    calls: list[dict]  # canonical calls found in a model's output
    content: str  # the text outside the calls, stripped
    malformed: bool  # something call-shaped that did not parse (e.g. <tool_call> with broken JSON)


_END = re.compile(r"<\|(?:eom_id|eot_id|end|im_end|endoftext|end_of_text)\|>|</s>")
_HERMES = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|$)", re.DOTALL)
_PARAMETER = re.compile(r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|$)", re.DOTALL)
_MISTRAL = re.compile(r"([^\[\]\s{]+)\s*(?:\[CALL_ID\]\s*([^\[\s]+)\s*)?\[ARGS\]")
_FENCE = re.compile(r"```[\w+-]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)
_CALL_START = re.compile(r'\[?\s*\{\s*"(?:name|function|tool_calls)"\s*:')
_DECODER = json.JSONDecoder()


def _looks_like_call(value: Any, tagged: bool) -> bool:
    """{"name", "arguments"|"parameters"} or {"function": {"name", ...}}; after a call marker a name is enough."""
    fn = function_of(value) if isinstance(value, dict) else {}
    return isinstance(fn.get("name"), str) and (tagged or fn is not value or "arguments" in fn or "parameters" in fn)


def _decode_all(text: str) -> Optional[list[Any]]:
    """The JSON values of a text one after another (',' ';' or whitespace between), or None if it has others."""
    values, i = [], 0
    while i < len(text):
        try:
            value, i = _DECODER.raw_decode(text, i)
        except ValueError:
            return None
        value = value["tool_calls"] if isinstance(value, dict) and isinstance(value.get("tool_calls"), list) else value
        values.extend(value if isinstance(value, list) else [value])
        while i < len(text) and text[i] in " \t\r\n,;":
            i += 1
    return values


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _function_tag(name: str, body: str) -> dict:
    """`<function=name>` then a JSON object, or `<parameter=x>value</parameter>` tags (Qwen3-Coder)."""
    params = _PARAMETER.findall(body)
    args = {k.strip(): _value(v.strip()) for k, v in params} \
        if params and not _PARAMETER.sub("", body).strip() else body.strip()
    return normalize_call({"name": name.strip(), "arguments": args})


def _calls_in(text: str, tagged: bool) -> tuple[list[dict], bool]:
    """(calls, malformed) of a text meant to be calls only: JSON call(s) (in a ```json fence too) or <function=name>
    tags. `tagged`: after a call marker; untagged (a whole answer), JSON that is not call-shaped is an answer."""
    text = text.strip()
    fenced = _FENCE.fullmatch(text)
    text = fenced.group(1).strip() if fenced else text
    try:
        if text.startswith("<function="):
            calls = [_function_tag(name, body) for name, body in _FUNCTION.findall(text)]
            return calls, bool(_FUNCTION.sub("", text).strip())
        values = _decode_all(text) if tagged or text[:1] in ("[", "{") else None
        if values is None:  # after a call marker, or starting like a call: a call that does not parse
            return [], tagged or bool(_CALL_START.match(text))
        shaped = [v for v in values if _looks_like_call(v, tagged)]
        if not tagged and (not values or len(shaped) != len(values)):
            return [], False  # JSON, but an answer rather than a call
        return [normalize_call(v) for v in shaped], not values or len(shaped) != len(values)
    except ToolFormatError:
        return [], True


def _mistral(text: str) -> GeneratedCalls:
    head, *parts = text.split("[TOOL_CALLS]")
    calls, rest, malformed = [], [head], False
    for part in (p.strip() for p in parts):
        named = _MISTRAL.match(part)
        try:
            if named:  # [TOOL_CALLS]name[ARGS]{...} (v11+; [CALL_ID] in some)
                args, end = _DECODER.raw_decode(part, named.end())
                calls.append(normalize_call({"name": named[1], "arguments": args, "id": named[2]}))
            else:  # [TOOL_CALLS][{"name": ..., "arguments": ..., "id": ...}, ...]
                value, end = _DECODER.raw_decode(part)
                found, bad = _calls_in(json.dumps(value), tagged=True)
                calls, malformed = calls + found, malformed or bad
            rest.append(part[end:])
        except (ValueError, ToolFormatError):
            malformed = True
    return GeneratedCalls(calls, "\n".join(r.strip() for r in rest if r.strip()), malformed)


def _tagged(text: str, pattern: re.Pattern[str]) -> GeneratedCalls:
    calls: list[dict] = []
    malformed = False
    for match in pattern.finditer(text):
        found, bad = _calls_in(match[0] if pattern is _FUNCTION else match[1], tagged=True)
        calls, malformed = calls + found, malformed or bad or not found
    return GeneratedCalls(calls, pattern.sub("", text).strip(), malformed)


def extract_calls(text: str) -> GeneratedCalls:
    """The calls a model wrote, in the forms tool-capable chat templates teach: Hermes / Qwen `<tool_call>{json}
    </tool_call>`, Mistral `[TOOL_CALLS]`, Llama `<|python_tag|>` / bare JSON, `<function=name>{json}</function>`.
    Plain prose is no call. Never raises."""
    text = "" if text is None else str(text)
    try:
        text = _END.sub("", text)
        if "<tool_call>" in text:
            return _tagged(text, _HERMES)
        if "[TOOL_CALLS]" in text:
            return _mistral(text)
        if "<|python_tag|>" in text:
            head, _, body = text.partition("<|python_tag|>")
            calls, malformed = _calls_in(body.replace("<|python_tag|>", ""), tagged=True)
            return GeneratedCalls(calls, head.strip(), malformed)
        if "<function=" in text:
            return _tagged(text, _FUNCTION)
        calls, malformed = _calls_in(text, tagged=False)
        return GeneratedCalls(calls, "" if calls else text.strip(), malformed)
    except Exception:  # a reward or a chat turn must survive any output (RecursionError on deep nesting, ...)
        return GeneratedCalls([], text.strip(), False)


# ---------------------------------------------------------------------------------------------------------------
# Scoring


TOOL_METRICS: dict[str, tuple[str, str]] = {
    "valid_call": ("Valid call rate", "answers that should call a tool and do, in a form that parses"),
    "tool_name": ("Right tool", "answers that call exactly the reference's tools (names, counted)"),
    "exact_arguments": ("Exact call", "answers whose calls equal the reference's: names and argument values"),
    "schema_valid": ("Schema-valid calls", "answers with calls whose every call names a declared tool with "
                                           "arguments that fit its parameters"),
    "no_call": ("Right not to call", "answers that should not call a tool and do not"),
}


def _canon(value: Any) -> Any:
    """A JSON value for comparison: 1.0 == 1, dict key order irrelevant (json.dumps sorts keys)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 63:
        return int(value)
    return {str(k): _canon(v) for k, v in value.items()} if isinstance(value, dict) else \
        [_canon(v) for v in value] if isinstance(value, (list, tuple)) else value


def _keys(calls: list[dict]) -> Counter[str]:
    """The calls as a multiset of comparable (name, arguments) texts."""
    return Counter(json.dumps([c["function"]["name"], _canon(c["function"].get("arguments") or {})],
                              sort_keys=True, default=str) for c in calls)


def _names(calls: list[dict]) -> Counter[str]:
    return Counter(c["function"]["name"] for c in calls)


def score_calls(predicted: GeneratedCalls, reference: list[dict], tools: list[dict]) -> dict[str, Optional[float]]:
    """One example's tool metrics (TOOL_METRICS), each 1.0 / 0.0, or None where it does not apply."""
    ref, pred = normalize_calls(reference), predicted.calls
    should = bool(ref)
    return {
        "valid_call": float(bool(pred) and not predicted.malformed) if should else None,
        "tool_name": float(_names(pred) == _names(ref)) if should else None,
        "exact_arguments": float(_keys(pred) == _keys(ref)) if should else None,
        "schema_valid": float(all(not call_problems(c, tools) for c in pred)) if pred else None,
        "no_call": None if should else float(not pred and not predicted.malformed),
    }


def tool_call_score(completion: str, reference: list[dict], tools: list[dict]) -> float:
    """The GRPO `tool_call` reward in [0, 1]. With reference calls: 0 when no call parses, else 0.2 valid form +
    0.3 share of the reference's names called + 0.2 schema-valid + 0.3 share of the reference's calls made exactly;
    the shares divide by the larger of the reference's and the completion's call counts, so extra calls cost.
    Without reference calls: 1 when the completion calls nothing."""
    predicted, ref = extract_calls(completion), normalize_calls(reference)
    if not ref:
        return float(not predicted.calls and not predicted.malformed)
    pred = predicted.calls
    if not pred:
        return 0.0
    n = max(len(ref), len(pred))
    names = sum((_names(pred) & _names(ref)).values()) / n
    exact = sum((_keys(pred) & _keys(ref)).values()) / n
    schema = float(all(not call_problems(c, tools) for c in pred))
    return min(1.0, 0.2 * float(not predicted.malformed) + 0.3 * names + 0.2 * schema + 0.3 * exact)


def format_call(call: dict) -> str:
    """'get_weather(city="Paris", days=3)': a call for people to read (arguments as JSON values)."""
    fn = function_of(call)
    args = _value(fn["arguments"]) if isinstance(fn.get("arguments"), str) else fn.get("arguments") or {}
    shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items()) \
        if isinstance(args, dict) else args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return f"{fn.get('name')}({shown})"
