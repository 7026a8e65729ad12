"""The Train tab's "Find good settings" box: the settings to search (a table: a range or choices per spec key), the
sweep's own settings (widgets made from spec_sweep.SweepSpec), and Start sweep, which queues the form's spec with a
`sweep:` section (ui/sweep_service.py). The form above is the base every trial starts from."""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr

from ..data.progress import preparation_progress
from ..errors import SpecError
from ..spec_sweep import SweepSpec
from .form_fields import values_to_raw
from .gate import PRIVATE
from .spec_form import build_section_fields
from .train_form import problems_markdown, upload_path
from .sweep_service import (DEFAULT_PARAMS, PARAM_COLUMNS, PARAM_TYPES, SweepService, parameters_from_table,
                            section_problems, with_sweep)

INTRO = ("Trains several short runs (trials) of the settings above, each with other values of the settings in this "
         "table, and keeps the best by the objective. Trials are jobs of their own (the Jobs tab lists them); a "
         "hopeless one is stopped at an evaluation, keeping its checkpoint. **Promote** then trains the best settings "
         "on all the data. Pruning needs evaluations during training: a validation split and evaluation every N "
         "steps (Evaluation & checkpoints).")


class SweepForm:
    def __init__(self) -> None:
        with gr.Accordion("Or find good settings: a sweep of trials", open=False, elem_id="section-sweep") as self.box:
            gr.Markdown(INTRO)
            self.params = gr.Dataframe(DEFAULT_PARAMS, headers=PARAM_COLUMNS, datatype=PARAM_TYPES, type="array",
                                       interactive=True, wrap=True, elem_id="sweep-parameters",
                                       label="Settings to search: a range (from, to) or choices per spec key "
                                             "(a cell's ⋮ menu adds or deletes rows)")
            with gr.Row(equal_height=False):
                self.fields = build_section_fields(SweepSpec, "sweep", leave_out=("parameters",))
            self.start_btn = gr.Button("Start sweep", variant="primary", elem_id="start-sweep")
            self.message = gr.Markdown(elem_id="sweep-form-message")

    def sweep_section(self, table: Any, values: list[Any]) -> tuple[dict[str, Any], list[str]]:
        """The `sweep:` section the box describes, and its problems (a table row by number, a field by label)."""
        parameters, problems = parameters_from_table(table)
        raw = values_to_raw(self.fields, values).get("sweep", {})
        raw["parameters"] = parameters
        return raw, problems

    def wire(self, form: Any, refresh: tuple, yaml_box: Any, state: Any, upload: Any, job_started: Any,
             service: Any) -> None:
        sweeps = SweepService(service)
        widgets = [f.component for f in self.fields]

        def on_start_sweep(given: dict, request: gr.Request, profile: Optional[gr.OAuthProfile] = None,
                           oauth_token: Optional[gr.OAuthToken] = None,
                           progress: gr.Progress = gr.Progress()) -> tuple:
            """`given`: the value of each input component (a set of inputs: Gradio passes one dict). The form's spec
            and data are checked first, as Start's (the paths it names confined to the caller's own), then the
            sweep's table and fields."""
            from .api import _guard

            ident = _guard(request, profile, oauth_token)
            up = given[upload]
            st = form.checked(given[yaml_box], given[state], up)
            lines = form.problems(st)
            if lines:
                return (problems_markdown(lines), "")
            with preparation_progress(lambda p: progress(p.fraction, desc=p.line())):  # every trial reuses it
                check = service.validate(st.spec_text, upload_path(up))
            if not check["ok"]:
                return (problems_markdown(check["errors"]), "")
            sweep, problems = self.sweep_section(given[self.params], [given[w] for w in widgets])
            problems = problems or section_problems(st.spec_text, sweep, {f.key: f.label for f in self.fields})
            if problems:
                return (problems_markdown(problems), "")
            try:
                out = sweeps.start(with_sweep(st.spec_text, sweep), upload_path(up), ident.username)
            except SpecError as exc:
                return (problems_markdown([str(exc)]), "")
            if not out["job_id"] or out["status"] == "failed":
                return (problems_markdown(out.get("issues") or [out.get("error") or "rejected"]), "")
            return (f"✅ Sweep **{out['job_id']}** queued — the Jobs tab follows it and lists its trials.",
                    out["job_id"])

        self.start_btn.click(*refresh, **PRIVATE).then(
            on_start_sweep, {yaml_box, state, upload, self.params, *widgets}, [self.message, job_started], **PRIVATE)
