"""The building blocks of the job spec's sections (spec.py, spec_compute.py): a strict section model and a field
whose description doubles as UI help text and CLI/YAML docs."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def _f(default: Any, description: str, ui: str = "advanced", **kw: Any) -> Any:
    """A Field whose description doubles as UI help text and CLI/YAML docs; `ui` is "basic" or "advanced"."""
    return Field(default, description=description, json_schema_extra={"ui": ui}, **kw)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
