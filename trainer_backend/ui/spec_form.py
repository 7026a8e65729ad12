"""Gradio widgets generated from the JobSpec fields: labels, sections, visibility, defaults, ranges, choices and help
text all come from the spec (spec_base._f: `label`, `group`, `when`, `ui`).

Nothing here restates a parameter: add a field to the spec and it appears in the form, the YAML, the CLI
(`--set`), the API schema and validation at once. The Gradio-free parts (which fields there are, what a widget
value means for the spec, which field an error belongs to) live in form_fields.py.
"""
from __future__ import annotations

import typing
from typing import Any, Optional

import gradio as gr
from pydantic.fields import FieldInfo

from .form_fields import (CHOICE_TEXT, FormField, _number_text, _unwrap, applies, range_hint, spec_defaults,
                          spec_fields)

__all__ = ["FormField", "build_fields", "build_section_fields", "widget_updates"]


def _component(key: str, info: FieldInfo, meta: dict, id_prefix: str = "field-") -> FormField:
    annotation, optional = _unwrap(info.annotation)
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    label = meta.get("label") or key.rsplit(".", 1)[-1].replace("_", " ").capitalize()
    hint = range_hint(info)
    # The spec key is shown small, after the help, for people who script (YAML, CLI --set, the API).
    help_text = " ".join(t for t in (info.description or "", hint) if t) + f" · {key}"
    common: dict[str, Any] = {"label": label, "info": help_text,
                              "elem_id": id_prefix + key.replace(".", "-").replace("_", "-"),
                              "elem_classes": classes(None, applies(meta.get("when"), spec_defaults())),
                              "min_width": 160}  # a row of many fields wraps instead of squeezing one
    kind = "text"
    comp: Any
    if key in CHOICE_TEXT:  # a free value with usual choices (valid_split: none / auto / a split name)
        comp = gr.Dropdown(CHOICE_TEXT[key], value=default or CHOICE_TEXT[key][0], allow_custom_value=True, **common)
        kind = "choice_text"
    elif annotation is bool and optional:
        comp = gr.Dropdown(["auto", "true", "false"], value="auto" if default is None else str(default).lower(),
                           **common)
        kind = "tristate"
    elif annotation is bool:
        comp = gr.Checkbox(value=bool(default), **common)
        kind = "bool"
    elif typing.get_origin(annotation) is typing.Literal:
        comp = gr.Dropdown(list(typing.get_args(annotation)), value=default, **common)
        kind = "choice"
    elif typing.get_origin(annotation) is list and typing.get_origin(item := typing.get_args(annotation)[0]) \
            is typing.Literal:  # several of fixed choices (export.formats): one tick box each
        comp = gr.CheckboxGroup(list(typing.get_args(item)), value=list(default or []), **common)
        kind = "choices"
    elif annotation in (int, float):
        # Never gr.Number's minimum/maximum: Gradio would refuse the whole event (Check, Plan, Start) with a toast
        # that names no field. An optional number is a text box: empty stays empty (gr.Number shows a 0).
        kind = annotation.__name__
        if optional:
            comp = gr.Textbox(value="" if default is None else _number_text(default), placeholder="empty: the default",
                              **common)
        else:
            comp = gr.Number(value=default, precision=0 if annotation is int else None, **common)
    else:
        comp = gr.Textbox(value="" if default is None else str(default), **common)
    return FormField(key, kind, optional, comp, label=label, help=help_text, group=meta.get("group", ""),
                     when=meta.get("when"), level=meta.get("ui", "advanced"))


def classes(problem: Optional[str], applies: bool) -> list[str]:
    """A field's CSS classes: red when wrong; hidden by CSS when it does not apply (not unmounted with
    visible=False: Gradio 6 drops a value set on an unmounted component, so a preset filling eval_steps while it is
    hidden would be lost)."""
    return (["field-invalid"] if problem else []) + ([] if applies else ["field-na"])


def group_fields(group: str, level: Optional[str] = None) -> list[tuple[str, FieldInfo, dict]]:
    """The spec fields of one form group, basic fields first; `level` keeps only 'basic' or only the other
    fields."""
    chosen = [(k, i, m) for k, i, m in spec_fields() if m.get("group") == group]
    if level == "basic":
        chosen = [f for f in chosen if f[2].get("ui") in ("basic", "compute")]
    elif level is not None:
        chosen = [f for f in chosen if f[2].get("ui") not in ("basic", "compute")]
    chosen.sort(key=lambda f: f[2].get("ui") not in ("basic", "compute"))
    return chosen


def build_fields(group: str, level: Optional[str] = None, id_prefix: str = "field-",
                 leave_out: tuple[str, ...] = ()) -> list[FormField]:
    """Create the widgets of one form group (inside the caller's current Gradio layout): group_fields' order, but
    the keys in `leave_out`. `id_prefix` starts each widget's elem_id (a second form of the same fields, e.g. the
    Jobs tab's Export box, needs ids of its own)."""
    return [_component(k, i, m, id_prefix) for k, i, m in group_fields(group, level) if k not in leave_out]


def build_section_fields(model: Any, prefix: str, leave_out: tuple[str, ...] = (),
                         id_prefix: str = "field-") -> list[FormField]:
    """The widgets of a section the settings form leaves out (an optional one, e.g. `sweep`), from its fields that
    carry form metadata, basic ones first, keys prefixed (`sweep.trials`); `leave_out`: fields with a widget of
    their own."""
    chosen = [(name, info) for name, info in model.model_fields.items() if name not in leave_out
              and isinstance(info.json_schema_extra, dict) and "ui" in info.json_schema_extra]
    chosen.sort(key=lambda f: f[1].json_schema_extra.get("ui") != "basic")  # type: ignore[union-attr]
    return [_component(f"{prefix}.{name}", info, info.json_schema_extra, id_prefix)  # type: ignore[arg-type]
            for name, info in chosen]


def widget_updates(fields: list[FormField], errors: dict[str, str], shown_errors: dict[str, str],
                   visible: dict[str, bool], shown_visible: dict[str, bool]) -> list[Any]:
    """One update per widget: its help line says what is wrong with it (and the field gets a red border), or goes
    back to the help text; hidden when it does not apply. Unchanged widgets are skipped (no re-render)."""
    out: list[Any] = []
    for f in fields:
        update: dict[str, Any] = {}
        problem, applies = errors.get(f.key), visible.get(f.key, True)
        if problem != shown_errors.get(f.key):
            update["info"] = f"⚠️ {problem} — {f.help}" if problem else f.help
        if problem != shown_errors.get(f.key) or applies != shown_visible.get(f.key, True):
            update["elem_classes"] = classes(problem, applies)
        out.append(gr.update(**update) if update else gr.skip())
    return out
