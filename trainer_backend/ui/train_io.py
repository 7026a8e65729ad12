"""Save config / Load config of the Train tab: the form as a YAML file a person keeps, and back."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Union

import gradio as gr
import yaml

from ..spec import SpecError, parse_spec
from ..uploads import EXAMPLES_DIR, load_client_yaml, portable_dataset_name
from . import reward_table
from .form_fields import raw_to_values
from .service import TINY_DEMO, StudioService
from .train_form import TrainForm

DEMO_SPEC = EXAMPLES_DIR / "sft-tiny.yaml"


def save_config(service: StudioService, form: TrainForm, args: tuple) -> str:
    """The form as lora-studio-spec.yaml. An uploaded dataset is named by its file name (the server's copy means
    nothing elsewhere): put the file beside the YAML, or change data.path, to run it with the CLI."""
    raw, problem = form.raw(args)
    if problem:
        raise gr.Error(f"cannot save this config: {problem}", print_exception=False)
    data = raw.get("data", {})
    if data.get("path"):
        data["path"] = portable_dataset_name(str(data["path"]), service.data_dir)
    path = Path(tempfile.mkdtemp()) / "lora-studio-spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return str(path)


def _bullets(text: str) -> str:
    lines = [ln.strip().removeprefix("- ").strip() for ln in text.splitlines()[1:] if ln.strip()] or [text]
    return "\n".join(f"- {ln}" for ln in lines)


def load_config(service: StudioService, form: TrainForm, file: Any) -> Union[list, str]:
    """Widget values from a YAML/JSON config (base model, every spec widget, the rewards table), or the problems
    as markdown, listed once, when it is not a valid spec (the caller then leaves the form as it was)."""
    path = Path(file if isinstance(file, str) else file.name)
    name = path.name
    try:
        text = service.read_client_config(str(path))  # the caller's own upload, or a shipped example
    except (ValueError, OSError) as exc:
        return f"**Cannot load {name}:** {service.calm(str(exc))}. The form is unchanged."
    if path == DEMO_SPEC:
        text = text.replace("./tiny-model", TINY_DEMO)
    try:  # bounded like every spec a client sends; ${VAR} refused, never expanded (uploads.load_client_yaml)
        spec, _ = parse_spec(load_client_yaml(text, name), name)
    except SpecError as exc:
        return f"**Cannot load {name}** — the form is unchanged. Fix these in the file:\n{_bullets(str(exc))}"
    except ValueError as exc:
        return f"**Cannot load {name}:** {service.calm(str(exc))}. The form is unchanged."
    rows, notes = reward_table.rewards_to_rows(spec.grpo.rewards)
    for note in notes:
        gr.Warning(note)
    return [spec.model.base_model, *raw_to_values(form.fields, spec), rows]
