"""The app's named API as MCP tools: one tool per endpoint, described by the endpoint itself.

A tool is a named endpoint of ui/api.py exactly as install_gate left it (the gated function), so an MCP call meets
the same access rules, the same checks and the same error messages as a gradio_client call. Its name is the
endpoint's api_name, its description the endpoint's docstring, its arguments the endpoint's parameters (types and
defaults from the signature): nothing about an action is written twice. A `spec` argument takes the job spec as an
object, checked against JobSpec's JSON schema (standard keywords only, the form's UI hints left out), or as the
YAML / JSON text the API takes; a `dataset` argument is a path the app may read (see PARAMETER_HELP).

A streaming endpoint (a job's events, an export, an evaluation report, a chat answer) is read to its end within
STREAM_WAIT_S: a tool call must answer within one request. Each item goes to the client as a progress
notification; a stream still running at the deadline answers its latest state, and `job_updates` or the matching
status tool follows it from there.
"""
from __future__ import annotations

import inspect
import json
import re
import time
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Optional, Union

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .gate import outside_request
from .streams import streams_end_by

# Most MCP clients give up on a tool call after 60 s without an answer.
STREAM_WAIT_S = 50.0
# What an argument means, for the names the endpoints share (the endpoints' docstrings say the rest).
PARAMETER_HELP = {
    "spec": "The job spec: an object (this schema; a `sweep` section for start_sweep) or its YAML / JSON text.",
    "dataset": "Path of the dataset file on the app's machine (local app), or of a file you uploaded to the Space "
               "(POST /gradio_api/upload with your token: pass the path it answers). Empty: the spec's data.path "
               "(a file path or a Hub dataset id).",
    "job_id": "A job id (or a unique prefix of one); list_jobs lists them.",
    "adapter": "A finished job's id, its folder, or a Hub repo id of an adapter.",
    "cursor": "The `cursor` of the previous job_updates answer; \"\" reads the job from its start.",
    "wait": "Seconds (0-30) to hold the call until something new happens or the job ends.",
}
# Endpoints that only read: MCP clients may call them without asking the person first.
READ_ONLY = {"validate_dataset", "dataset_report", "plan_job", "list_jobs", "job_status", "job_events", "job_updates",
             "job_logs", "sweep_status", "export_status", "evaluation_report", "chat", "compare", "evaluate"}
# JSON Schema's own keywords: the schema an agent reads carries these, not the form's hints (ui, label, group).
_SCHEMA_KEYWORDS = {"type", "properties", "required", "enum", "const", "default", "description", "anyOf", "oneOf",
                    "allOf", "$ref", "$defs", "items", "prefixItems", "minItems", "maxItems", "minimum", "maximum",
                    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "format",
                    "additionalProperties", "propertyNames", "discriminator"}
_INJECTED = ("Request", "OAuthProfile", "OAuthToken")  # parameters Gradio fills in itself, never the caller


class ToolError(Exception):
    """A call refused before the endpoint ran (unknown tool, arguments that do not fit), with the fix."""


@dataclass(frozen=True)
class McpTool:
    name: str
    description: str
    fn: Callable[..., Any]  # the gated endpoint function
    arguments: type[BaseModel]  # what a caller may send: the endpoint's parameters
    injected: dict[str, str]  # parameter -> what Gradio would fill in (Request, OAuthProfile, OAuthToken)
    input_schema: dict[str, Any]
    streams: bool
    read_only: bool


def _json_schema(schema: Any, in_names: bool = False) -> Any:
    """`schema` with JSON Schema's own keywords only (inside `properties` / `$defs` the keys are names), in its
    shorter spelling: an optional scalar is `type: [x, "null"]`, a null default is left out. An agent's context
    holds every tool's schema: the same meaning in fewer bytes."""
    if isinstance(schema, list):
        return [_json_schema(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _json_schema(v, k in ("properties", "$defs")) for k, v in schema.items()
           if in_names or k in _SCHEMA_KEYWORDS}
    if in_names:
        return out
    variants = out.get("anyOf")
    if isinstance(variants, list) and len(variants) == 2 and {"type": "null"} in variants:
        other = next(v for v in variants if v != {"type": "null"})
        if set(other) == {"type"} and isinstance(other["type"], str):
            del out["anyOf"]
            out["type"] = [other["type"], "null"]
    if "default" in out and out["default"] is None:
        del out["default"]
    return out


@lru_cache(maxsize=1)
def job_spec_schema() -> dict[str, Any]:
    """JobSpec's JSON schema as tools carry it: `$defs` hoisted to the tool's root (refs point at #/$defs)."""
    from ..spec import JobSpec

    return _json_schema(JobSpec.model_json_schema())  # type: ignore[no-any-return]


def _injected_kind(annotation: Any) -> Optional[str]:
    names = {getattr(a, "__name__", "") for a in (typing.get_args(annotation) or (annotation,))}
    return next((n for n in _INJECTED if n in names), None)


def _arguments_model(name: str, fn: Callable[..., Any]) -> tuple[type[BaseModel], dict[str, str]]:
    hints = typing.get_type_hints(fn)
    fields: dict[str, Any] = {}
    injected: dict[str, str] = {}
    for param in inspect.signature(fn).parameters.values():
        annotation = hints.get(param.name, Any)
        kind = _injected_kind(annotation)
        if kind:
            injected[param.name] = kind
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        if param.name == "spec":
            annotation = Union[dict[str, Any], str]
        elif param.name == "dataset":
            annotation, default = Optional[str], None
        fields[param.name] = (annotation, default)
    model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    return model, injected


def _input_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = _json_schema(model.model_json_schema())
    defs = dict(schema.pop("$defs", {}))
    for prop, info in schema.get("properties", {}).items():
        if prop == "spec":
            spec_schema = dict(job_spec_schema())
            defs.update(spec_schema.pop("$defs", {}))
            defs["JobSpec"] = spec_schema
            info.clear()
            info["anyOf"] = [{"$ref": "#/$defs/JobSpec"}, {"type": "string"}]
        if prop in PARAMETER_HELP:
            info["description"] = PARAMETER_HELP[prop]
    if defs:
        schema["$defs"] = defs
    return schema  # type: ignore[no-any-return]


def _description(fn: Callable[..., Any]) -> str:
    return re.sub(r"\s*\n\s*", " ", inspect.getdoc(fn) or "").strip()


def mcp_tools(demo: Any) -> dict[str, McpTool]:
    """A tool for every public named endpoint of `demo` (after install_gate), by api_name: the app's actions,
    not Gradio's own events."""
    tools: dict[str, McpTool] = {}
    for block_fn in demo.fns.values():
        if block_fn.fn is None or not block_fn.api_name or block_fn.api_visibility != "public" or \
                block_fn.api_name.startswith("_"):  # Gradio's own events (the sign-in button's status check)
            continue
        original = inspect.unwrap(block_fn.fn)
        arguments, injected = _arguments_model(block_fn.api_name, original)
        tools[block_fn.api_name] = McpTool(
            name=block_fn.api_name, description=_description(original), fn=block_fn.fn, arguments=arguments,
            injected=injected, input_schema=_input_schema(arguments), streams=inspect.isgeneratorfunction(original),
            read_only=block_fn.api_name in READ_ONLY)
    return tools


def checked_arguments(tool: McpTool, arguments: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The caller's arguments as the endpoint takes them; ToolError naming each one that does not fit."""
    try:
        values = tool.arguments.model_validate(arguments or {})
    except ValidationError as exc:
        raise ToolError(f"{tool.name}: {_problems(tool, exc)}") from None
    kwargs = {name: getattr(values, name) for name in type(values).model_fields}
    if isinstance(kwargs.get("spec"), dict):  # the API takes the spec as text; JSON is YAML
        kwargs["spec"] = json.dumps(kwargs["spec"])
    return kwargs


def _problems(tool: McpTool, exc: ValidationError) -> str:
    """Each argument that does not fit, once, in words (a value no type of a union takes is one problem)."""
    by_argument: dict[str, list[Any]] = {}
    for error in exc.errors():
        by_argument.setdefault(str(error["loc"][0]) if error["loc"] else "arguments", []).append(error)
    takes = ", ".join(tool.arguments.model_fields)
    problems = []
    for name, errors in list(by_argument.items())[:10]:
        first = errors[0]
        if first["type"] == "extra_forbidden":
            problems.append(f"{name}: no such argument ({tool.name} takes {takes})")
        elif first["type"] == "missing":
            problems.append(f"{name}: missing (it has no default)")
        elif len(errors) > 1 and all(len(e["loc"]) == 2 for e in errors):  # the branches of a union
            problems.append(f"{name}: {type(first['input']).__name__} {str(first['input'])[:40]!r} fits none of its "
                            f"types ({'; '.join(e['msg'] for e in errors)})")
        else:
            where = ".".join(str(p) for p in first["loc"])
            problems.append(f"{where}: {first['msg']}")
    return "; ".join(problems)


def call_tool(tool: McpTool, kwargs: dict[str, Any], request: Any,
              on_item: Optional[Callable[[int, Any], None]] = None,
              wait_s: float = STREAM_WAIT_S) -> tuple[Any, bool]:
    """Run the endpoint as `request`'s caller (blocking: call it from a worker thread). Returns (result, ended):
    a stream's last item, and whether the stream ended before the deadline. Refusals and failures raise what the
    endpoint raises (a gr.Error with the message a gradio_client caller gets)."""
    for name in tool.injected:
        kwargs[name] = request if tool.injected[name] == "Request" else None
    deadline = time.monotonic() + wait_s
    with outside_request(request), streams_end_by(deadline):
        if not tool.streams:
            return tool.fn(**kwargs), True
        last: Any = None
        for index, item in enumerate(tool.fn(**kwargs)):
            last = item
            if on_item is not None:
                on_item(index, item)
            if time.monotonic() > deadline:
                return last, False
        return last, time.monotonic() <= deadline
