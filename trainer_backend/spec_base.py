"""The building blocks of the job spec's sections (spec.py, spec_training.py, spec_compute.py, spec_rl.py): a strict
section model and a field whose description doubles as UI help text and CLI/YAML docs."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

# The Train tab's settings sections, in page order (ui/spec_form.py builds one accordion per section). A field goes
# to its spec section's namesake unless `group` says otherwise (lengths.* → training, eval/save → evaluation).
FORM_GROUPS: dict[str, str] = {
    "model": "Model", "data": "Data", "lora": "LoRA", "training": "Training",
    "evaluation": "Evaluation & checkpoints", "hub": "Hub", "export": "Export (GGUF, Ollama)", "compute": "Compute",
    "grpo": "GRPO: rewards and generation", "kto": "KTO: thumbs-up / thumbs-down weights",
}
# Groups the Train tab shows in its numbered steps instead of a settings section.
STEP_GROUPS = ("pick-model", "method")


def _f(default: Any, description: str, ui: str = "advanced", *, label: Optional[str] = None,
       group: Optional[str] = None, when: Optional[str] = None, **kw: Any) -> Any:
    """A Field whose description doubles as UI help text and CLI/YAML docs.

    ui: "basic" (shown first in its section), "advanced" or "compute"; label: what the form calls it (the spec key is
    shown beside it, small); group: the form section, when not the spec section's own; when: the field matters only
    while another field has a value ("training.trainer=sft", "compute.backend=hf_jobs", "lora.enabled=true") or
    while the chosen trainer has a property of trainer_registry.TrainerInfo ("trainer.uses_beta",
    "trainer.rows=sequences"); the form hides it otherwise, and the spec keeps whatever it holds."""
    extra: dict[str, Any] = {"ui": ui}
    extra.update({k: v for k, v in (("label", label), ("group", group), ("when", when)) if v is not None})
    return Field(default, description=description, json_schema_extra=extra, **kw)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
