"""Step ② of the Train tab: the dataset (a shipped sample, an upload or a Hub id), its preview, the format detected
with the reason, and the column mapping (only the roles the format uses, unless asked for all)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import gradio as gr

from .gate import PRIVATE
from .service import StudioService
from .train_form import MAPPING_ROLES, TrainForm, dataset_source

# Mapping fields that matter for each data format (the Train tab shows only these; the rest stay hidden).
FORMAT_MAPPING_ROLES = {
    "text": ("text",), "alpaca": ("prompt", "input", "response", "system"),
    "qa": ("prompt", "input", "response", "system"), "messages": ("messages", "tools", "system"),
    "sharegpt": ("messages", "tools", "system"), "prompt_completion": ("prompt", "response", "tools", "system"),
    "xlam": ("prompt", "tools", "response"), "preference": ("prompt", "chosen", "rejected", "margin", "system"),
    "tokenized": (),
}
ROLE_LABELS = {"input": "Context / input", "response": "Response / answer"}  # the rest: the role's own name
UPLOAD_TYPES = [".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt", ".ndjson"]


@dataclass
class DataStep:
    service: StudioService
    samples: dict[str, str]
    sample: Any
    upload: Any
    hub_id: Any
    detected: Any
    preview: Any
    mapping: list[Any]
    all_mappings: Any
    on_load: tuple = ()  # (fn, inputs, outputs) for the page's load event, set by wire()

    def read(self, sample_name: Optional[str], up: Any, hub: str, chosen: Optional[str], show_all: bool) -> tuple:
        """Preview, detected format and the mapping fields for the picked dataset."""
        empty = [gr.update(choices=[""], value="") for _ in MAPPING_ROLES]
        source = dataset_source(sample_name, up, hub, self.samples)
        if not source:
            return ("Pick a sample, upload a file or enter a Hub id.", gr.update(value=None), *empty)
        try:
            info = self.service.preview(source)
        except ValueError as exc:  # a path this caller may not name: said where the detected format would be
            info = {"errors": [str(exc)], "rows": []}
        if info["errors"] and not info["rows"]:
            return ("**Cannot read the dataset:**\n" + "\n".join(f"- {e}" for e in info["errors"]), None, *empty)
        det = info["detected"]
        fmt = chosen if chosen and chosen != "auto" else det["format"]
        shown = MAPPING_ROLES if show_all else mapping_roles(fmt, MAPPING_ROLES)
        text = (f"**Detected format: {det['format']}** — {det['reason']}  \n{info['total_rows']} rows; "
                f"columns: {', '.join(info['columns'])}")
        unused = det.get("unused") or []
        if unused:  # never dropped in silence: the user sees what the format leaves out, and can map it
            text += "\n\n**Not used by this format:** " + "; ".join(
                f"`{u['column']}` (e.g. {u['sample']!r})" for u in unused) + \
                " — map a column below to use it (Context / input adds it to the prompt)."
        import pandas as pd

        frame = pd.DataFrame(info["rows"], columns=info["columns"])
        choices = [""] + info["columns"]
        return (text, frame, *[gr.update(choices=choices, value=det["mapping"].get(role, ""), visible=role in shown)
                               for role in MAPPING_ROLES])

    def wire(self, form: TrainForm) -> None:
        format_widget = form.field("data.format").component
        inputs = [self.sample, self.upload, self.hub_id, format_widget, self.all_mappings]
        outputs = [self.detected, self.preview, *self.mapping]
        def on_dataset(sample: Optional[str], up: Any, hub: str, chosen: Optional[str], show_all: bool) -> tuple:
            return self.read(sample, up, hub, chosen, show_all)

        gr.on([self.sample.change, self.upload.change, self.hub_id.submit, format_widget.input,
               self.all_mappings.input], on_dataset, inputs, outputs, **PRIVATE)
        self.on_load = (on_dataset, inputs, outputs)


def build_data_step(service: StudioService, samples: dict[str, str]) -> DataStep:
    names = list(samples)
    with gr.Row(equal_height=False):
        sample = gr.Dropdown(names, value=names[0] if names else None, label="Sample dataset", scale=2,
                             elem_id="sample-dataset", info="Shipped with the app: try the flow with no file of yours.")
        upload = gr.File(label="...or upload a dataset (CSV, JSONL, JSON, Parquet, TXT)", file_types=UPLOAD_TYPES,
                         scale=3, elem_id="dataset-upload")
        hub_id = gr.Textbox(label="...or a Hub dataset id", placeholder="HuggingFaceH4/no_robots", scale=2,
                            info="Press Enter to read it.", elem_id="hub-dataset")
    detected = gr.Markdown(elem_id="detected-format")
    preview = gr.Dataframe(label="Preview (first rows)", wrap=True, max_height=200, elem_id="preview")
    gr.Markdown("**Column mapping**: which column plays which part (filled in from the detected format; a nested "
                "field as a dotted path, e.g. `answers.text`).",
                elem_id="column-mapping-title")
    with gr.Row(elem_id="column-mapping"):
        mapping = [gr.Dropdown([""], value="", label=f"{ROLE_LABELS.get(role, role.capitalize())} column",
                               allow_custom_value=True, elem_id=f"map-{role}", min_width=140) for role in MAPPING_ROLES]
    all_mappings = gr.Checkbox(False, label="Show every column-mapping field (not only the format's)")
    return DataStep(service, samples, sample, upload, hub_id, detected, preview, mapping, all_mappings)


def mapping_roles(data_format: Optional[str], all_roles: list[str]) -> list[str]:
    """The column-mapping fields worth showing for a format (every field when the format is unknown)."""
    roles = FORMAT_MAPPING_ROLES.get(data_format or "")
    return list(all_roles) if roles is None else [r for r in all_roles if r in roles]
