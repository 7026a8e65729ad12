"""The Jobs tab's sweep view (shown for a sweep job in place of the training charts): what was searched and the best
trial so far, the trials table (click a row to open that trial's job), the objective of each trial, every trial's
evaluations (where the pruned ones stopped), the parameter importances, and Promote. The views come from
sweep_view.py; the data from sweep_service.py (sweep.json, rewritten by the sweep's driver)."""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr
import pandas as pd
from gradio.components.plot import AltairPlotData

from . import sweep_view
from .gate import PRIVATE
from .job_view import cards_html
from .sweep_service import SweepService


def _vega(spec: Optional[dict]) -> Any:
    import json

    return AltairPlotData(chart="line", plot=json.dumps(spec)) if spec else None


class SweepPanel:
    def __init__(self, sweeps: SweepService):
        self.sweeps = sweeps
        with gr.Column(visible=False, elem_id="sweep-box") as self.box:
            self.summary = gr.Markdown(elem_id="sweep-summary")
            with gr.Row(equal_height=False):
                self.promote_btn = gr.Button("Promote the best trial", variant="primary", interactive=False,
                                             elem_id="sweep-promote", min_width=180)
                self.epochs = gr.Number(0, label="…or continue the best trial by this many epochs (0: a new run of "
                                                 "its settings on all the data)", minimum=0, elem_id="sweep-epochs",
                                        min_width=240)
            self.message = gr.Markdown(elem_id="sweep-message")
            self.table = gr.Dataframe(headers=sweep_view.TRIAL_COLUMNS, interactive=False, wrap=True,
                                      elem_id="sweep-trials", max_height=420,
                                      label="Trials (★ the best; click a row to open that trial's job)")
            with gr.Row():
                self.objective_plot = gr.Plot(show_label=False, elem_id="sweep-objective-plot", min_width=300)
                self.importance_plot = gr.Plot(show_label=False, elem_id="sweep-importance-plot", min_width=300)
            self.curves_plot = gr.Plot(show_label=False, elem_id="sweep-curves-plot")
            self.trial_id = gr.Textbox(visible=False)  # the trial whose row was clicked

    def outputs(self) -> list[Any]:
        return [self.box, self.summary, self.table, self.objective_plot, self.importance_plot, self.curves_plot,
                self.promote_btn]

    def status(self, job: dict) -> Optional[dict]:
        try:
            return self.sweeps.status(job["id"])
        except ValueError:
            return None

    def render(self, job: Optional[dict], sweep: Optional[dict], view: dict, forced: bool,
               hidden_charts: Any) -> tuple:
        """Updates for outputs() and the training charts' box (hidden while a sweep is shown)."""
        is_sweep = sweep is not None
        changed = forced or view.get("sweep_shown") != is_sweep
        view["sweep_shown"] = is_sweep
        box = gr.update(visible=is_sweep) if changed else gr.skip()
        charts_box = gr.update(visible=not is_sweep) if changed else gr.skip()
        if sweep is None or job is None:
            return (box, *(gr.skip(),) * 6, charts_box)
        key = (job["id"], sweep.get("updated"), job["status"])
        if not forced and view.get("sweep_drawn") == key:
            return (box, *(gr.skip(),) * 6, charts_box)
        view["sweep_drawn"] = key
        headers, rows, widths = sweep_view.trials_table(sweep)
        table = gr.update(value=pd.DataFrame(rows, columns=headers), column_widths=widths)
        promotable = sweep.get("best") is not None
        return (box, sweep_view.summary_markdown(sweep), table, _vega(sweep_view.objective_chart(sweep)),
                _vega(sweep_view.importance_chart(sweep)), _vega(sweep_view.curves_chart(sweep)),
                gr.update(interactive=promotable), charts_box)

    @staticmethod
    def progress(job: dict, sweep: dict) -> tuple[str, str]:
        """The progress bar and cards of a sweep (trials, best value, spend) in place of a training job's."""
        return sweep_view.progress_html(job, sweep), cards_html(sweep_view.cards(sweep))

    def wire(self, job_select: Any, select: tuple) -> None:
        """Promote; a click on a trial's row opens that trial's job (`select`: the Jobs tab's (fn, inputs, outputs)
        that shows a given job id)."""
        select_fn, select_inputs, select_outputs = select

        def promote(job_id: Optional[str], epochs: float, request: gr.Request,
                    profile: Optional[gr.OAuthProfile] = None, oauth_token: Optional[gr.OAuthToken] = None) -> str:
            from .api import _guard

            _guard(request, profile, oauth_token)
            if not job_id:
                return "Select a sweep first."
            try:
                out = self.sweeps.promote(job_id, float(epochs or 0) or None)
            except ValueError as exc:
                return f"**Cannot promote:** {exc}"
            if out["status"] == "failed":
                return f"**The promoted run was refused:** {out['error']}"
            how = "continues the best trial" if epochs else "trains the best settings on all the data"
            return f"✅ Job **{out['id']}** ({out['name']}) {how}: it is **{out['status']}** — click its row in " \
                   "the job list, or pick it above."

        self.promote_btn.click(promote, [job_select, self.epochs], self.message, **PRIVATE)

        def open_trial(evt: gr.SelectData) -> Optional[str]:
            row = evt.row_value or []
            return str(row[1]) if len(row) > 1 and row[1] else None

        self.table.select(open_trial, None, self.trial_id, **PRIVATE).then(
            select_fn, [self.trial_id, *select_inputs], select_outputs, **{**PRIVATE, "show_progress": "hidden"})
