"""The Train tab's form without Gradio: which spec fields it shows and where (spec_base._f's `label`, `group`,
`when`), what a widget value means for the spec, when a field applies, and which field a spec error belongs to.
spec_form.py makes the widgets."""
from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import annotated_types as at
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from ..spec import JobSpec
from ..trainer_registry import TRAINERS

# Fields with a dedicated widget elsewhere on the Train tab, or never set from a browser.
SPECIAL = {"output_dir", "model.base_model", "data.path", "data.column_mapping", "data.prompt_template",
           "hub.token", "training.resume_from_checkpoint", "grpo.rewards"}
# Free values with usual choices: a dropdown that also takes a typed value.
CHOICE_TEXT = {"data.valid_split": ["none", "auto"],
               "sweep.objective": ["eval_loss", "heldout.exact_match", "heldout.rouge_l", "heldout.eval_loss",
                                   "heldout.reward", "heldout.preference_accuracy", "reward"]}
_NONE_CHOICES = {"none", ""}


@dataclass
class FormField:
    key: str          # dotted spec path, e.g. "training.learning_rate"
    kind: str         # bool | tristate | choice | choices | choice_text | int | float | text
    optional: bool
    component: Any
    label: str = ""
    help: str = ""    # the help line under the widget (description, range, spec key)
    group: str = ""   # the form section (spec_base.FORM_GROUPS) or step (spec_base.STEP_GROUPS)
    when: Optional[str] = None
    level: str = "advanced"


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) \
            and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def range_hint(info: FieldInfo) -> str:
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


@lru_cache(maxsize=1)
def spec_fields() -> tuple[tuple[str, FieldInfo, dict], ...]:
    """(dotted key, FieldInfo, form metadata with its `group` filled in) of every field the form shows: the
    sections' fields in spec order, then the spec's own top-level fields (the run name after the trainer)."""
    out, top = [], []
    for name, info in JobSpec.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):  # a section
            for sub, sub_info in annotation.model_fields.items():
                key = f"{name}.{sub}"
                extra = sub_info.json_schema_extra if isinstance(sub_info.json_schema_extra, dict) else {}
                if key not in SPECIAL and "ui" in extra:
                    out.append((key, sub_info, {**extra, "group": extra.get("group", name)}))
        elif name not in SPECIAL and isinstance(info.json_schema_extra, dict):
            top.append((name, info, {**info.json_schema_extra, "group": info.json_schema_extra.get("group", "method")}))
    return tuple(out + top)


@lru_cache(maxsize=1)
def _defaults() -> tuple[tuple[str, Any], ...]:
    return tuple((k, None if i.is_required() else i.get_default(call_default_factory=True)) for k, i, _ in spec_fields())


def spec_defaults() -> dict[str, Any]:
    """Every form field's spec default (what decides which fields apply while the form leaves them empty); computed
    once, a fresh dict per call."""
    return dict(_defaults())


def _number_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number(value: Any, kind: str) -> Any:
    """A number widget's value for the spec: None when empty; text that is no number goes through as written, so
    the spec's check names the field."""
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


def spec_value(f: FormField, value: Any) -> Any:
    """What a widget's value means in the spec (None: left out, the spec's default applies)."""
    if f.kind == "tristate":
        return None if value in (None, "auto") else value == "true"
    if f.kind in ("int", "float"):
        return _number(value, f.kind)
    if f.kind == "choices":
        return list(value or [])
    if f.kind == "choice_text":
        value = value.strip() if isinstance(value, str) else value
        return None if value in _NONE_CHOICES or value is None else value
    if f.kind == "text" and isinstance(value, str):
        return value.strip() or None
    return value


def values_to_raw(fields: list[FormField], values: list[Any], raw: Optional[dict] = None) -> dict:
    """Widget values -> nested spec dict (empty optional values are left out so spec defaults apply)."""
    raw = raw if raw is not None else {}
    for f, value in zip(fields, values):
        value = spec_value(f, value)
        if value is None:
            continue
        node = raw
        *parents, leaf = f.key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return raw


def widget_value(f: FormField, value: Any) -> Any:
    """A spec value -> what its widget shows."""
    if f.kind == "tristate":
        return "auto" if value is None else str(value).lower()
    if f.kind == "choices":
        return list(value or [])
    if f.kind == "choice_text":
        return "none" if value is None else str(value)
    if f.kind == "text" or (f.optional and f.kind in ("int", "float")):  # text boxes
        return "" if value is None else _number_text(value) if f.kind != "text" else str(value)
    return value


def raw_to_values(fields: list[FormField], spec: JobSpec) -> list[Any]:
    """A spec -> widget values (for 'load config')."""
    data = spec.model_dump(mode="json")
    out = []
    for f in fields:
        node: Any = data
        for part in f.key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out.append(widget_value(f, node))
    return out


def applies(when: Optional[str], values: dict[str, Any]) -> bool:
    """Does a field with this `when` condition matter for these spec values (dotted key -> spec value)?"""
    if not when:
        return True
    key, _, wanted = when.partition("=")
    if key.startswith("trainer."):
        info = TRAINERS.get(str(values.get("training.trainer") or "sft"))
        actual: Any = getattr(info, key.split(".", 1)[1], None) if info else None
    else:
        actual = values.get(key)
    if not wanted:
        return bool(actual)
    return str(actual).lower() == wanted.lower() if actual is not None else False


def visibility(fields: list[FormField], values: list[Any]) -> dict[str, bool]:
    """Which fields apply to what is on screen now (defaults stand in for fields left empty)."""
    now = {f.key: spec_value(f, v) for f, v in zip(fields, values)}
    merged = {**spec_defaults(), **{k: v for k, v in now.items() if v is not None}}
    return {f.key: applies(f.when, merged) for f in fields}


_SAYS = {"greater_than_equal": "must be at least {ge}", "less_than_equal": "must be at most {le}",
         "greater_than": "must be more than {gt}", "less_than": "must be less than {lt}",
         "int_parsing": "must be a whole number", "int_from_float": "must be a whole number",
         "float_parsing": "must be a number", "bool_parsing": "must be true or false"}
_KEY = re.compile(r"\b([a-z_]+\.[a-z_]+)\b")


def _message(err: Any) -> str:
    template = _SAYS.get(err["type"])
    if template:
        return template.format(**{k: f"{v:g}" if isinstance(v, float) else v for k, v in (err.get("ctx") or {}).items()})
    return str(err["msg"]).removeprefix("Value error, ")


def field_errors(raw: dict, keys: set[str]) -> tuple[dict[str, str], list[str]]:
    """Check `raw` as a JobSpec: (form key -> what is wrong with it, problems that belong to no form field).
    A problem between fields ("block_size must be <= model_max_length") is shown at every field it names."""
    try:
        JobSpec.model_validate(raw)
    except ValidationError as exc:
        by_key: dict[str, list[str]] = {}
        general: list[str] = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if loc in keys:
                by_key.setdefault(loc, []).append(_message(err))
                continue
            for part in _message(err).split("; "):  # a section's or the spec's own check joins its problems
                named = [k for k in _KEY.findall(part) if k in keys]
                if loc == "data.path" or loc == "data":
                    general.append("pick a dataset (a sample, an upload or a Hub id)" if err["type"] == "missing"
                                   else f"{loc}: {part}")
                elif named:
                    for k in dict.fromkeys(named):
                        by_key.setdefault(k, []).append(part)
                else:
                    general.append(f"{loc}: {part}" if loc else part)
        return {k: "; ".join(dict.fromkeys(v)) for k, v in by_key.items()}, list(dict.fromkeys(general))
    return {}, []
