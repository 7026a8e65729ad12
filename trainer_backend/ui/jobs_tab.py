"""Jobs tab: every job with its status; the selected one's progress bar, metric cards, charts (loss with eval
loss, learning rate, grad norm; for GRPO also reward, KL / completion length and a table of sample completions),
downloads, log tail and the actions possible in its status; and a chart that overlays several runs. A timer
re-reads the job store, so the page never needs a reload and closing the browser loses nothing. Callbacks only
call the service and the Gradio-free views (job_view.py, charts.py)."""
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
from .job_view import (CSS, cards_html, header_markdown, human_time, metric_cards, progress_html,
                       samples_column_widths, samples_table)
from .gate import PRIVATE
from .service import StudioService

SHOW_LOG_END = ("() => { setTimeout(() => { const box = document.querySelector('#job-log textarea');"
                " if (box) box.scrollTop = box.scrollHeight; }, 50); }")

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


def rl_views(job: Optional[dict], redraw: bool = True) -> tuple:
    """GRPO's charts box, reward chart, KL / length chart, samples box and samples table; hidden for the rest."""
    if not redraw:
        return (gr.skip(),) * 5
    if not job or job.get("trainer") != "grpo":
        hidden = gr.update(visible=False)
        return hidden, None, None, hidden, None
    p = job["progress"]
    headers, rows = samples_table(p)
    shown = gr.update(visible=True)
    return (shown, vega(charts.reward_chart(p)), vega(charts.kl_length_chart(p)), shown,
            gr.update(value=pd.DataFrame(rows, columns=headers), column_widths=samples_column_widths(headers)))


def build_jobs_tab(service: StudioService) -> dict[str, Any]:
    with gr.Tab("Jobs", id="jobs"):
        gr.HTML(f"<style>{CSS}</style>", padding=False)
        job_select = gr.Dropdown([], label="Job", interactive=True, elem_id="job-select")
        status_md = gr.Markdown(elem_id="job-status")
        progress = gr.HTML(elem_id="job-progress", padding=False)
        with gr.Row():
            stop_btn = gr.Button("Stop", variant="stop", interactive=False, elem_id="job-stop", min_width=80)
            resume_btn = gr.Button("Resume", interactive=False, elem_id="job-resume", min_width=80)
            more_epochs = gr.Number(1, label="More epochs", minimum=0.1, min_width=80)
            continue_btn = gr.Button("Continue training", interactive=False, elem_id="job-continue", min_width=80)
        action_md = gr.Markdown()
        cards = gr.HTML(elem_id="job-metrics", padding=False)
        with gr.Column(visible=False, elem_id="grpo-charts") as grpo_charts:
            reward_plot = gr.Plot(label="Reward", elem_id="reward-plot", show_label=False)
            kl_plot = gr.Plot(label="KL / completion length", elem_id="kl-length-plot", show_label=False)
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
        with gr.Accordion("Push to the Hub", open=False):
            with gr.Row():
                push_repo = gr.Textbox(label="Hub repo (default: <you>/<project name>, private)", scale=3)
                push_merged = gr.Checkbox(False, label="also push the merged model")
                push_btn = gr.Button("Push to Hub", scale=1, interactive=False, elem_id="job-push")
        with gr.Accordion("Compare runs", open=False):
            compare_select = gr.Dropdown([], multiselect=True, label="Jobs to overlay", elem_id="compare-select")
            compare_plot = gr.Plot(label="Compare runs", elem_id="compare-plot", show_label=False)
        jobs_df = gr.Dataframe(headers=["id", "name", "status", "progress", "loss", "owner", "created"],
                               label="All jobs", interactive=False, elem_id="jobs-table")
        drawn = gr.State(None)  # what the charts/downloads show now: redraw only when it changed
        timer = gr.Timer(TICK_SECONDS)

    buttons = {"stop": stop_btn, "resume": resume_btn, "continue": continue_btn, "push": push_btn}

    def refresh(selected: Optional[str], scale: bool, shown: Any, request: gr.Request,
                profile: Optional[gr.OAuthProfile] = None, oauth_token: Optional[gr.OAuthToken] = None) -> tuple:
        jobs = service.list_jobs()
        ids = [j["id"] for j in jobs]
        if selected not in ids:  # re-attach: prefer an unfinished job, else the newest
            selected = next((j["id"] for j in jobs if j["status"] in UNFINISHED), ids[0] if ids else None)
        choices = [(f"{j['name']} · {j['id']} · {j['status']}", j["id"]) for j in jobs]
        picker = gr.update(choices=choices, value=selected)
        compare_choices = gr.update(choices=choices)
        if selected is None:
            off = [gr.update(interactive=False)] * len(ACTIONS)
            return (picker, "No jobs yet — start one in the Train tab.", "", "", None, None, None, None, "",
                    jobs_table(jobs), compare_choices, None, *off, *rl_views(None))
        job = service.job_view(selected)
        p = job["progress"]
        key = (selected, job["status"], p.get("last_event_time"), len(p.get("loss_series") or []), bool(scale))
        redraw = key != shown
        if not redraw:  # nothing new: leave the charts and downloads alone (no redraw, no file copies)
            plots = (gr.skip(),) * 4
        else:
            files = service.downloads(selected, _caller(request, profile, oauth_token)) or None
            plots = (vega(charts.loss_chart(p, scale)),
                     vega(charts.metric_chart(p.get("lr_series") or [], "learning rate", p.get("total_steps"))),
                     vega(charts.metric_chart(p.get("grad_norm_series") or [], "grad norm", p.get("total_steps"),
                                              "#db2777")), files)
        states = [gr.update(interactive=job["actions"][a]) for a in ACTIONS]
        return (picker, header_markdown(job), progress_html(job), cards_html(metric_cards(job)), *plots,
                service.logs(selected, 40), jobs_table(jobs), compare_choices, key, *states, *rl_views(job, redraw))

    inputs = [job_select, log_scale, drawn]
    outputs = [job_select, status_md, progress, cards, loss_plot, lr_plot, grad_plot, downloads, log_box, jobs_df,
               compare_select, drawn, stop_btn, resume_btn, continue_btn, push_btn, grpo_charts, reward_plot, kl_plot,
               grpo_samples, samples_df]
    timer.tick(refresh, inputs, outputs, **PRIVATE)
    job_select.input(refresh, [job_select, log_scale, gr.State(None)], outputs, **PRIVATE)
    log_scale.input(refresh, [job_select, log_scale, gr.State(None)], outputs, **PRIVATE)

    def overlay_runs(job_ids: list[str], scale: bool) -> Any:
        return vega(charts.compare_chart(service.compare_runs(job_ids or []), scale)) if job_ids else None

    compare_select.input(overlay_runs, [compare_select, log_scale], compare_plot, **PRIVATE)

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

    def push(job_id: Optional[str], repo: str, merged: bool, request: gr.Request,
             profile: Optional[gr.OAuthProfile] = None, oauth_token: Optional[gr.OAuthToken] = None) -> str:
        from .api import _guard

        _guard(request, profile, oauth_token)
        if not job_id:
            return "Select a job first."
        try:
            out = service.push(job_id, repo.strip() or None, merged)
        except (ValueError, HubError) as exc:
            return f"**Cannot push:** {exc}"
        if out["status"] != "succeeded":
            return f"**Trained, not pushed:** {out['error']} — press Push again to retry."
        return f"Pushed to [{out['hub_url']}]({out['hub_url']})"

    push_btn.click(push, [job_select, push_repo, push_merged], action_md, **PRIVATE)
    for action in ("stop", "resume", "continue"):
        buttons[action].click(_bind(act, action), [job_select, more_epochs], action_md, **PRIVATE).then(
            refresh, [job_select, log_scale, gr.State(None)], outputs, **PRIVATE)
    return {"job_select": job_select, "refresh": (refresh, [job_select, log_scale, gr.State(None)], outputs)}


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
