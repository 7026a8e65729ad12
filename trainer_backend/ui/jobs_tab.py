"""Jobs tab: every job with its status; the selected one's progress bar, metric cards, charts (loss with eval
loss, learning rate, grad norm; for GRPO also reward, KL / completion length and a table of sample completions),
downloads, log tail and the actions possible in its status; its evaluation report (evaluation_panel.py) and
its export to GGUF / Ollama (export_panel.py); and Compare runs: a chart that overlays several runs, their
reports side by side and the settings in which they differ. A timer re-reads the job store, so the page never
needs a reload and closing the browser loses nothing. Callbacks only call the service and the Gradio-free views (job_view.py, charts.py)."""
from __future__ import annotations

import json
from typing import Any, Optional

import gradio as gr
import pandas as pd
from gradio.components.plot import AltairPlotData

from ..access import AccessDenied, Identity, identify
from ..hub.client import HubError
from ..job_status import UNFINISHED
from . import charts
from .job_view import (CSS, cards_html, header_markdown, human_time, metric_cards, next_steps, progress_html,
                       readable_log, samples_column_widths, samples_table)
from .evaluation_panel import EvaluationPanel, compare_tables
from .export_panel import ExportPanel
from .gate import PRIVATE
from .service import StudioService
from .sweep_panel import SweepPanel
from .sweep_service import SweepService

SHOW_LOG_END = ("() => { setTimeout(() => { const box = document.querySelector('#job-log textarea');"
                " if (box) box.scrollTop = box.scrollHeight; }, 50); }")

# Gradio's plot fits its chart to its box when the box is resized; a chart drawn while its tab was hidden has
# width 0 until then. Showing the tab (or a job) nudges every chart box by a pixel, so each one fits at once.
REFIT_CHARTS = ("() => { requestAnimationFrame(() => document.querySelectorAll('#jobs-tab .altair').forEach(e => {"
                " e.style.width = 'calc(100% - 1px)'; requestAnimationFrame(() => { e.style.width = ''; }); })); }")
# "Chat with it" / "Evaluate" open the Chat tab at once in the page (app.py also picks the job's adapter there).
OPEN_CHAT_TAB = ("() => { const tab = [...document.querySelectorAll('button[role=tab]')]"
                 ".find(b => b.innerText.trim().startsWith('Chat')); if (tab) tab.click(); }")
TICK_SECONDS = 2.0
ACTIONS = ("stop", "resume", "continue", "push")


def vega(spec: dict) -> AltairPlotData:
    """A Vega-Lite spec for gr.Plot, rendered by vega-embed in the page (no plotting library on the server).
    chart="line" lets Gradio size the chart to its box and theme it (see charts.py)."""
    return AltairPlotData(chart="line", plot=json.dumps(spec))


def jobs_table(jobs: list[dict]) -> list[list]:
    return [[j["id"], j["name"], j["status"], f"{j['percent']:.0f}%" if j["percent"] is not None else "",
             f"{j['loss']:.4f}" if isinstance(j["loss"], (int, float)) else "", j["owner"] or "",
             human_time(j["created_at"])] for j in jobs]


def rl_views(job: Optional[dict], redraw: bool = True, was_grpo: Optional[bool] = None) -> tuple:
    """GRPO's charts box, reward chart, KL / length chart, samples box and samples table; hidden for the rest.
    The boxes are shown or hidden only when that changes (`was_grpo`: what the page shows now): re-showing a
    visible box re-mounts its charts, which then draw blank until the next resize."""
    if not redraw:
        return (gr.skip(),) * 5
    grpo = bool(job and job.get("trainer") == "grpo")
    box = gr.skip() if was_grpo == grpo else gr.update(visible=grpo)
    if not job or not grpo:
        return box, gr.skip(), gr.skip(), box, gr.skip()
    p = job["progress"]
    headers, rows = samples_table(p)
    return (box, vega(charts.reward_chart(p)), vega(charts.kl_length_chart(p)), box,
            gr.update(value=pd.DataFrame(rows, columns=headers), column_widths=samples_column_widths(headers)))


def new_view() -> dict[str, Any]:
    """What one browser session's Jobs tab shows: the job picked (`pick`, changed only by the person or by
    select_job, each change counted in `gen`), and what was last sent, so a tick sends only what changed."""
    return {"pick": None, "gen": 0, "drawn": None, "choices": None, "table": None, "grpo": None, "export_shown": None,
            "export_job": None}


def build_jobs_tab(service: StudioService) -> dict[str, Any]:
    with gr.Tab("Jobs", id="jobs", elem_id="jobs-tab") as tab:
        gr.HTML(f"<style>{CSS}</style>", padding=False)
        job_select = gr.Dropdown([], label="Job", interactive=True, elem_id="job-select")
        status_md = gr.Markdown(elem_id="job-status")
        progress = gr.HTML(elem_id="job-progress", padding=False)
        with gr.Row(visible=False, elem_id="job-next") as next_row:  # a trained model: what to do with it
            chat_btn = gr.Button("Chat with it", variant="primary", elem_id="job-chat", min_width=120)
            eval_btn = gr.Button("Evaluate", elem_id="job-evaluate", min_width=120)
            push_next = gr.Button("Push to the Hub…", elem_id="job-push-next", min_width=120)
            export_next = gr.Button("Export (GGUF, Ollama)…", elem_id="job-export-next", min_width=120)
            report_next = gr.Button("Evaluation report…", elem_id="job-report-next", min_width=120)
        with gr.Row():
            stop_btn = gr.Button("Stop", variant="stop", interactive=False, elem_id="job-stop", min_width=80)
            resume_btn = gr.Button("Resume", interactive=False, elem_id="job-resume", min_width=80)
            more_epochs = gr.Number(1, label="More epochs", minimum=0.1, min_width=80)
            continue_btn = gr.Button("Continue training", interactive=False, elem_id="job-continue", min_width=80)
        action_md = gr.Markdown()
        cards = gr.HTML(elem_id="job-metrics", padding=False)
        sweep_panel = SweepPanel(SweepService(service))  # a sweep's trials and charts: sweep_panel.py
        with gr.Column(visible=False, elem_id="grpo-charts") as grpo_charts:
            reward_plot = gr.Plot(label="Reward", elem_id="reward-plot", show_label=False)
            kl_plot = gr.Plot(label="KL / completion length", elem_id="kl-length-plot", show_label=False)
        with gr.Column(elem_id="training-charts") as training_charts:  # hidden for a sweep (it trains nothing)
            log_scale = gr.Checkbox(False, label="Log-scale loss axis", elem_id="log-scale")
            loss_plot = gr.Plot(label="Loss", elem_id="loss-plot", show_label=False)
            with gr.Row():
                lr_plot = gr.Plot(label="Learning rate", elem_id="lr-plot", show_label=False, min_width=280)
                grad_plot = gr.Plot(label="Grad norm", elem_id="grad-norm-plot", show_label=False, min_width=280)
        with gr.Column(visible=False, elem_id="grpo-samples") as grpo_samples:
            samples_df = gr.Dataframe(label="Sample completions with their rewards (newest first)", wrap=True,
                                      interactive=False, max_height=460, elem_id="samples-table")
        downloads = gr.File(label="Downloads (adapter .zip, spec, events, evaluation)", file_count="multiple",
                            interactive=False, elem_id="job-downloads")
        log_box = gr.Textbox(label="Log (last lines)", lines=10, max_lines=10, autoscroll=True, elem_id="job-log")
        # autoscroll follows appended text only once the box has been scrolled; the newest lines are what a person
        # opens a log for, so every new value is shown from its end.
        log_box.change(None, None, None, js=SHOW_LOG_END, api_visibility="private")
        with gr.Accordion("Push to the Hub", open=False, elem_id="job-push-box") as push_box:
            with gr.Row():
                push_repo = gr.Textbox(label="Hub repo (default: <you>/<project name>, private)", scale=3)
                push_merged = gr.Checkbox(False, label="also push the merged model")
                push_gguf = gr.Checkbox(False, label="also push the checked GGUF export")
                push_btn = gr.Button("Push to Hub", scale=1, interactive=False, elem_id="job-push")
        evaluation_panel = EvaluationPanel(service)  # its own module: evaluation_panel.py
        export_panel = ExportPanel(service)  # its own module: export_panel.py
        with gr.Accordion("Compare runs", open=False, elem_id="compare-box"):
            compare_select = gr.Dropdown([], multiselect=True, label="Jobs to compare", elem_id="compare-select")
            compare_plot = gr.Plot(label="Compare runs", elem_id="compare-plot", show_label=False)
            compare_eval = gr.Dataframe(label="Evaluation reports side by side (which adapter to push?)", wrap=True,
                                        interactive=False, visible=False, elem_id="compare-evaluation")
            compare_diff = gr.Dataframe(label="Settings that differ", wrap=True, interactive=False, visible=False,
                                        elem_id="compare-settings")
        jobs_df = gr.Dataframe(headers=["id", "name", "status", "progress", "loss", "owner", "created"],
                               label="All jobs (click a row to open that job)", interactive=False,
                               elem_id="jobs-table")
        view = gr.State(new_view())  # per session; mutated in place, so a tick in flight sees a newer pick
        timer = gr.Timer(TICK_SECONDS)

    buttons = {"stop": stop_btn, "resume": resume_btn, "continue": continue_btn, "push": push_btn}

    def render(view: dict, scale: bool, caller: Identity, forced: bool) -> tuple:
        """Every output for the job view["pick"] (or, with none, an unfinished job else the newest); gr.skip()
        for what the page already shows."""
        jobs = service.list_jobs()
        ids = [j["id"] for j in jobs]
        auto = view["pick"] not in ids
        if auto:  # re-attach: prefer an unfinished job, else the newest
            view["pick"] = next((j["id"] for j in jobs if j["status"] in UNFINISHED), ids[0] if ids else None)
        selected = view["pick"]
        choices = [(f"{j['name']} · {j['id']} · {j['status']}", j["id"]) for j in jobs]
        fresh_choices = forced or choices != view["choices"]
        view["choices"] = choices
        picker = gr.update(choices=choices, value=selected) if forced or auto else (
            gr.update(choices=choices) if fresh_choices else gr.skip())  # never the value the person just changed
        compare_choices = gr.update(choices=choices) if fresh_choices else gr.skip()
        table = jobs_table(jobs)
        table_out = table if forced or table != view["table"] else gr.skip()
        view["table"] = table
        if selected is None:
            off = [gr.update(interactive=False)] * len(ACTIONS)
            return (picker, "No jobs yet — start one in the Train tab.", "", "", None, None, None, None, "",
                    table_out, compare_choices, view, *off, gr.update(visible=False), *rl_views(None),
                    *evaluation_panel.render(None, view, caller, forced),
                    *export_panel.render(None, view, caller, forced),
                    *sweep_panel.render(None, None, view, forced, training_charts))
        job = service.job_view(selected)
        sweep = sweep_panel.status(job) if job.get("is_sweep") else None
        p = job["progress"]
        key = (selected, job["status"], p.get("last_event_time"), len(p.get("loss_series") or []), bool(scale))
        redraw = forced or key != view["drawn"]
        view["drawn"] = key
        if not redraw:  # nothing new: leave the charts and downloads alone (no redraw, no file copies)
            plots: tuple = (gr.skip(),) * 4
        else:
            files = service.downloads(selected, caller) or None
            plots = (vega(charts.loss_chart(p, scale)),
                     vega(charts.metric_chart(p.get("lr_series") or [], "learning rate", p.get("total_steps"))),
                     vega(charts.metric_chart(p.get("grad_norm_series") or [], "grad norm", p.get("total_steps"),
                                              "#db2777")), files)
        was_grpo = None if forced else view["grpo"]
        view["grpo"] = job.get("trainer") == "grpo"
        states = [gr.update(interactive=job["actions"][a]) for a in ACTIONS]
        job_dir = (job.get("paths") or {}).get("job_dir")
        bar, card_row = SweepPanel.progress(job, sweep) if sweep else (progress_html(job),
                                                                       cards_html(metric_cards(job)))
        return (picker, header_markdown(job), bar, card_row, *plots,
                readable_log(service.logs(selected, 40), job_dir), table_out, compare_choices, view, *states,
                gr.update(visible=next_steps(job)), *rl_views(job, redraw, was_grpo),
                *evaluation_panel.render(job, view, caller, forced), *export_panel.render(job, view, caller, forced),
                *sweep_panel.render(job, sweep, view, forced, training_charts))

    def refresh(view: dict, scale: bool, request: gr.Request, profile: Optional[gr.OAuthProfile] = None,
                oauth_token: Optional[gr.OAuthToken] = None) -> tuple:
        """The timer's refresh: the job the session picked, only what changed; nothing at all when the person
        picked another job while it ran (their pick's own answer shows that job: no snapping back)."""
        gen = view["gen"]
        out = render(view, scale, _caller(request, profile, oauth_token), forced=False)
        return (gr.skip(),) * len(out) if view["gen"] != gen else out

    def select_job(job_id: Optional[str], scale: bool, view: dict, request: gr.Request,
                   profile: Optional[gr.OAuthProfile] = None, oauth_token: Optional[gr.OAuthToken] = None) -> tuple:
        """Show `job_id` (a pick in the dropdown or the table, a job just started) and keep showing it."""
        if not job_id:
            return (gr.skip(),) * len(outputs)
        view["pick"], view["gen"] = job_id, view["gen"] + 1
        return render(view, scale, _caller(request, profile, oauth_token), forced=True)

    def pick_row(view: dict, scale: bool, evt: gr.SelectData, request: gr.Request,
                 profile: Optional[gr.OAuthProfile] = None, oauth_token: Optional[gr.OAuthToken] = None) -> tuple:
        row = evt.row_value or []
        return select_job(str(row[0]) if row else None, scale, view, request, profile, oauth_token)

    outputs = [job_select, status_md, progress, cards, loss_plot, lr_plot, grad_plot, downloads, log_box, jobs_df,
               compare_select, view, stop_btn, resume_btn, continue_btn, push_btn, next_row, grpo_charts, reward_plot,
               kl_plot, grpo_samples, samples_df, *evaluation_panel.outputs(), *export_panel.outputs(),
               *sweep_panel.outputs(), training_charts]
    quiet = {**PRIVATE, "show_progress": "hidden"}
    timer.tick(refresh, [view, log_scale], outputs, **quiet)
    tab.select(None, js=REFIT_CHARTS, **PRIVATE)
    job_select.input(select_job, [job_select, log_scale, view], outputs, **quiet).then(None, js=REFIT_CHARTS)
    jobs_df.select(pick_row, [view, log_scale], outputs, **quiet).then(None, js=REFIT_CHARTS)
    log_scale.input(select_job, [job_select, log_scale, view], outputs, **quiet)
    push_next.click(lambda: gr.update(open=True), None, push_box, **PRIVATE)
    export_next.click(lambda: gr.update(open=True), None, export_panel.box, **PRIVATE)
    report_next.click(lambda: gr.update(open=True), None, evaluation_panel.box, **PRIVATE)
    export_panel.wire(job_select, view, service)
    evaluation_panel.wire(job_select, view, service)
    sweep_panel.wire(job_select, (select_job, [log_scale, view], outputs))
    for button in (chat_btn, eval_btn):
        button.click(None, js=OPEN_CHAT_TAB, **PRIVATE)

    def overlay_runs(job_ids: list[str], scale: bool) -> tuple:
        chart = vega(charts.compare_chart(service.compare_runs(job_ids or []), scale)) if job_ids else None
        return (chart, *compare_tables(service, job_ids or []))

    compare_select.input(overlay_runs, [compare_select, log_scale], [compare_plot, compare_eval, compare_diff],
                         **PRIVATE)

    def act(action: str, job_id: Optional[str], epochs: float, request: gr.Request,
            profile: Optional[gr.OAuthProfile] = None, oauth_token: Optional[gr.OAuthToken] = None) -> str:
        from .api import _guard

        _guard(request, profile, oauth_token)
        if not job_id:
            return "Select a job first."
        try:
            out = {"stop": lambda: service.stop(job_id), "resume": lambda: service.resume(job_id),
                   "continue": lambda: service.continue_training(job_id, float(epochs or 1))}[action]()
        except (ValueError, KeyError) as exc:
            return f"**Cannot {action}:** {exc}"
        return f"{action}: job `{out['id']}` is now **{out['status']}**"

    def push(job_id: Optional[str], repo: str, merged: bool, gguf: bool, request: gr.Request,
             profile: Optional[gr.OAuthProfile] = None, oauth_token: Optional[gr.OAuthToken] = None) -> str:
        from .api import _guard

        _guard(request, profile, oauth_token)
        if not job_id:
            return "Select a job first."
        try:
            out = service.push(job_id, repo.strip() or None, merged, gguf)
        except (ValueError, HubError) as exc:
            return f"**Cannot push:** {exc}"
        if out["status"] != "succeeded":
            return f"**Trained, not pushed:** {out['error']} — press Push again to retry."
        gguf_line = f"; GGUF files: [{out['gguf_url']}]({out['gguf_url']})" if out.get("gguf_url") else ""
        return f"Pushed to [{out['hub_url']}]({out['hub_url']}){gguf_line}"

    push_btn.click(push, [job_select, push_repo, push_merged, push_gguf], action_md, **PRIVATE)
    for action in ("stop", "resume", "continue"):
        buttons[action].click(_bind(act, action), [job_select, more_epochs], action_md, **PRIVATE).then(
            select_job, [job_select, log_scale, view], outputs, **quiet)
    # For app.py: `select` shows a given job (prepend the component holding its id to the inputs), `refresh` is
    # the timer's; `chat`/`evaluate` are the next-step buttons of a trained job (app.py switches to the Chat tab
    # and picks the adapter of job_select's job there); `refit_js` makes the charts fit after a tab switch.
    return {"job_select": job_select, "refresh": (refresh, [view, log_scale], outputs),
            "select": (select_job, [log_scale, view], outputs), "chat": chat_btn, "evaluate": eval_btn,
            "refit_js": REFIT_CHARTS}


def _caller(request: Any, profile: Any, oauth_token: Any) -> Identity:
    try:
        return identify(request, profile, oauth_token)
    except AccessDenied:  # a rejected token reads like an anonymous visitor
        return Identity()


def _bind(act: Any, action: str) -> Any:
    def handler(job_id: Optional[str], epochs: float, request: gr.Request,
                profile: Optional[gr.OAuthProfile] = None, oauth_token: Optional[gr.OAuthToken] = None) -> str:
        return act(action, job_id, epochs, request, profile, oauth_token)
    return handler
