"""Train tab: four numbered steps — ① model, ② data (sample / upload / Hub id, preview, detected format, column
mapping), ③ method (trainer and presets), ④ check, plan and start — above the settings, which are grouped in named
sections generated from the JobSpec (spec_form.py; GRPO's rewards table and KTO's weights only while that trainer is
chosen). Field errors show beside their fields as they are typed; a check or plan result is withdrawn once the form
changes. Callbacks only gather inputs (train_form.py) and call the service."""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr

from ..access import on_space
from ..data.progress import preparation_progress
from ..data.report import DatasetReport
from ..job_files import SPEC_FILE
from ..model_info import gpu_memory
from ..spec_base import FORM_GROUPS
from ..training.plan import HARDWARE
from ..training.presets import PRESETS
from . import reward_table
from .gate import PRIVATE
from .service import TINY_DEMO, StudioService, example_datasets
from .spec_form import build_fields, group_fields
from .train_data import build_data_step
from .train_form import FormState, TrainForm, problems_markdown, upload_path
from .sweep_form import SweepForm
from .train_io import load_config, save_config

SUGGESTED_MODELS = [TINY_DEMO, "Qwen/Qwen2.5-0.5B-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct",
                    "Qwen/Qwen2.5-1.5B-Instruct", "meta-llama/Llama-3.2-1B-Instruct", "google/gemma-3-1b-it"]
TINY_DEMO_FIT = ("**tiny-demo**: a 2-layer random-init model built locally (no download), a few MB of memory — "
                 "for trying the flow. Pick a Hub model to see whether it fits this machine.")
CSS = """
.step-title h3 { margin: 0.6em 0 0.1em; }
.field-invalid { border-color: #dc2626 !important; box-shadow: inset 0 0 0 1px #dc2626; }
.field-invalid .info-text, .field-invalid [data-testid="block-info"] { color: #b91c1c !important; }
.field-na { display: none !important; }
#preset-summary ul { margin-top: 0.2em; }
"""
TRAINER_GROUPS = ("grpo", "kto")  # sections shown only while their trainer is chosen


def build_train_tab(service: StudioService) -> dict[str, Any]:
    samples = example_datasets()
    with gr.Tab("Train", id="train"):
        gr.HTML(f"<style>{CSS}</style>", padding=False)
        if on_space() and gpu_memory()[0] is None:
            gr.Markdown("⚠️ This Space runs on **CPU hardware**: training will be very slow. Duplicate it and pick "
                        "a GPU (Settings → Hardware) to train real models.")
        gr.Markdown("### ① Model", elem_classes="step-title")
        with gr.Row(equal_height=False):
            base_model = gr.Dropdown(SUGGESTED_MODELS, value=TINY_DEMO, allow_custom_value=True, scale=3,
                                     label="Base model", elem_id="base-model",
                                     info="A Hub model id (e.g. Qwen/Qwen2.5-0.5B-Instruct), or tiny-demo: a tiny "
                                          "model that trains offline in seconds.")
            model_fields = build_fields("pick-model")
        model_fit = gr.Markdown(TINY_DEMO_FIT, elem_id="model-fit")  # the default model's fit, before any change
        gr.Markdown("### ② Data", elem_classes="step-title")
        data = build_data_step(service, samples)
        gr.Markdown("### ③ Method", elem_classes="step-title")
        with gr.Row(equal_height=False):
            method_fields = build_fields("method")
        with gr.Row(elem_id="presets"):
            preset_btns = {name: gr.Button(p.title, size="sm", elem_id=f"preset-{name}")
                           for name, p in PRESETS.items()}
            undo_btn = gr.Button("Undo preset", size="sm", interactive=False, elem_id="preset-undo")
        preset_md = gr.Markdown(" · ".join(f"**{p.title}**: {p.purpose}" for p in PRESETS.values()),
                                elem_id="preset-summary")
        gr.Markdown("### ④ Check and start", elem_classes="step-title")
        with gr.Row():
            report_btn = gr.Button("Check data", elem_id="check-data")
            plan_btn = gr.Button("Plan: memory, time, cost", elem_id="plan-job")
            start_btn = gr.Button("Start training", variant="primary", elem_id="start-training")
        messages = gr.Markdown(elem_id="train-messages")
        plan_md = gr.Markdown(elem_id="plan")
        sweep_form = SweepForm()  # "Or find good settings": a sweep over the settings below (sweep_form.py)
        with gr.Accordion("Dataset report", open=False, elem_id="dataset-report") as report_box:
            report_md = gr.Markdown()
            sample_text = gr.Textbox(label="Exact training string of a sample ([[no loss: ...]] = masked)",
                                     lines=8, max_lines=20)
        gr.Markdown("### Settings\nThe presets fill these; open a section to change anything. A field shows its "
                    "spec key (for YAML, the CLI and the API) after its help.", elem_classes="step-title")
        sections, fields = {}, [*model_fields, *method_fields]
        rewards_df = rewards_msg = None
        for group, title in FORM_GROUPS.items():
            with gr.Accordion(title, open=False, visible=group not in TRAINER_GROUPS,
                              elem_id=f"section-{group}") as box:
                if group == "grpo":
                    rewards_df, rewards_msg = _rewards_editor()
                if group == "compute":
                    with gr.Row():
                        probe = gr.Checkbox(False, label="Plan: measure the time with 3 real steps (loads the model)")
                        hardware = gr.Dropdown([("this machine", ""), *HARDWARE], value="",
                                               label="Plan for hardware", elem_id="plan-hardware")
                with gr.Row(equal_height=False):
                    fields += build_fields(group, "basic")
                if group_fields(group, "advanced"):
                    with gr.Accordion(f"More {title.split(':')[0]} settings", open=False,
                                      elem_id=f"section-{group}-more") as inner:
                        with gr.Row(equal_height=False):
                            fields += build_fields(group, "advanced")
                    sections[f"{group}-more"] = inner
            sections[group] = box
        with gr.Accordion("Job spec as YAML / CLI command", open=False, elem_id="spec-yaml"):
            yaml_box = gr.Code(language="yaml", label=SPEC_FILE)
            cli_box = gr.Textbox(label="Command line", lines=2)
            with gr.Row():
                save_btn = gr.DownloadButton("Save config")
                load_btn = gr.UploadButton("Load config", file_types=[".yaml", ".yml", ".json"], elem_id="load-config")
        job_started = gr.Textbox(visible=False, elem_id="job-started")
        applying = {f.key: "field-na" not in (f.component.elem_classes or []) for f in fields}
        state = gr.State(FormState(visible=applying))
        checked = gr.State(None)  # the spec text the shown check result was for
        planned = gr.State(None)  # the spec text the shown plan was for
        undo_values = gr.State(None)  # the values a preset replaced, for Undo

    form = TrainForm(base_model, data.sample, data.upload, data.hub_id, data.mapping, fields, rewards_df, samples,
                     TINY_DEMO)
    trainer = form.field("training.trainer").component
    refreshed = [yaml_box, cli_box, rewards_msg, messages, plan_md, report_md, sample_text, report_box, state, checked,
                 planned, *form.widgets]
    section_list = list(sections.values())

    def opened(st: FormState) -> list[Any]:
        """Sections holding a field that is wrong are opened, so the error beside it is in view."""
        wrong = {form.field(k).group + ("" if form.field(k).level in ("basic", "compute") else "-more")
                 for k in st.errors}
        wrong |= {w.removesuffix("-more") for w in wrong}
        return [gr.update(open=True) if name in wrong else gr.skip() for name in sections]

    def refuse(st: FormState) -> Optional[str]:
        lines = form.problems(st)
        return ("**Fix these before training:**\n" + "\n".join(f"- {x}" for x in lines)) if lines else None

    def on_model(base: str, quant: str) -> str:
        if base == TINY_DEMO:
            return TINY_DEMO_FIT
        try:
            return service.model_fit(base, quant)
        except ValueError as exc:  # a local folder outside what this caller may name
            return f"⚠️ {service.calm(str(exc))}"

    def on_report(spec_text: str, shown: FormState, up: Any, progress: gr.Progress = gr.Progress()) -> tuple:
        st = form.checked(spec_text, shown, up)
        refused = refuse(st)
        if refused:
            return (refused, "", "", gr.update(open=False), None, *opened(st))
        with preparation_progress(lambda p: progress(p.fraction, desc=p.line())):  # long datasets show a bar
            out = service.validate(st.spec_text, upload_path(up))
        if not out["ok"]:
            return (problems_markdown(out["errors"]), "", "", gr.update(open=False), None, *opened(st))
        rep = DatasetReport.from_dict(out["report"])
        return (_ok_message(out), rep.markdown(), rep.sample.rendered if rep.sample else "", gr.update(open=True),
                st.spec_text, *opened(st))

    def on_plan(spec_text: str, shown: FormState, up: Any, measure: bool, target: str) -> tuple:
        st = form.checked(spec_text, shown, up)
        refused = refuse(st)
        if refused:
            return (refused, None, *opened(st))
        out = service.plan(st.spec_text, upload_path(up), probe_steps=3 if measure else 0, hardware=target or None)
        return (out["markdown"] if out["ok"] else problems_markdown(out["errors"]), st.spec_text, *opened(st))

    def on_start(spec_text: str, shown: FormState, up: Any, request: gr.Request,
                 profile: Optional[gr.OAuthProfile] = None, oauth_token: Optional[gr.OAuthToken] = None,
                 progress: gr.Progress = gr.Progress()) -> tuple:
        from .api import _guard

        ident = _guard(request, profile, oauth_token)
        st = form.checked(spec_text, shown, up)
        refused = refuse(st)
        if refused:
            return (refused, "", *opened(st))
        with preparation_progress(lambda p: progress(p.fraction, desc=p.line())):  # from the cache after Check data
            check = service.validate(st.spec_text, upload_path(up))
            if not check["ok"]:
                return (problems_markdown(check["errors"]), "", *opened(st))
            out = service.start(st.spec_text, upload_path(up), ident.username)
        if not out["job_id"] or out["status"] == "failed":
            return (problems_markdown(out.get("issues") or [out.get("error") or "rejected"]), "", *opened(st))
        return (f"✅ Job **{out['job_id']}** queued — the Jobs tab follows it.", out["job_id"], *opened(st))

    def on_preset(name: str) -> Any:
        def apply_preset(*args: Any) -> tuple:
            base, trainer_name = args[0], form.split(args)[5][form.fields.index(form.field("training.trainer"))]
            choice = service.preset(name, trainer_name or "sft", base or TINY_DEMO)
            changed = form.changes(choice.values, args)
            before = dict(zip((f.key for f in form.fields), form.split(args)[5]))
            undo = {k: before[k] for k in choice.values if k in before}
            title = PRESETS[name].title
            text = (f"**{title}** ({PRESETS[name].purpose}) — changed: "
                    + ("; ".join(changed) if changed else "nothing, the form already had these values")
                    + "\n\nWhy:\n" + "\n".join(f"- {r}" for r in choice.reasons)
                    + "\n\nThe plan below shows memory and time for these settings. **Undo preset** puts the "
                      "previous values back.")
            return (*form.fill(choice.values, args), undo, text, gr.update(interactive=True))
        return apply_preset

    def on_undo(undo: Optional[dict], *args: Any) -> tuple:
        if not undo:
            return (*[gr.skip() for _ in form.fields], None, gr.skip(), gr.update(interactive=False))
        values = [undo[f.key] if f.key in undo else gr.skip() for f in form.fields]
        return (*values, None, "Preset undone: the previous values are back.", gr.update(interactive=False))

    def on_load(file: Any) -> list:
        filled = load_config(service, form, file)
        if isinstance(filled, str):  # the problems, listed once; the form stays as it was
            return [*[gr.skip()] * (len(form.widgets) + 4), filled]
        return [*filled, trainer_boxes(filled[1 + [f.key for f in form.fields].index("training.trainer")]),
                "✅ Config loaded: the form shows it (nothing is checked or started yet)."]

    def trainer_boxes(name: Any) -> Any:
        return [gr.update(visible=name == group) for group in TRAINER_GROUPS]

    data.wire(form)
    gr.on([base_model.change, form.field("training.quantization").component.change], on_model,
          [base_model, form.field("training.quantization").component], model_fit, **PRIVATE)
    refresh = (form.refresh, [state, checked, planned, *form.inputs], refreshed)
    gr.on([c.change for c in form.inputs], *refresh, **PRIVATE)
    trainer_sections = [sections[g] for g in TRAINER_GROUPS]
    trainer.change(lambda t: trainer_boxes(t), trainer, trainer_sections, **PRIVATE)
    # The form is re-read first, so that what is checked / planned / started is exactly what the page shows.
    report_btn.click(*refresh, **PRIVATE).then(
        on_report, [yaml_box, state, data.upload],
        [messages, report_md, sample_text, report_box, checked, *section_list], **PRIVATE)
    plan_btn.click(*refresh, **PRIVATE).then(
        on_plan, [yaml_box, state, data.upload, probe, hardware], [plan_md, planned, *section_list], **PRIVATE)
    start_btn.click(*refresh, **PRIVATE).then(
        on_start, [yaml_box, state, data.upload], [messages, job_started, *section_list], **PRIVATE)
    for name, btn in preset_btns.items():
        btn.click(on_preset(name), form.inputs, [*form.widgets, undo_values, preset_md, undo_btn], **PRIVATE).then(
            *refresh, **PRIVATE).then(on_plan, [yaml_box, state, data.upload, probe, hardware],
                                      [plan_md, planned, *section_list], **PRIVATE)
    sweep_form.wire(form, refresh, yaml_box, state, data.upload, job_started, service)
    undo_btn.click(on_undo, [undo_values, *form.inputs], [*form.widgets, undo_values, preset_md, undo_btn], **PRIVATE)
    def on_save(*args: Any) -> str:
        return save_config(service, form, args)

    save_btn.click(on_save, form.inputs, save_btn, **PRIVATE)
    loaded = [base_model, *form.widgets, rewards_df, *trainer_sections, messages]
    load_btn.upload(on_load, load_btn, loaded, **PRIVATE)
    return {"job_started": job_started, "on_dataset": data.on_load}


def _rewards_editor() -> tuple[Any, Any]:
    """GRPO's rewards table with its help (the grpo.* fields follow it in the same section)."""
    rewards = gr.Dataframe(reward_table.DEFAULT_ROWS, headers=reward_table.COLUMNS,
                           datatype=reward_table.DATATYPES, type="array", interactive=True, wrap=True,
                           column_widths=reward_table.COLUMN_WIDTHS, elem_id="grpo-rewards",
                           label="Rewards: one row per reward (a cell's ⋮ menu adds or deletes rows)")
    problem = gr.Markdown(elem_id="grpo-rewards-problem")
    with gr.Accordion("What each reward type checks, and its setting", open=False, elem_id="grpo-rewards-help"):
        gr.Markdown(reward_table.HELP)
    return rewards, problem


def _ok_message(out: dict) -> str:
    warn = "".join(f"\n- ⚠️ {w}" for w in out["warnings"])
    return "✅ Spec and data are valid." + warn

