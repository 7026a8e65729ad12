"""Tool (function) calling: the one canonical form of tools and calls, and reading calls out of model output.

Published datasets write tools and calls in many shapes (OpenAI `tool_calls` with arguments as JSON text,
ShareGPT `function_call` turns, bare `{name, parameters}` tools, BFCL's `dict` / `float` types and ground truth of
acceptable values); the data layer turns them into the shapes HF chat templates read: tool `{"type": "function",
"function": {name, description, parameters: <JSON Schema object>}}`, call `{"type": "function", "function": {name,
arguments: dict}}` (+ `id`). Evaluation, chat and the GRPO `tool_call` reward read calls back from what a model wrote
(`extract_calls`) and score them (`score_calls`, `tool_call_score`). Stdlib and jsonschema (imported when needed).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

TOOL_REFERENCE = "tool_reference"  # key in a GRPO row's references JSON: {"calls": [call...], "tools": [tool...]}


class ToolFormatError(ValueError):
    """Tools or a call that cannot be put in the canonical form; `fix` says what to change."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


def _json(value: Any, what: str, fix: str) -> Any:
    """JSON text parsed (other values as they are); ToolFormatError naming where it stops parsing."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise ToolFormatError(f"{what}: {exc.msg} at character {exc.pos + 1}", fix) from None


def _fn(item: dict) -> dict:
    """The function part of a wrapped tool or call ({"type": "function", "function": {...}}), or the item itself."""
    return item["function"] if isinstance(item.get("function"), dict) else item


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------------------
# Tools

# Python / BFCL type names -> JSON Schema's; None: any value (the type is dropped)
_TYPES: dict[str, Optional[str]] = {"dict": "object", "float": "number", "tuple": "array", "any": None,
                                    "str": "string", "int": "integer", "bool": "boolean", "list": "array",
                                    **{t: t for t in ("object", "array", "string", "number", "integer", "boolean",
                                                      "null")}}
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMAS = ("items", "prefixItems", "additionalProperties", "additionalItems", "anyOf", "oneOf", "allOf", "not",
               "contains", "if", "then", "else", "propertyNames", "unevaluatedProperties", "unevaluatedItems")
_TOOLS_FIX = 'give `tools` as a list of {"type": "function", "function": {"name", "description", "parameters"}} ' \
             'objects (or bare {"name", "description", "parameters"})'


def _schema(schema: Any) -> Any:
    """A copy of a (sub)schema with Python / BFCL type names turned into JSON Schema's, recursively."""
    if isinstance(schema, list):
        return [_schema(sub) for sub in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "type" in out:
        kinds = [t if not isinstance(t, str) else _TYPES.get(t.strip().lower(), t)
                 for t in (out["type"] if isinstance(out["type"], list) else [out["type"]])]
        if None in kinds:  # "any": every value is allowed
            del out["type"]
        else:  # an unknown name stays, for the schema check to name
            out["type"] = list(dict.fromkeys(kinds)) if isinstance(out["type"], list) else kinds[0]
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _schema(sub) for name, sub in out[key].items()}
    return {**out, **{key: _schema(out[key]) for key in _SUBSCHEMAS if key in out}}


def _parameters(raw: Any, name: str) -> dict:
    if raw is None or raw == "" or raw == {}:
        return {"type": "object", "properties": {}, "required": []}
    raw = _json(raw, f"parameters of tool '{name}' are not valid JSON", "write the parameters as a JSON Schema object")
    if not isinstance(raw, dict):
        raise ToolFormatError(f"parameters of tool '{name}' are a {type(raw).__name__}, not a JSON Schema object",
                              'write parameters as {"type": "object", "properties": {...}, "required": [...]}')
    params = {"type": "object", "properties": {}, "required": [], **_schema(raw)}
    if params["type"] != "object":
        raise ToolFormatError(f"parameters of tool '{name}' are a {params['type']!r} schema, not an object schema",
                              'a tool takes named arguments: use {"type": "object", "properties": {...}}')
    problem = _schema_problem(json.dumps(params, sort_keys=True))
    if problem:
        raise ToolFormatError(f"parameters of tool '{name}' are not a valid JSON Schema{problem}",
                              "fix the schema (types: object, array, string, number, integer, boolean, null)")
    return params


@lru_cache(maxsize=1024)
def _schema_problem(schema_text: str) -> str:
    """'' for a valid JSON Schema, else ' at <where>: <what>' (cached: a dataset repeats its tools row after row).
    Draft 7's meta-schema: the same checks of what tools use, 8x faster than 2020-12's ($dynamicRef)."""
    from jsonschema import Draft7Validator, SchemaError

    try:
        Draft7Validator.check_schema(json.loads(schema_text))
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"{f' at {where}' if where else ''}: {exc.message}"
    return ""


def normalize_tools(value: Any) -> list[dict]:
    """A row's tools in the canonical form (see the module doc); None, "" and "[]" are no tools."""
    if isinstance(value, str):
        value = _json(value, "tools is not valid JSON", _TOOLS_FIX) if value.strip() else None
    value = [] if value is None else [value] if isinstance(value, dict) else value
    if not isinstance(value, (list, tuple)):
        raise ToolFormatError(f"tools are a {type(value).__name__}, not a list of tools", _TOOLS_FIX)
    out: list[dict] = []
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise ToolFormatError(f"tool {number} is a {type(item).__name__} ({_short(item)}), not an object",
                                  _TOOLS_FIX)
        fn = _fn(item)
        name, description = fn.get("name"), fn.get("description")
        if not isinstance(name, str) or not name.strip():
            raise ToolFormatError(f"tool {number} has no name ({_short(item)})", 'give every tool a non-empty "name"')
        if name in tool_names(out):
            raise ToolFormatError(f"tool '{name}' is declared twice", "give each tool of a row its own name")
        out.append({"type": "function", "function": {
            "name": name, "description": "" if description is None else str(description),
            "parameters": _parameters(fn.get("parameters", fn.get("input_schema")), name)}})
    return out


def tool_names(tools: list[dict]) -> list[str]:
    """The names of tools (canonical or bare)."""
    return [str(_fn(t).get("name")) for t in tools]


# ---------------------------------------------------------------------------------------------------------------
# Calls


def normalize_call(value: Any) -> dict:
    """One call in the canonical form: {"type": "function", "function": {"name", "arguments": dict}} (+ "id")."""
    fix = 'write a call as {"name": "...", "arguments": {...}}'
    value = _json(value, "call is not valid JSON", fix)
    if not isinstance(value, dict):
        raise ToolFormatError(f"a call is a {type(value).__name__} ({_short(value)}), not an object", fix)
    fn = _fn(value)
    name, args = fn.get("name"), fn["arguments"] if "arguments" in fn else fn.get("parameters")
    if not isinstance(name, str) or not name.strip():
        raise ToolFormatError(f"a call has no name ({_short(value)})", fix)
    what = f"arguments of call '{name}' are not a JSON object"
    args = {} if args is None or (isinstance(args, str) and not args.strip()) else \
        _json(args, what, 'write the arguments as a JSON object, e.g. {"city": "Paris"}')
    if not isinstance(args, dict):
        raise ToolFormatError(f"{what}: got {_short(args)}", "write the arguments as a JSON object of name: value")
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": args}}
    return call if value.get("id") in (None, "") else {"id": str(value["id"]), **call}


def normalize_calls(value: Any) -> list[dict]:
    """One call, a list of calls, or a JSON string of either (e.g. xLAM's `answers`) -> canonical calls."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    value = _json(value, "calls are not valid JSON", 'write calls as a list of {"name": "...", "arguments": {...}}')
    return [normalize_call(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def calls_from_ground_truth(value: Any) -> list[dict]:
    """BFCL's ground truth [{name: {argument: [acceptable values]}}] -> calls taking each argument's first
    acceptable value that is not "" ("" means the argument may be left out; only "" -> left out)."""
    fix = 'ground truth is a list of {"function name": {"argument": [acceptable values]}}'
    value = _json(value, "ground truth is not valid JSON", fix)
    calls = []
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if not isinstance(item, dict):
            raise ToolFormatError(f"a ground truth item is a {type(item).__name__}, not an object", fix)
        for name, options in item.items():
            if not isinstance(options, dict):
                raise ToolFormatError(f"ground truth of '{name}' is a {type(options).__name__}, not an object", fix)
            calls.append(normalize_call({"name": name, "arguments": _chosen(options)}))
    return calls


def _chosen(options: Any) -> Any:
    """{argument: [acceptable values]} -> {argument: the first that is not ""}; a dict value holds options again."""
    if isinstance(options, list):
        return [_chosen(v) for v in options]
    if not isinstance(options, dict):
        return options
    out = {}
    for arg, accepted in options.items():
        chosen = [v for v in (accepted if isinstance(accepted, list) else [accepted]) if v != ""]
        if chosen:
            out[arg] = _chosen(chosen[0])
    return out


@lru_cache(maxsize=256)
def _checked_tools(tools_text: str) -> list[dict]:
    return normalize_tools(tools_text)


@lru_cache(maxsize=512)
def _validator(schema_text: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_text))


def _problems(error: Any) -> list[str]:
    kind, value, instance = error.validator, error.validator_value, error.instance
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    prefix = f"{where}." if where else ""
    if kind == "required" and isinstance(instance, dict):
        return [f"missing required argument '{prefix}{r}'" for r in value if r not in instance]
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties") or {}
        return [f"unexpected argument '{prefix}{k}'" for k in instance if k not in known] or [error.message]
    if kind == "type":
        expected = " or ".join(value) if isinstance(value, list) else value
        return [f"argument '{where}': expected {expected}, got {_short(instance)}"]
    if kind == "enum":
        return [f"argument '{where}': {_short(instance)} is not one of {_short(value, 120)}"]
    return [f"argument '{where}': {error.message}" if where else error.message]


def call_problems(call: dict, tools: list[dict]) -> list[str]:
    """What is wrong with a call given the row's tools ([] when it names a declared tool and its arguments fit)."""
    try:  # BFCL-style types become JSON Schema's; canonical tools stay as they are
        tools = _checked_tools(json.dumps(tools, sort_keys=True, default=str))
    except ToolFormatError:
        pass
    name, args = _fn(call).get("name"), _fn(call).get("arguments") or {}
    declared = dict(zip(tool_names(tools), tools))
    if name not in declared:
        return [f"calls '{name}', which the row's tools do not declare (declared: {', '.join(declared) or 'none'})"]
    if not isinstance(args, dict):
        return [f"arguments of call '{name}' are not a JSON object: got {_short(args)}"]
    params = _fn(declared[name]).get("parameters") or {}
    try:
        errors = list(_validator(json.dumps(params, sort_keys=True)).iter_errors(args))
    except Exception as exc:  # a schema jsonschema cannot apply (unknown type, bad $ref)
        return [f"tool '{name}' has parameters that cannot be checked: {exc}"]
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    return list(dict.fromkeys(line for e in errors for line in _problems(e)))


# ---------------------------------------------------------------------------------------------------------------
# Reading calls out of what a model wrote


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
    fn = _fn(value) if isinstance(value, dict) else {}
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
    fn = _fn(call)
    args = _value(fn["arguments"]) if isinstance(fn.get("arguments"), str) else fn.get("arguments") or {}
    shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items()) \
        if isinstance(args, dict) else args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return f"{fn.get('name')}({shown})"
