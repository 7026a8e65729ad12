"""Train tab: model, dataset (+ preview, detected format, column mapping), spec-generated settings (a trainer's
own settings, with GRPO's rewards table, shown only while it is chosen), dataset report, YAML/CLI preview, save/load
config, Start. Callbacks only gather inputs and call the service."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional

import gradio as gr
import yaml

from ..access import on_space
from ..data.progress import preparation_progress
from ..data.report import DatasetReport
from ..job_files import SPEC_FILE
from ..model_info import gpu_memory
from ..spec import ColumnMapping, SpecError, parse_spec
from ..training.plan import HARDWARE
from ..uploads import EXAMPLES_DIR, load_client_yaml
from . import reward_table
from .gate import PRIVATE
from .service import TINY_DEMO, StudioService, example_datasets, mapping_roles
from .spec_form import FormField, build_fields, raw_to_values, values_to_raw

SUGGESTED_MODELS = [TINY_DEMO, "Qwen/Qwen2.5-0.5B-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct",
                    "Qwen/Qwen2.5-1.5B-Instruct", "meta-llama/Llama-3.2-1B-Instruct", "google/gemma-3-1b-it"]
MAPPING_ROLES = [r for r in ColumnMapping.model_fields if r != "roles"]
DEMO_SPEC = EXAMPLES_DIR / "sft-tiny.yaml"


def dataset_source(sample: Optional[str], upload: Any, hub_id: str) -> Optional[str]:
    """The dataset the user picked: an upload wins, then a Hub id, then a shipped sample."""
    if upload:
        return str(upload) if isinstance(upload, str) else str(upload.name)  # gradio passes a str subclass
    if hub_id and hub_id.strip():
        return hub_id.strip()
    return example_datasets().get(sample) if sample else None


def build_raw(base_model: str, source: Optional[str], mapping: list[str], fields: list[FormField],
              values: list[Any]) -> dict:
    raw: dict = {"model": {"base_model": base_model or TINY_DEMO}, "data": {}}
    if source:
        raw["data"]["path"] = source
    chosen = {role: col for role, col in zip(MAPPING_ROLES, mapping) if col}
    if chosen:
        raw["data"]["column_mapping"] = chosen
    return values_to_raw(fields, values, raw)


TINY_DEMO_FIT = ("**tiny-demo**: a 2-layer random-init model built locally (no download), a few MB of memory — "
                 "for trying the flow. Pick a Hub model to see whether it fits this machine.")


def build_train_tab(service: StudioService) -> dict[str, Any]:
    with gr.Tab("Train", id="train"):
        if on_space() and gpu_memory()[0] is None:
            gr.Markdown("⚠️ This Space runs on **CPU hardware**: training will be very slow. Duplicate it and pick "
                        "a GPU (Settings → Hardware) to train real models.")
        with gr.Row():
            with gr.Column(scale=2):
                base_model = gr.Dropdown(SUGGESTED_MODELS, value=TINY_DEMO, allow_custom_value=True,
                                         label="Base model", info="Hub id or local folder; 'tiny-demo' trains "
                                                                  "offline in seconds")
                model_fit = gr.Markdown(TINY_DEMO_FIT, elem_id="model-fit")  # the default model's fit, before any change
            with gr.Column(scale=3):
                samples = list(example_datasets())
                sample = gr.Dropdown(samples, value=samples[0] if samples else None, label="Sample dataset")
                upload = gr.File(label="...or upload a dataset (CSV, JSONL, JSON, Parquet, TXT)",
                                 file_types=[".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt", ".ndjson"])
                hub_id = gr.Textbox(label="...or a Hub dataset id", placeholder="HuggingFaceH4/no_robots")
        detected = gr.Markdown(elem_id="detected-format")
        preview = gr.Dataframe(label="Preview (first rows)", wrap=True, max_height=300, elem_id="preview")
        with gr.Row(elem_id="column-mapping"):
            mapping = [gr.Dropdown([""], value="", label=f"column: {role}", allow_custom_value=True,
                                   elem_id=f"map-{role}", min_width=140) for role in MAPPING_ROLES]
        with gr.Row():
            demo_btn = gr.Button("Use demo settings (tiny model learns the sample in ~1 min on CPU)", size="sm")
        with gr.Row(equal_height=False):
            basic = build_fields("basic")
        grpo_box, rewards_df, rewards_msg, grpo_fields = _grpo_settings()
        with gr.Accordion("KTO settings (thumbs-up / thumbs-down weights)", open=False, visible=False,
                          elem_id="kto-settings") as kto_box:
            with gr.Row(equal_height=False):
                kto_fields = build_fields("basic", ("kto",)) + build_fields("advanced", ("kto",))
        with gr.Accordion("Advanced settings", open=False):
            all_mappings = gr.Checkbox(False, label="Show every column-mapping field (not only the format's)")
            with gr.Row(equal_height=False):
                advanced = build_fields("advanced")
        with gr.Row(equal_height=False, elem_id="compute"):  # where it trains: next to Start, priced by Plan
            compute = build_fields("compute")
        fields = basic + advanced + compute + grpo_fields + kto_fields
        with gr.Row():
            report_btn = gr.Button("Check data & show report")
            plan_btn = gr.Button("Plan: memory, time, cost", elem_id="plan-job")
            start_btn = gr.Button("Start training", variant="primary", elem_id="start-training")
        with gr.Row():
            probe = gr.Checkbox(False, label="Measure the time with 3 real steps (loads the model)")
            hardware = gr.Dropdown(["", *HARDWARE], value="", label="Plan for hardware (empty: this machine)",
                                   allow_custom_value=False)
        plan_md = gr.Markdown(elem_id="plan")
        messages = gr.Markdown(elem_id="train-messages")
        with gr.Accordion("Dataset report", open=False) as report_box:
            report_md = gr.Markdown()
            sample_text = gr.Textbox(label="Exact training string of a sample ([[no loss: ...]] = masked)",
                                     lines=8, max_lines=20)
        with gr.Accordion("Job spec as YAML / CLI command", open=False):
            yaml_box = gr.Code(language="yaml", label=SPEC_FILE)
            cli_box = gr.Textbox(label="Command line", lines=2)
            with gr.Row():
                save_btn = gr.DownloadButton("Save config")
                load_btn = gr.UploadButton("Load config", file_types=[".yaml", ".yml", ".json"], elem_id="load-config")
        job_started = gr.Textbox(visible=False, elem_id="job-started")
        form_problem = gr.State(None)  # what keeps the form from being a spec (a bad rewards row), else None

    widgets = [c.component for c in fields]
    all_inputs = [base_model, sample, upload, hub_id, *mapping, *widgets, rewards_df]
    trainer_widget = next(f.component for f in fields if f.key == "training.trainer")

    def gather(base: str, sample_name: Optional[str], up: Any, hub: str, *rest: Any) -> tuple[dict, Optional[str]]:
        maps, values = list(rest[: len(MAPPING_ROLES)]), list(rest[len(MAPPING_ROLES): -1])
        raw = build_raw(base, dataset_source(sample_name, up, hub), maps, fields, values)
        return raw, reward_table.apply_trainer_sections(raw, rest[-1])

    def show_yaml(*args: Any) -> tuple[str, str, str, Optional[str]]:
        raw, problem = gather(*args)
        text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
        if problem:  # the preview says why the rewards are missing
            text = f"# grpo.rewards left out: {problem}\n{text}"
        return (text, "python -m trainer_backend validate spec.yaml && python -m trainer_backend submit spec.yaml",
                f"⚠️ {problem}" if problem else "", problem)

    format_widget = next(f.component for f in fields if f.key == "data.format")

    def on_dataset(sample_name: Optional[str], up: Any, hub: str, chosen: Optional[str], show_all: bool) -> tuple:
        source = dataset_source(sample_name, up, hub)
        if not source:
            return ("Pick a sample, upload a file or enter a Hub id.", gr.update(value=None),
                    *[gr.update(choices=[""], value="") for _ in MAPPING_ROLES])
        try:
            info = service.preview(source)
        except ValueError as exc:  # a path this caller may not name: said where the detected format would be
            info = {"errors": [str(exc)], "rows": []}
        if info["errors"] and not info["rows"]:
            return ("**Cannot read the dataset:**\n" + "\n".join(f"- {e}" for e in info["errors"]), None,
                    *[gr.update(choices=[""], value="") for _ in MAPPING_ROLES])
        det = info["detected"]
        fmt = chosen if chosen and chosen != "auto" else det["format"]
        shown = MAPPING_ROLES if show_all else mapping_roles(fmt, MAPPING_ROLES)
        text = (f"**Detected format: {det['format']}** — {det['reason']}  \n{info['total_rows']} rows; "
                f"columns: {', '.join(info['columns'])}")
        import pandas as pd

        frame = pd.DataFrame(info["rows"], columns=info["columns"])
        choices = [""] + info["columns"]
        return (text, frame, *[gr.update(choices=choices, value=det["mapping"].get(role, ""), visible=role in shown)
                               for role in MAPPING_ROLES])

    def on_model(base: str, *values: Any) -> str:
        quant = next((v for f, v in zip(fields, values) if f.key == "training.quantization"), "none")
        if base == TINY_DEMO:
            return TINY_DEMO_FIT
        try:
            return service.model_fit(base, quant)
        except ValueError as exc:  # a local folder outside what this caller may name
            return f"⚠️ {exc}"

    def on_report(spec_text: str, up: Any, problem: Optional[str], progress: gr.Progress = gr.Progress()) -> tuple:
        if problem:
            return (_problems([problem]), "", "", gr.update(open=False))
        with preparation_progress(lambda p: progress(p.fraction, desc=p.line())):  # long datasets show a bar
            out = service.validate(spec_text, _path(up))
        if not out["ok"]:
            return (_problems(out["errors"]), "", "", gr.update(open=False))
        rep = DatasetReport.from_dict(out["report"])
        return (_ok_message(out), rep.markdown(), rep.sample.rendered if rep.sample else "", gr.update(open=True))

    def on_plan(spec_text: str, up: Any, problem: Optional[str], measure: bool, target: str) -> str:
        if problem:
            return _problems([problem])
        out = service.plan(spec_text, _path(up), probe_steps=3 if measure else 0, hardware=target or None)
        return out["markdown"] if out["ok"] else _problems(out["errors"])

    def on_start(spec_text: str, up: Any, problem: Optional[str], request: gr.Request,
                 profile: Optional[gr.OAuthProfile] = None, oauth_token: Optional[gr.OAuthToken] = None,
                 progress: gr.Progress = gr.Progress()) -> tuple[str, str]:
        from .api import _guard

        ident = _guard(request, profile, oauth_token)
        if problem:
            return _problems([problem]), ""
        with preparation_progress(lambda p: progress(p.fraction, desc=p.line())):  # from the cache after Check data
            check = service.validate(spec_text, _path(up))
            if not check["ok"]:
                return _problems(check["errors"]), ""
            out = service.start(spec_text, _path(up), ident.username)
        if not out["job_id"] or out["status"] == "failed":
            return _problems(out.get("issues") or [out.get("error") or "rejected"]), ""
        return f"✅ Job **{out['job_id']}** queued — follow it in the Jobs tab.", out["job_id"]

    def on_save(*args: Any) -> str:
        raw, problem = gather(*args)
        if problem:
            raise gr.Error(f"cannot save this config: {problem}")
        path = Path(tempfile.mkdtemp()) / "lora-studio-spec.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
        return str(path)

    def on_load(file: Any) -> list:
        """Fill the widgets from a YAML/JSON config (nothing is opened or trained here)."""
        path = Path(file if isinstance(file, str) else file.name)
        try:
            text = service.read_client_config(str(path))  # the caller's own upload, or a shipped example
        except (ValueError, OSError) as exc:
            raise gr.Error(f"cannot load this config: {exc}") from None
        if path == DEMO_SPEC:
            text = text.replace("./tiny-model", TINY_DEMO)
        try:  # bounded like every spec a client sends; ${VAR} refused, never expanded (uploads.load_client_yaml)
            spec, _ = parse_spec(load_client_yaml(text, path.name), path.name)
        except (SpecError, ValueError) as exc:
            raise gr.Error(f"cannot load this config: {exc}") from None
        rows, notes = reward_table.rewards_to_rows(spec.grpo.rewards)
        for note in notes:
            gr.Warning(note)
        return [spec.model.base_model, *raw_to_values(fields, spec), rows, *trainer_boxes(spec.training.trainer)]

    dataset_inputs = [sample, upload, hub_id, format_widget, all_mappings]
    gr.on([sample.change, upload.change, hub_id.submit, format_widget.input, all_mappings.input], on_dataset,
          dataset_inputs, [detected, preview, *mapping], **PRIVATE)
    gr.on([base_model.change] + [f.component.change for f in fields if f.key == "training.quantization"],
          on_model, [base_model, *widgets], model_fit, **PRIVATE)
    shown = [yaml_box, cli_box, rewards_msg, form_problem]
    gr.on([c.change for c in all_inputs], show_yaml, all_inputs, shown, **PRIVATE)
    trainer_widget.change(trainer_boxes, trainer_widget, [grpo_box, kto_box], **PRIVATE)
    # The YAML box is refreshed first so that what is validated/started is exactly what the user sees.
    report_btn.click(show_yaml, all_inputs, shown, **PRIVATE).then(
        on_report, [yaml_box, upload, form_problem], [messages, report_md, sample_text, report_box], **PRIVATE)
    start_btn.click(show_yaml, all_inputs, shown, **PRIVATE).then(
        on_start, [yaml_box, upload, form_problem], [messages, job_started], **PRIVATE)
    plan_btn.click(show_yaml, all_inputs, shown, **PRIVATE).then(
        on_plan, [yaml_box, upload, form_problem, probe, hardware], plan_md, **PRIVATE)
    save_btn.click(on_save, all_inputs, save_btn, **PRIVATE)
    loaded = [base_model, *widgets, rewards_df, grpo_box, kto_box]
    load_btn.upload(on_load, load_btn, loaded, **PRIVATE)
    demo_btn.click(lambda: on_load(str(DEMO_SPEC)), None, loaded, **PRIVATE)
    return {"job_started": job_started, "on_dataset": (on_dataset, dataset_inputs, [detected, preview, *mapping])}


def trainer_boxes(trainer: Optional[str]) -> tuple[Any, Any]:
    """The GRPO and KTO groups are shown only while their trainer is chosen."""
    return gr.update(visible=trainer == "grpo"), gr.update(visible=trainer == "kto")


def _grpo_settings() -> tuple[Any, Any, Any, list[FormField]]:
    """GRPO's group (shown while trainer = grpo): the rewards table with its help, then the grpo.* fields."""
    with gr.Accordion("GRPO: rewards and generation", open=True, visible=False, elem_id="grpo-settings") as box:
        rewards = gr.Dataframe(reward_table.DEFAULT_ROWS, headers=reward_table.COLUMNS,
                               datatype=reward_table.DATATYPES, type="array", interactive=True, wrap=True,
                               column_widths=reward_table.COLUMN_WIDTHS, elem_id="grpo-rewards",
                               label="Rewards: one row per reward (a cell's ⋮ menu adds or deletes rows)")
        problem = gr.Markdown(elem_id="grpo-rewards-problem")
        with gr.Accordion("What each reward type checks, and its setting", open=False, elem_id="grpo-rewards-help"):
            gr.Markdown(reward_table.HELP)
        with gr.Row(equal_height=False):
            fields = build_fields("basic", ("grpo",)) + build_fields("advanced", ("grpo",))
    return box, rewards, problem, fields


def _path(up: Any) -> Optional[str]:
    if up is None:
        return None
    return str(up) if isinstance(up, str) else str(getattr(up, "name", ""))


def _problems(errors: list[str]) -> str:
    return "**Fix these before training:**\n" + "\n".join(f"- {e}" for e in errors)


def _ok_message(out: dict) -> str:
    warn = "".join(f"\n- ⚠️ {w}" for w in out["warnings"])
    return "✅ Spec and data are valid." + warn
