"""The Jobs tab's Evaluation report box: did the fine-tune learn its task, and what did it cost elsewhere?

First the verdict in one line (red when a general task got worse beyond noise), or the report's progress while it
runs, or how it failed; then the held-out table (base vs fine-tuned on the job's own held-out rows), the general
tasks table (lm-evaluation-harness, the forgetting check), the judge's win rate with its prompt template, and the
notes. Below, a form runs the report again: the settings are the EvaluationSpec's own fields (spec_form builds them
from the spec: labels, help, ranges), the general tasks a tick list plus a text box for any other. The report runs
in its own process and rewrites evaluation.json after every part; the Jobs tab's timer re-reads it, and this box
re-renders only when it changed. Callbacks only call the evaluation service (evaluation_service.py).
"""
from __future__ import annotations

import html
from typing import Any, Optional

import gradio as gr
import pandas as pd

from ..access import Identity
from ..spec_evaluation import EvaluationSpec
from .evaluation_service import (DROP_MARK, GENERAL_COLUMNS, HELD_OUT_COLUMNS, OPTION_FIELDS, EvaluationService,
                                 field_label, general_table, held_out_table, settings_errors, task_choices)
from .export_panel import _trainer
from .form_fields import FormField, spec_value, widget_value
from .gate import PRIVATE
from .job_view import human_duration, next_steps
from .service import StudioService
from .spec_form import build_fields, classes, group_fields, widget_updates

NO_JOB = ("no job",)
FORM_KEYS = tuple(f"evaluation.{name}" for name in OPTION_FIELDS if name != "general_tasks")
HELD_OUT_WIDTHS: list[str | int] = ["13%", "8%", "9%", "13%", "17%", "9%", "31%"]
GENERAL_WIDTHS: list[str | int] = ["22%", "17%", "8%", "9%", "24%", "6%", "14%"]
# verdict level -> (icon, background, border): red for a drop beyond noise, green for none, grey otherwise
LEVEL_STYLE = {"drop": ("⚠️", "#fee2e2", "#dc2626"), "ok": ("✔", "#dcfce7", "#16a34a"),
               "no_general": ("ℹ", "#f3f4f6", "#6b7280"), "no_task": ("ℹ", "#f3f4f6", "#6b7280")}
STATE_SAYS = {"running": "evaluating…", "failed": "evaluation failed", "interrupted": "evaluation interrupted",
              "succeeded": "evaluated"}


def report_html(status: dict) -> str:
    """The verdict line, first and prominent; the progress while the report runs; its error or interruption."""
    state = status["state"]
    if state == "none":
        return ('<div class="ls-report" data-state="none">Not evaluated yet: pick the tasks below and press '
                '<b>Run evaluation</b>.</div>')
    parts = [f'<div class="ls-report" data-state="{html.escape(state)}">']
    verdict = status.get("verdict")
    if verdict:
        icon, background, border = LEVEL_STYLE.get(str(verdict.get("level")), LEVEL_STYLE["no_task"])
        parts.append(f'<div class="ls-verdict" data-level="{html.escape(str(verdict.get("level")))}" '
                     f'data-flagged="{str(bool(verdict.get("flagged"))).lower()}" style="background:{background};'
                     f'border-left:6px solid {border};color:#111827;padding:10px 14px;border-radius:6px;'
                     f'font-size:var(--text-lg);margin-bottom:8px">{icon} <b>Verdict: {html.escape(verdict["text"])}'
                     '</b></div>')
    if state == "running":
        pct = 100.0 * (status.get("fraction") or 0.0)
        label = f"evaluating… {pct:.0f} % — {status.get('message') or 'starting'}"
        parts.append(f'<div class="ls-progress" data-status="running" data-percent="{pct:.1f}">'
                     f'<div class="ls-progress-track" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
                     f'aria-valuenow="{pct:.1f}"><div class="ls-progress-fill" style="width:{pct:.1f}%;'
                     f'background:#4f46e5"></div></div><div class="ls-progress-label">{html.escape(label)}</div>'
                     '</div>')
    elif state == "failed":
        parts.append(f'<div class="ls-report-error" style="color:#dc2626"><b>Evaluation failed:</b> '
                     f'{html.escape(status.get("error") or status.get("message") or "")}</div>')
    elif state == "interrupted":
        parts.append(f'<div class="ls-report-error" style="color:#ca8a04"><b>Evaluation interrupted:</b> '
                     f'{html.escape(status.get("message") or "")}</div>')
    elif not verdict:
        parts.append(f"<div>{html.escape(status.get('message') or STATE_SAYS.get(state, state))}</div>")
    return "".join(parts) + "</div>"


def notes_markdown(status: dict) -> str:
    """Under the tables: the notes (stand-ins used and why, parts left out by the time budget) and what each part
    took."""
    lines = [f"- {note}" for note in status.get("notes") or []]
    if lines:
        lines.insert(0, "**Notes**")
    seconds = status.get("seconds") or {}
    took = ", ".join(f"{part.replace('_', ' ')} {human_duration(s)}" for part, s in seconds.items())
    if took and status["state"] != "running":
        lines.append(f"\n<small>Took: {took}.</small>")
    return "\n".join(lines)


def judge_markdown(status: dict) -> str:
    judge = status.get("judge")
    return f"**Judge:** {judge['summary']}" if judge else ""


def drop_style(cell: Any) -> str:
    return "background-color: #fee2e2; color: #111827; font-weight: 600" if str(cell) == DROP_MARK else ""


def tables(status: dict) -> tuple[Any, Any]:
    """The held-out and general tables, each shown once it has a row (an empty table with headers reads like a
    result)."""
    held = held_out_table(status["held_out"])
    general = general_table(status["general"])
    general_frame = pd.DataFrame(general, columns=GENERAL_COLUMNS)
    return (gr.update(value=pd.DataFrame(held, columns=HELD_OUT_COLUMNS), visible=bool(held),
                      label=f"Held-out data: base vs fine-tuned on {status['held_out_rows']} rows of this job's "
                            "validation split (your task)"),
            gr.update(value=general_frame.style.map(drop_style, subset=["Beyond noise?"]) if general
                      else general_frame, visible=bool(general)))


class EvaluationPanel:
    """The widgets of the Evaluation report box and what they show for a job (`render`, called by the Jobs tab)."""

    def __init__(self, service: StudioService) -> None:
        self.reports = EvaluationService(service)
        with gr.Accordion("Evaluation report", open=False, elem_id="job-report-box") as self.box:
            self.summary = gr.HTML(elem_id="job-report-summary", padding=False)
            self.held_out = gr.Dataframe(pd.DataFrame(columns=HELD_OUT_COLUMNS), interactive=False, wrap=True,
                                         visible=False, elem_id="job-report-held-out", column_widths=HELD_OUT_WIDTHS,
                                         label="Held-out data: base vs fine-tuned (your task)")
            self.general = gr.Dataframe(pd.DataFrame(columns=GENERAL_COLUMNS), interactive=False, wrap=True,
                                        visible=False, elem_id="job-report-general", column_widths=GENERAL_WIDTHS,
                                        label="General tasks (lm-evaluation-harness), base vs fine-tuned: did it "
                                              "forget? Beyond noise: the whole 95 % interval on one side, and big "
                                              "enough to matter")
            self.judge = gr.Markdown(elem_id="job-report-judge")
            with gr.Accordion("Judge prompt template", open=False, visible=False,
                              elem_id="job-report-template-box") as self.template_box:
                self.template = gr.Textbox(show_label=False, lines=10, max_lines=20, interactive=False,
                                           elem_id="job-report-template")
            self.notes = gr.Markdown(elem_id="job-report-notes")
            gr.Markdown("**Run the report again** (it runs in the background; leaving the page does not stop it)")
            info = EvaluationSpec.model_fields["general_tasks"]
            self.tasks = gr.CheckboxGroup(task_choices(), value=[], label=field_label("general_tasks"),
                                          info=f"{info.description} · evaluation.general_tasks",
                                          elem_id="evaluation-general-tasks")
            self.other_tasks = gr.Textbox(label="Other tasks (comma-separated)", elem_id="evaluation-other-tasks",
                                          placeholder="hellaswag, mmlu, gsm8k — or a folder of task YAML files")
            # ids "evaluation-task-limit", ... (the Train tab's own are "field-evaluation-...")
            left_out = tuple(k for k, _, _ in group_fields("evaluation") if k not in FORM_KEYS)
            with gr.Row():
                self.fields: list[FormField] = build_fields("evaluation", None, id_prefix="", leave_out=left_out)
            self.button = gr.Button("Run evaluation", variant="primary", interactive=False, elem_id="job-report-run",
                                    scale=0, min_width=160)
            self.message = gr.Markdown(elem_id="job-report-message")
        self.shown_errors = gr.State({})  # per session: the fields the page now shows as wrong

    def outputs(self) -> list[Any]:
        """What `render` updates, in its order (the Jobs tab appends these to its outputs)."""
        return [self.box, self.button, self.summary, self.held_out, self.general, self.judge, self.template_box,
                self.template, self.notes, self.tasks, self.other_tasks, *(f.component for f in self.fields)]

    def render(self, job: Optional[dict], view: dict, caller: Identity, forced: bool) -> tuple:
        """The report of `job` (None: no job), only what changed since view["report_shown"] unless forced. The box
        opens by itself when a job with a report is shown; the form then shows the settings it ran with (else the
        job's own evaluation section)."""
        unchanged = (gr.skip(),) * len(self.outputs())
        if job is None:
            if not forced and view.get("report_shown") == NO_JOB:
                return unchanged
            view["report_shown"], view["report_job"] = NO_JOB, None
            empty = {"state": "none", "held_out": [], "general": [], "held_out_rows": 0}
            return (gr.skip(), gr.update(interactive=False), "", *tables(empty), "", gr.update(visible=False), "",
                    "", *(gr.skip() for _ in range(2 + len(self.fields))))
        status = self.reports.status(job["id"])
        can_run = next_steps(job) and status["state"] != "running"
        key = (job["id"], status["state"], status["fraction"], status["message"], len(status["held_out"]),
               len(status["general"]), bool(status["judge"]), status["finished"], can_run)
        if not forced and key == view.get("report_shown"):
            return unchanged
        new_job = view.get("report_job") != job["id"]
        view["report_shown"], view["report_job"] = key, job["id"]
        box = gr.update(open=True) if new_job and status["state"] != "none" else gr.skip()
        judge = status.get("judge")
        form = self._form(status["settings"] or self.reports.job_settings(job["id"]).model_dump()) if new_job \
            else (gr.skip(),) * (2 + len(self.fields))
        return (box, gr.update(interactive=can_run), report_html(status), *tables(status), judge_markdown(status),
                gr.update(visible=bool(judge)), judge["template"] if judge else "", notes_markdown(status), *form)

    def _form(self, settings: dict) -> tuple:
        """The form showing `settings` (an EvaluationSpec as a dict): ticks for the listed tasks, the rest typed."""
        tasks = [str(t) for t in settings.get("general_tasks") or []]
        choices = task_choices()
        return (gr.update(value=[t for t in choices if t in tasks]),
                gr.update(value=", ".join(t for t in tasks if t not in choices)),
                *(gr.update(value=widget_value(f, settings.get(f.key.split(".", 1)[1])), info=f.help,
                            elem_classes=classes(None, True)) for f in self.fields))

    def given(self, ticked: Any, other: Any, widget_values: list[Any]) -> dict[str, Any]:
        """The form's values as EvaluationSpec fields: every task ticked or typed; an empty judge box is no judge,
        an empty number the job's own value."""
        typed = [t.strip() for t in str(other or "").split(",") if t.strip()]
        out: dict[str, Any] = {"general_tasks": list(dict.fromkeys([*(ticked or []), *typed]))}
        for f, value in zip(self.fields, widget_values):
            name, parsed = f.key.split(".", 1)[1], spec_value(f, value)
            if parsed is not None or name in ("judge", "judge_model"):
                out[name] = parsed
        return out

    def errors(self, given: dict[str, Any]) -> dict[str, str]:
        """Form key -> what is wrong with its value (the bounds of EvaluationSpec)."""
        return {f"evaluation.{k}": v for k, v in settings_errors({**EvaluationSpec().model_dump(), **given}).items()}

    def wire(self, job_select: Any, view: Any, service: StudioService) -> None:
        """The Run evaluation button and the fields' own checks (a wrong value is named beside its field)."""
        comps = [f.component for f in self.fields]
        everywhere = {f.key: True for f in self.fields}

        def marks(errors: dict[str, str], shown: dict[str, str]) -> list[Any]:
            return widget_updates(self.fields, errors, shown or {}, everywhere, everywhere)

        def check(*values: Any) -> tuple:
            *widget_values, shown = values
            errors = self.errors(self.given([], "", widget_values))
            return ("", errors, *marks(errors, shown))

        def run(job_id: Optional[str], ticked: Any, other: Any, *values: Any) -> tuple:
            *widget_values, shown, view_state = values
            caller = _trainer()
            given = self.given(ticked, other, widget_values)
            errors = self.errors(given)
            field_marks = marks(errors, shown)
            skips = (gr.skip(),) * (len(self.outputs()) - len(self.fields))
            if not job_id:
                return ("Select a job first.", errors, *skips, *field_marks)
            if errors:
                said = "; ".join(f"{field_label(k.split('.', 1)[1])}: {v}" for k, v in errors.items())
                return (f"**Cannot evaluate:** {said} — nothing was started.", errors, *skips, *field_marks)
            try:
                self.reports.start(job_id, self.reports.settings_for(job_id, given))
            except (ValueError, OSError, KeyError) as exc:  # a refused judge or folder, not finished, running
                return (f"**Cannot evaluate:** {service.calm(str(exc))}", errors, *skips, *field_marks)
            shown_now = self.render(service.job_view(job_id), view_state, caller, forced=True)
            return ("Evaluation started: it runs in the background (leaving the page does not stop it).", errors,
                    *shown_now[:len(skips)], *field_marks)

        for comp in comps:
            comp.input(check, [*comps, self.shown_errors], [self.message, self.shown_errors, *comps], **PRIVATE,
                       show_progress="hidden")
        self.button.click(run, [job_select, self.tasks, self.other_tasks, *comps, self.shown_errors, view],
                          [self.message, self.shown_errors, *self.outputs()], **PRIVATE)


def compare_tables(service: StudioService, job_ids: list[str]) -> tuple[Any, Any]:
    """Compare runs' two tables: the picked jobs' reports side by side (a row per job: which adapter to push?) and
    the settings in which their specs differ (a row per dotted key, a column per job); hidden while empty."""
    from .run_compare import compare_details

    if not job_ids:
        return gr.update(visible=False), gr.update(visible=False)
    evaluation, settings = compare_details(service, job_ids)
    # Job, verdict and the task's change fixed; the general tasks share the rest: every column stays on screen
    tasks = len(evaluation.columns) - 3
    widths = ["16%", "14%", "30%"] + [f"{40 / tasks:.0f}%"] * tasks if tasks else ["25%", "25%", "50%"]
    return (gr.update(value=pd.DataFrame(evaluation.rows, columns=evaluation.columns),
                      visible=bool(evaluation.rows), column_widths=widths),
            gr.update(value=pd.DataFrame(settings.rows, columns=settings.columns), visible=len(job_ids) > 1,
                      label="Settings that differ" if settings.rows else "Settings that differ: none (the same "
                      "spec apart from the name)"))
