"""Sweeps for the Train tab, the Jobs tab and the named API, without Gradio: start one from a client's spec, read
it, promote its best trial. Access checks happen in ui/api.py and the tabs (members who may train); every job a
sweep starts acts with the Hub token of whoever started (or resumed, or promoted) it, never the Space's.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

import yaml

from ..errors import SpecError
from ..jobs.store import JobNotFound, JobStateError
from ..spec_sweep import ParamRange, SweepSpec
from ..sweep import actions
from .service import StudioService

# The Train tab's table of searched settings: one row per spec key, a range or a list of choices.
PARAM_COLUMNS = ["Setting (spec key)", "From", "To", "Log scale", "Or choices (comma-separated)"]
PARAM_TYPES: list[Literal["str", "bool"]] = ["str", "str", "str", "bool", "str"]
DEFAULT_PARAMS = [["training.learning_rate", "1e-5", "1e-3", True, ""], ["lora.r", "", "", False, "8, 16, 32"]]


def parameters_from_table(rows: Any) -> tuple[dict[str, Any], list[str]]:
    """The table's rows -> sweep.parameters (raw), and one problem per wrong row naming its row and column."""
    out: dict[str, Any] = {}
    problems: list[str] = []
    wrong: set[str] = set()  # keys whose row already has a problem: not checked again as a range
    for i, row in enumerate(_rows(rows), start=1):
        key, low, high, log, choices = (list(row) + [""] * 5)[:5]
        key = str(key or "").strip()
        if not key:
            if any(str(c or "").strip() for c in (low, high, choices)):
                problems.append(f"row {i}: the setting (spec key) is empty, e.g. training.learning_rate")
            continue
        where = f"row {i} ({key})"
        if str(choices or "").strip():
            out[key] = {"choices": [yaml.safe_load(c.strip()) for c in str(choices).split(",") if c.strip()]}
            continue
        entry: dict[str, Any] = {"log": _truthy(log)}
        for name, text in (("low", low), ("high", high)):
            try:
                entry[name] = float(str(text).strip())
            except ValueError:
                problems.append(f"{where}: '{'From' if name == 'low' else 'To'}' must be a number (it is "
                                f"'{text}'), or give choices")
                wrong.add(key)
        if key in out:
            problems.append(f"{where}: this setting is in the table twice")
        out[key] = entry
    for key, entry in out.items():
        if key in wrong:
            continue
        try:
            ParamRange.model_validate(entry)
        except ValueError as exc:
            problems.append(f"{key}: {_first_message(exc)}")
    return out, problems


def _rows(rows: Any) -> list[list[Any]]:
    if rows is None:
        return []
    if hasattr(rows, "values") and hasattr(rows, "columns"):  # a pandas DataFrame
        return [list(r) for r in rows.values.tolist()]
    return [list(r) for r in rows]


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes", "1")


def _first_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(e["msg"].removeprefix("Value error, ") for e in errors())
    return str(exc)


class SweepService:
    def __init__(self, studio: StudioService):
        self.studio = studio

    def start(self, spec_text: str, dataset_file: Optional[str], owner: Optional[str]) -> dict[str, Any]:
        """Queue a sweep (a spec with a sweep: section): {job_id, status, error, issues, warnings}."""
        try:
            spec, warnings = self.studio.parse_client_spec(spec_text, dataset_file)
            job = actions.start(self.studio.jobs, spec, owner=owner, **self.studio._hub_identity())
        except (SpecError, ValueError, OSError) as exc:
            return {"job_id": None, "status": "rejected", "error": self.studio.calm(str(exc), dataset_file)}
        out = {"job_id": job.id, "status": job.status, "error": job.error, "warnings": warnings}
        if job.error_details and job.error_details.issues:
            out["issues"] = job.error_details.issues
        return self.studio.calm(out, dataset_file)

    def status(self, job_id: str) -> dict[str, Any]:
        """The sweep: its status, trials (settings, objective, state, time, cost), best trial, importances."""
        try:
            return self.studio.calm(actions.status(self.studio.jobs, job_id))
        except (JobNotFound, JobStateError) as exc:
            raise ValueError(str(exc)) from None

    def promote(self, job_id: str, continue_epochs: Optional[float] = None) -> dict[str, Any]:
        """The best trial as a full run (or, with continue_epochs, the best trial trained further)."""
        identity = self.studio._hub_identity()
        try:
            job = actions.promote(self.studio.jobs, job_id, continue_epochs=continue_epochs or None,
                                  owner=self.studio.jobs.get(job_id).owner, **identity)
        except (JobNotFound, JobStateError, SpecError) as exc:
            raise ValueError(str(exc)) from None
        return {"id": job.id, "name": job.name, "status": job.status, "error": job.error,
                "parent_id": job.parent_id}


def section_problems(spec_text: str, sweep: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """What is wrong with the `sweep:` section the Train tab describes, one line each, a field by its label
    (`labels`: spec key -> label), checked against the form's spec (`spec_text`, already valid)."""
    from pydantic import ValidationError

    from ..spec import parse_spec
    from ..spec_sweep import sweep_problems

    try:
        section = SweepSpec.model_validate(sweep)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            key = "sweep." + ".".join(str(p) for p in err["loc"])
            label = labels.get(key)
            where = f"**{label}** (`{key}`)" if label else f"`{key}`"
            out.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        return out
    base, _ = parse_spec(yaml.safe_load(spec_text) or {}, "spec")
    return sweep_problems(base.model_copy(update={"sweep": section}))


def with_sweep(spec_text: str, sweep: dict[str, Any]) -> str:
    """The form's spec (YAML) with a sweep section: what Start sweep queues."""
    raw = yaml.safe_load(spec_text) or {}
    if not isinstance(raw, dict):
        raise SpecError("the spec must be a mapping")
    raw["sweep"] = sweep
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def sweep_field_names() -> list[str]:
    """The SweepSpec fields the form shows as widgets (the parameters are the table)."""
    return [n for n, f in SweepSpec.model_fields.items()
            if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("group")]
