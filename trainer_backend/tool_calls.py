"""Tool (function) calling: the one canonical form of tools and calls, and their checks.

Published datasets write tools and calls in many shapes (OpenAI `tool_calls` with arguments as JSON text,
ShareGPT `function_call` turns, bare `{name, parameters}` tools, BFCL's `dict` / `float` types and ground truth of
acceptable values); the data layer turns them into the shapes HF chat templates read: tool `{"type": "function",
"function": {name, description, parameters: <JSON Schema object>}}`, call `{"type": "function", "function": {name,
arguments: dict}}` (+ `id`). A call is checked against the tools a row declares (`call_problems`). Reading calls back
out of what a model wrote, and scoring them, is tool_output.py's. Stdlib and jsonschema (imported when needed).
"""
from __future__ import annotations

import json
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


def function_of(item: dict) -> dict:
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
        fn = function_of(item)
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
    return [str(function_of(t).get("name")) for t in tools]


# ---------------------------------------------------------------------------------------------------------------
# Calls


def normalize_call(value: Any) -> dict:
    """One call in the canonical form: {"type": "function", "function": {"name", "arguments": dict}} (+ "id")."""
    fix = 'write a call as {"name": "...", "arguments": {...}}'
    value = _json(value, "call is not valid JSON", fix)
    if not isinstance(value, dict):
        raise ToolFormatError(f"a call is a {type(value).__name__} ({_short(value)}), not an object", fix)
    fn = function_of(value)
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
    name, args = function_of(call).get("name"), function_of(call).get("arguments") or {}
    declared = dict(zip(tool_names(tools), tools))
    if name not in declared:
        return [f"calls '{name}', which the row's tools do not declare (declared: {', '.join(declared) or 'none'})"]
    if not isinstance(args, dict):
        return [f"arguments of call '{name}' are not a JSON object: got {_short(args)}"]
    params = function_of(declared[name]).get("parameters") or {}
    try:
        errors = list(_validator(json.dumps(params, sort_keys=True)).iter_errors(args))
    except Exception as exc:  # a schema jsonschema cannot apply (unknown type, bad $ref)
        return [f"tool '{name}' has parameters that cannot be checked: {exc}"]
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    return list(dict.fromkeys(line for e in errors for line in _problems(e)))
