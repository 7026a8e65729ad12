"""The Train tab's form as one object: its widgets, how their values become a spec, and what the page shows about
that spec while it is edited (field errors beside the fields, fields that do not apply hidden, a check result that
no longer matches the form withdrawn). Callbacks here gather and show; the service decides."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import gradio as gr
import yaml

from ..spec import ColumnMapping
from . import reward_table
from .form_fields import FormField, field_errors, spec_value, values_to_raw, visibility, widget_value
from .spec_form import widget_updates

MAPPING_ROLES = [r for r in ColumnMapping.model_fields if r != "roles"]
CLI_LINE = "python -m trainer_backend validate spec.yaml && python -m trainer_backend submit spec.yaml"
STALE = ("✏️ The form changed since the last check: press **Check data** again (Start checks it too).")


@dataclass
class FormState:
    """What the page shows about the form now: the spec text, and field errors and visibility (to skip unchanged
    widgets). The spec text a shown check / plan result was for lives in States of its own (`checked`, `planned`):
    an edit that races a check must not overwrite what the check wrote."""
    spec_text: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)
    visible: dict[str, bool] = field(default_factory=dict)
    problem: Optional[str] = None   # what keeps the form from being a spec (a bad rewards row)


def dataset_source(sample: Optional[str], upload: Any, hub_id: str, samples: dict[str, str]) -> Optional[str]:
    """The dataset the user picked: an upload wins, then a Hub id, then a shipped sample."""
    if upload:
        return str(upload) if isinstance(upload, str) else str(upload.name)  # gradio passes a str subclass
    if hub_id and hub_id.strip():
        return hub_id.strip()
    return samples.get(sample) if sample else None


class TrainForm:
    """The inputs of the Train tab in a fixed order: base model, sample, upload, hub id, the mapping, every spec
    widget, the rewards table."""

    def __init__(self, base_model: Any, sample: Any, upload: Any, hub_id: Any, mapping: list[Any],
                 fields: list[FormField], rewards: Any, samples: dict[str, str], default_model: str) -> None:
        self.base_model, self.sample, self.upload, self.hub_id = base_model, sample, upload, hub_id
        self.mapping, self.fields, self.rewards = mapping, fields, rewards
        self.samples, self.default_model = samples, default_model
        self.keys = {f.key for f in fields}

    @property
    def widgets(self) -> list[Any]:
        return [f.component for f in self.fields]

    @property
    def inputs(self) -> list[Any]:
        return [self.base_model, self.sample, self.upload, self.hub_id, *self.mapping, *self.widgets, self.rewards]

    def field(self, key: str) -> FormField:
        return next(f for f in self.fields if f.key == key)

    def split(self, args: tuple) -> tuple[str, Optional[str], Any, str, list[str], list[Any], Any]:
        base, sample, upload, hub, *rest = args
        n = len(MAPPING_ROLES)
        return base, sample, upload, hub, list(rest[:n]), list(rest[n: n + len(self.fields)]), rest[n + len(self.fields)]

    def raw(self, args: tuple) -> tuple[dict, Optional[str]]:
        """The spec the form describes (nested dict) and what keeps the rewards table from being part of it."""
        base, sample, upload, hub, maps, values, rewards = self.split(args)
        raw: dict = {"model": {"base_model": base or self.default_model}, "data": {}}
        source = dataset_source(sample, upload, hub, self.samples)
        if source:
            raw["data"]["path"] = source
        chosen = {role: col for role, col in zip(MAPPING_ROLES, maps) if col}
        if chosen:
            raw["data"]["column_mapping"] = chosen
        raw = values_to_raw(self.fields, values, raw)
        return raw, reward_table.apply_trainer_sections(raw, rewards)

    # refresh() returns: preview, CLI line, rewards problem, message, plan, report, sample string, report box, the
    # FormState, `checked`, `planned`, then one update per widget (from WIDGETS_AT on).
    WIDGETS_AT = 11

    def refresh(self, state: Optional[FormState], checked: Optional[str], planned: Optional[str], *args: Any) -> tuple:
        """After any edit: the YAML preview, field errors beside their fields, fields that do not apply hidden,
        and a check result (message and report) or plan withdrawn once the form no longer says what it was for."""
        old = state or FormState()
        raw, problem = self.raw(args)
        text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
        errors, general = field_errors(raw, self.keys)
        values = self.split(args)[5]
        new = FormState(text, errors, general, visibility(self.fields, values), problem)
        stale_check = checked is not None and checked != text
        stale_plan = planned is not None and planned != text
        preview = f"# grpo.rewards left out: {problem}\n{text}" if problem else text
        return (preview, CLI_LINE, f"⚠️ {problem}" if problem else "",
                STALE if stale_check else gr.skip(), "" if stale_plan else gr.skip(),
                *(("", "", gr.update(open=False)) if stale_check else (gr.skip(),) * 3), new,
                None if stale_check else gr.skip(), None if stale_plan else gr.skip(),
                *widget_updates(self.fields, errors, old.errors, new.visible, old.visible))

    def checked(self, spec_text: str, state: Optional[FormState], upload: Any = None) -> FormState:
        """What Check / Plan / Start act on: the spec text the page shows (the YAML box, just refreshed), its field
        errors read from that very text, and the rewards problem the form found. An upload sent with the spec is
        its dataset (the service puts it in data.path), so a spec without a path is not missing one."""
        try:
            raw = yaml.safe_load(spec_text or "") or {}
        except yaml.YAMLError as exc:
            return FormState(spec_text, general=[f"the spec is not valid YAML: {exc}"])
        if not isinstance(raw, dict):
            return FormState(spec_text, general=["the spec must be a mapping of sections"])
        if upload and isinstance(raw.get("data", {}), dict):
            raw = {**raw, "data": {"path": "upload", **raw.get("data", {})}}
        errors, general = field_errors(raw, self.keys)
        return FormState(spec_text, errors, general, problem=state.problem if state else None)

    def problems(self, state: FormState) -> list[str]:
        """Everything that keeps the form from being a valid spec, one line each, fields by their label."""
        lines = [f"**{self.field(k).label}** (`{k}`): {msg}" for k, msg in state.errors.items()]
        lines += state.general
        if state.problem:
            lines.append(state.problem)
        return lines

    def fill(self, values: dict[str, Any], args: tuple) -> list[Any]:
        """New widget values with `values` (dotted spec key -> spec value) applied; other widgets skipped."""
        out: list[Any] = []
        for f in self.fields:
            out.append(widget_value(f, values[f.key]) if f.key in values else gr.skip())
        return out

    def changes(self, values: dict[str, Any], args: tuple) -> list[str]:
        """What applying `values` changes on screen, in words: 'Rank 16 → 8'."""
        current = dict(zip((f.key for f in self.fields), self.split(args)[5]))
        lines = []
        for f in self.fields:
            if f.key in values:
                before, after = current.get(f.key), widget_value(f, values[f.key])
                if spec_value(f, before) != values[f.key]:
                    lines.append(f"{f.label} {_shown(before)} → {_shown(after)}")
        return lines


def _shown(value: Any) -> str:
    if value in ("", None):
        return "(empty)"
    return f"{value:g}" if isinstance(value, float) else str(value)


def upload_path(up: Any) -> Optional[str]:
    if up is None:
        return None
    return str(up) if isinstance(up, str) else str(getattr(up, "name", ""))


def problems_markdown(errors: list[str]) -> str:
    return "**Fix these before training:**\n" + "\n".join(f"- {e}" for e in errors)
