"""The job spec stays typed after submit: no module reads a spec value out of a dict with a default of its own
(`spec.get("training", {}).get("quantization", "none")`), which is how copies of defaults drift apart."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from trainer_backend.spec import JobSpec

PACKAGE = Path(__file__).resolve().parents[1] / "trainer_backend"
# Files that read dicts which are not the spec, whose keys happen to share names with spec fields:
NOT_SPEC_DICTS = {
    "spec.py": "the spec itself",
    "autotrain.py": "reads AutoTrain's config dialect and fills AutoTrain's own defaults before building a JobSpec",
    "jobs/progress.py": "folds events.jsonl lines ({'event': 'log', 'max_steps': ...})",
}


def spec_field_names(model: type[BaseModel] = JobSpec) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        annotation: Any = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= spec_field_names(annotation)
    return names


def test_spec_field_names_cover_sections_and_nested_fields() -> None:
    names = spec_field_names()
    assert {"training", "quantization", "lora", "r", "data", "chat_template", "base_model"} <= names


def test_no_spec_value_is_read_from_a_dict_with_a_restated_default() -> None:
    names = "|".join(sorted(map(re.escape, spec_field_names()), key=len, reverse=True))
    pattern = re.compile(rf"""\.get\(\s*["']({names})["']\s*,""")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in NOT_SPEC_DICTS:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if pattern.search(line):
                found.append(f"trainer_backend/{rel}:{number}: {line.strip()}")
    assert not found, "read these from the typed JobSpec / AdapterMeta instead:\n" + "\n".join(found)
