"""The Jobs tab's Export box: a finished job to GGUF files, merged weights and an Ollama Modelfile.

The options are the ExportSpec's own fields (spec_form builds them from the spec: labels, help, ranges), the
progress bar and message come from the export's record, which the Jobs tab's timer re-reads (the export runs in its
own process: closing the page and coming back shows it still running, or finished), then the check table (each
file against the adapter: pass / warn / fail in words, and what differs), the notes and the files to download.
Callbacks only call the export service (export_service.py) and the Gradio-free views below.
"""
from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any, Optional

import gradio as gr
import pandas as pd

from ..access import AccessDenied, Identity, current_caller, require_trainer
from ..export.report import CHECK_COLUMNS
from .export_service import OPTION_FIELDS, ExportService, option_errors, options_raw, parse_options
from .form_fields import FormField, widget_value
from .gate import PRIVATE
from .job_view import human_duration, next_steps
from .service import StudioService
from .spec_form import build_fields, classes, widget_updates

LEFT_OUT = ("export.gguf_repo",)  # where a push puts GGUF files: the push's business, not the export's
STATE_COLORS = {"running": "#4f46e5", "succeeded": "#16a34a", "failed": "#dc2626", "interrupted": "#ca8a04"}
NO_JOB = ("no job",)
# File, Format, Size, Check, Prompt tokens, Top-1 agreement, Mean KL, Same stop, What differs: the reason a file
# warns or fails (the last column) stays on screen instead of past a horizontal scroll.
CHECK_COLUMN_WIDTHS: list[str | int] = ["17%", "8%", "8%", "8%", "9%", "10%", "7%", "11%", "22%"]
VERDICT_BACKGROUNDS = {"fail": "#fee2e2", "warn": "#fef3c7", "no TEMPLATE": "#fef3c7", "pass": "#dcfce7"}
STATE_SAYS = {"running": "exporting", "succeeded": "export finished", "failed": "export failed",
              "interrupted": "export interrupted"}


def export_progress_html(status: dict, now: Optional[float] = None) -> str:
    """The export's progress bar: state, percent, elapsed time and what it is doing (or how it ended)."""
    state = status["state"]
    if state == "none":
        return ('<div class="ls-progress" data-status="none"><div class="ls-progress-label">Not exported yet: '
                'tick the formats and press Export.</div></div>')
    pct = 100.0 if state == "succeeded" else 100.0 * (status["fraction"] or 0.0)
    started, finished = status.get("started"), status.get("finished")
    elapsed = ((finished or now or time.time()) - started) if started else None
    facts = [STATE_SAYS.get(state, state), f"{pct:.0f}%"]
    facts += [f"took {human_duration(elapsed)}", time.strftime("ended %d %b %H:%M", time.localtime(finished))] \
        if finished else [f"elapsed {human_duration(elapsed)}"]
    message = status.get("message") or ""
    label = html.escape(" · ".join(facts) + (f" — {message}" if message else ""))
    color = STATE_COLORS.get(state, "#dc2626")
    return (f'<div class="ls-progress" data-status="{html.escape(state)}" data-percent="{pct:.1f}">'
            f'<div class="ls-progress-track" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
            f'aria-valuenow="{pct:.1f}"><div class="ls-progress-fill" style="width:{pct:.1f}%;'
            f'background:{color}"></div></div><div class="ls-progress-label">{label}</div></div>')


def export_notes_markdown(status: dict) -> str:
    """Under the table: the error, what the export changed or noticed, how to run the files, the pass rule."""
    lines = []
    if status.get("error") and status["state"] != "running":
        lines.append(f"**Error:** {status['error']}")
    lines += [f"- {note}" for note in status.get("notes") or []]
    if (status.get("modelfile") or {}).get("files") and status["state"] != "running":
        lines.append(f"Run it with Ollama: download the files into one folder, then `ollama create my-model -f "
                     f"{status['modelfile']['files'][0]}`.")
    if status["table"]:
        lines.append(f"<small>{html.escape(status['thresholds'])}</small>")
    return "\n\n".join(lines)


def verdict_style(cell: Any) -> str:
    """The Check cell's background: green pass, amber warn, red fail (the word is in the cell too)."""
    text = str(cell or "")
    for word, color in VERDICT_BACKGROUNDS.items():
        if word in text:
            return f"background-color: {color}; color: #111827"
    return ""


def check_table(status: dict) -> Any:
    """The check table, shown once a file is made (an empty table with headers reads like a result)."""
    rows = status["table"]
    frame = pd.DataFrame(rows, columns=CHECK_COLUMNS)
    return gr.update(value=frame.style.map(verdict_style, subset=["Check"]) if rows else frame, visible=bool(rows))


class ExportPanel:
    """The widgets of the Export box and what they show for a job (`render`, called by the Jobs tab's render)."""

    def __init__(self, service: StudioService) -> None:
        # Download copies live in Gradio's own cache folder: gr.File then hands them out as they are instead of
        # hashing and copying every (GB-sized) GGUF file once more.
        self.exports = ExportService(service, _gradio_cache() / "lora-studio-exports")
        with gr.Accordion("Export (GGUF, Ollama)", open=False, elem_id="job-export-box") as self.box:
            # ids "export-formats", "export-check-prompts", ... (the Train tab's own are "field-export-...")
            self.fields: list[FormField] = build_fields("export", "basic", id_prefix="", leave_out=LEFT_OUT)
            with gr.Row():
                self.fields += build_fields("export", "advanced", id_prefix="", leave_out=LEFT_OUT)
            with gr.Row():
                self.button = gr.Button("Export", variant="primary", interactive=False, elem_id="job-export",
                                        scale=0, min_width=160)
                self.message = gr.Markdown(elem_id="job-export-message")
            self.progress = gr.HTML(elem_id="job-export-progress", padding=False)
            self.table = gr.Dataframe(pd.DataFrame(columns=CHECK_COLUMNS), label="Each file checked against the "
                                      "adapter it came from (held-out prompts, the training template)",
                                      interactive=False, wrap=True, visible=False, elem_id="job-export-checks",
                                      column_widths=CHECK_COLUMN_WIDTHS)
            self.notes = gr.Markdown(elem_id="job-export-notes")
            # Hidden while empty: an empty file box looks like a place to drop files.
            self.files = gr.File(label="Exported files (a merged folder comes as a .zip)", file_count="multiple",
                                 interactive=False, visible=False, elem_id="job-export-files")
        self.shown_errors = gr.State({})  # per session: the fields the page now shows as wrong

    def outputs(self) -> list[Any]:
        """What `render` updates, in its order (the Jobs tab appends these to its outputs)."""
        return [self.box, self.button, self.progress, self.table, self.notes, self.files,
                *(f.component for f in self.fields)]

    def render(self, job: Optional[dict], view: dict, caller: Identity, forced: bool) -> tuple:
        """The export of `job` (None: no job), only what changed since view["export_shown"] unless forced. The box opens
        by itself when a job is shown that has an export, so a running or finished export is seen at once."""
        unchanged = (gr.skip(),) * len(self.outputs())
        if job is None:
            if not forced and view.get("export_shown") == NO_JOB:
                return unchanged
            view["export_shown"], view["export_job"] = NO_JOB, None
            return (gr.skip(), gr.update(interactive=False), "", check_table({"table": []}), "",
                    gr.update(value=None, visible=False), *(gr.skip() for _ in self.fields))
        status = self.exports.status(job["id"])
        can_export = next_steps(job) and status["state"] != "running"
        key = (job["id"], status["state"], status["fraction"], status["message"], len(status["table"]),
               status["finished"], can_export)
        if not forced and key == view.get("export_shown"):
            return unchanged
        new_job = view.get("export_job") != job["id"]
        view["export_shown"], view["export_job"] = key, job["id"]
        box = gr.update(open=True) if new_job and status["state"] != "none" else gr.skip()
        ended = status["state"] not in ("none", "running")
        files = self.exports.downloads(job["id"], caller) if ended else []
        # Another job's export: the form shows the options it ran with (Export again makes the same files).
        options = status["options"] if new_job else None
        fields = [gr.update(value=widget_value(f, options.get(f.key.split(".", 1)[1])), info=f.help,
                            elem_classes=classes(None, True)) if options else gr.skip() for f in self.fields]
        return (box, gr.update(interactive=can_export), export_progress_html(status), check_table(status),
                export_notes_markdown(status), gr.update(value=files or None, visible=bool(files)), *fields)

    def wire(self, job_select: Any, view: Any, service: StudioService) -> None:
        """The Export button and the fields' own checks (a wrong value is named beside its field as it is typed)."""
        comps = [f.component for f in self.fields]

        def check(*values: Any) -> tuple:
            *widget_values, shown = values
            errors = self._errors(widget_values)
            return ("", errors, *self._marks(errors, shown))

        def start(job_id: Optional[str], *values: Any) -> tuple:
            *widget_values, shown, view_state = values
            caller = _trainer()
            errors = self._errors(widget_values)
            marks = self._marks(errors, shown)
            skips = (gr.skip(),) * (len(self.outputs()) - len(self.fields))
            if not job_id:
                return ("Select a job first.", errors, *skips, *marks)
            if errors:
                return ("**Cannot export:** fix the fields marked in red — nothing was started.", errors, *skips,
                        *marks)
            try:
                self.exports.start(job_id, parse_options(options_raw(*self._values(widget_values))))
            except ValueError as exc:  # not finished, already running (JobStateError), a wrong option (SpecError)
                return (f"**Cannot export:** {exc}", errors, *skips, *marks)
            shown_now = self.render(service.job_view(job_id), view_state, caller, forced=True)
            return ("Export started: it runs in the background (leaving the page does not stop it).", errors,
                    *shown_now[:len(skips)], *marks)

        for comp in comps:
            comp.input(check, [*comps, self.shown_errors], [self.message, self.shown_errors, *comps], **PRIVATE,
                       show_progress="hidden")
        self.button.click(start, [job_select, *comps, self.shown_errors, view],
                          [self.message, self.shown_errors, *self.outputs()], **PRIVATE)

    def _values(self, widget_values: list[Any]) -> list[Any]:
        """The widgets' values in options_raw's order (formats, merged_dtype, check_prompts, check_tokens,
        system_prompt), whatever order the form shows them in."""
        by_key = {f.key.split(".", 1)[1]: v for f, v in zip(self.fields, widget_values)}
        return [by_key.get(name) for name in OPTION_FIELDS]

    def _errors(self, widget_values: list[Any]) -> dict[str, str]:
        return {f"export.{k}": v for k, v in option_errors(options_raw(*self._values(widget_values))).items()}

    def _marks(self, errors: dict[str, str], shown: dict[str, str]) -> list[Any]:
        everywhere = {f.key: True for f in self.fields}
        return widget_updates(self.fields, errors, shown or {}, everywhere, everywhere)


def _trainer() -> Identity:
    """The caller (set by the gate, gate.py), refused unless they may train: Push's rule (api._guard)."""
    ident = current_caller()
    try:
        require_trainer(ident)
    except AccessDenied as exc:
        raise gr.Error(str(exc)) from None
    return ident


def _gradio_cache() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())
