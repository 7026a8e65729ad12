"""Gradio widgets generated from the JobSpec fields: defaults, ranges, choices and help text come from spec.py.

Nothing here restates a parameter: add a field to the spec and it appears in the form, the YAML, the CLI
(`--set`), the API schema and validation at once.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Optional

import annotated_types as at
import gradio as gr
from pydantic.fields import FieldInfo

from ..spec import JobSpec

# Fields with a dedicated widget elsewhere on the Train tab, or never set from a browser.
SPECIAL = {"output_dir", "model.base_model", "data.path", "data.column_mapping", "data.prompt_template",
           "hub.token", "training.resume_from_checkpoint"}
SECTIONS = ("model", "data", "lora", "lengths", "training", "hub", "compute")
# Sections of one trainer's settings: the Train tab shows each in its own group, only while that trainer is chosen.
TRAINER_SECTIONS = ("grpo", "kto")


@dataclass
class FormField:
    key: str          # dotted spec path, e.g. "training.learning_rate"
    kind: str         # bool | tristate | choice | int | float | text
    optional: bool
    component: Any


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) \
            and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def _range_hint(info: FieldInfo) -> str:
    """The field's range in words, from its constraints: "(1 to 64)", "(more than 0, less than 0.9)"."""
    low = high = ""
    for m in info.metadata:
        if isinstance(m, at.Ge):
            low = f"{m.ge:g}"
        elif isinstance(m, at.Gt):
            low = f"more than {m.gt:g}"
        if isinstance(m, at.Le):
            high = f"{m.le:g}"
        elif isinstance(m, at.Lt):
            high = f"less than {m.lt:g}"
    if low and high:
        if not (low.startswith("more") or high.startswith("less")):
            return f"({low} to {high})"
        low = low if low.startswith("more") else f"at least {low}"
        high = high if high.startswith("less") else f"at most {high}"
        return f"({low}, {high})"
    if low:
        return f"({low})" if low.startswith("more") else f"(at least {low})"
    if high:
        return f"({high})" if high.startswith("less") else f"(at most {high})"
    return ""


def _number_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number(value: Any, kind: str) -> Any:
    """A number widget's value for the spec: None when empty; text that is no number goes through as written, so
    the spec's check names the field ("training.max_steps: Input should be a valid integer")."""
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        try:
            value = float(value) if kind == "float" or not value.lstrip("+-").isdigit() else int(value)
        except ValueError:
            return value
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)  # 3.0 from a number box is 3; 3.5 stays 3.5 and the spec refuses it
    return value


def _component(key: str, info: FieldInfo) -> FormField:
    annotation, optional = _unwrap(info.annotation)
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    label = key.split(".", 1)[-1]
    help_text = info.description or ""
    if annotation is bool and optional:
        comp = gr.Dropdown(["auto", "true", "false"], value="auto" if default is None else str(default).lower(),
                           label=label, info=help_text)
        return FormField(key, "tristate", True, comp)
    if annotation is bool:
        return FormField(key, "bool", False, gr.Checkbox(value=bool(default), label=label, info=help_text))
    if typing.get_origin(annotation) is typing.Literal:
        comp = gr.Dropdown(list(typing.get_args(annotation)), value=default, label=label, info=help_text)
        return FormField(key, "choice", optional, comp)
    if annotation in (int, float):
        # No minimum/maximum on the widget: Gradio would refuse the whole event (Check, Plan, Start) with a toast
        # that names no field. The range is said in the help text, and the spec's check names the field.
        hint = _range_hint(info)
        if optional:  # a text box: empty stays empty (the spec's default applies), where gr.Number shows a 0
            box = gr.Textbox(value="" if default is None else _number_text(default), label=label,
                             info=" ".join(t for t in (help_text, hint, "Empty: the default.") if t),
                             placeholder="empty")
            return FormField(key, annotation.__name__, True, box)
        number = gr.Number(value=default, label=label, info=" ".join(t for t in (help_text, hint) if t),
                           precision=0 if annotation is int else None)
        return FormField(key, annotation.__name__, optional, number)
    return FormField(key, "text", optional, gr.Textbox(value="" if default is None else str(default), label=label,
                                                       info=help_text))


def iter_fields(level: str, sections: tuple[str, ...] = SECTIONS) -> list[tuple[str, FieldInfo]]:
    """(dotted key, FieldInfo) of every simple field at this UI level ('basic', 'advanced' or 'compute') of these
    sections (and of the spec's top level, unless only TRAINER_SECTIONS are asked for). Lists (grpo.rewards) are
    not simple fields: they have their own editor."""
    out = []
    for name, info in JobSpec.model_fields.items():
        if name in TRAINER_SECTIONS and name not in sections:
            continue
        if name in sections:
            section = info.annotation
            assert section is not None  # a section is a sub-model of the spec
            for sub, sub_info in section.model_fields.items():
                key = f"{name}.{sub}"
                extra = sub_info.json_schema_extra or {}
                if key not in SPECIAL and isinstance(extra, dict) and extra.get("ui") == level:
                    out.append((key, sub_info))
        elif sections == SECTIONS and name not in SPECIAL and isinstance(info.json_schema_extra, dict) \
                and info.json_schema_extra.get("ui") == level:
            out.append((name, info))
    return out


def build_fields(level: str, sections: tuple[str, ...] = SECTIONS) -> list[FormField]:
    """Create the widgets (inside the caller's current Gradio layout context)."""
    return [_component(key, info) for key, info in iter_fields(level, sections)]


def values_to_raw(fields: list[FormField], values: list[Any], raw: Optional[dict] = None) -> dict:
    """Widget values -> nested spec dict (empty optional values are left out so spec defaults apply)."""
    raw = raw if raw is not None else {}
    for f, value in zip(fields, values):
        if f.kind == "tristate":
            value = None if value in (None, "auto") else value == "true"
        elif f.kind in ("int", "float"):
            value = _number(value, f.kind)
        elif f.kind == "text" and isinstance(value, str):
            value = value.strip() or None
        if value is None:
            continue
        node = raw
        *parents, leaf = f.key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return raw


def raw_to_values(fields: list[FormField], spec: JobSpec) -> list[Any]:
    """A spec -> widget values (for 'load config')."""
    data = spec.model_dump(mode="json")
    out = []
    for f in fields:
        node: Any = data
        for part in f.key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if f.kind == "tristate":
            node = "auto" if node is None else str(node).lower()
        elif f.kind == "text" or (f.optional and f.kind in ("int", "float")):  # text boxes
            node = "" if node is None else _number_text(node) if f.kind != "text" else str(node)
        out.append(node)
    return out
