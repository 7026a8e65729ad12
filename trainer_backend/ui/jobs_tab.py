"""Jobs tab: every job with its status; the selected one's progress, live loss plot, log tail, metrics and
Stop / Resume / Continue. A timer re-reads the job store, so closing the browser loses nothing."""
from __future__ import annotations

import time
from typing import Any, Optional

import gradio as gr
import pandas as pd

from ..job_status import UNFINISHED
from .service import StudioService

PRIVATE = {"api_visibility": "private"}


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _loss_frame(progress: dict) -> pd.DataFrame:
    rows = [{"step": s, "loss": v, "series": "train"} for s, v in progress.get("loss_series", [])]
    rows += [{"step": s, "loss": v, "series": "eval"} for s, v in progress.get("eval_series", [])]
    return pd.DataFrame(rows or [{"step": 0, "loss": None, "series": "train"}])


def status_markdown(job: dict) -> str:
    p = job["progress"]
    pct = p.get("percent")
    lines = [f"### {job['name']} · `{job['id']}` · **{job['status']}**",
             f"step {p.get('step', 0)} / {p.get('total_steps') or '?'}"
             + (f" ({pct:.1f}%)" if pct is not None else "")
             + f" · elapsed {_duration(p.get('elapsed_seconds'))} · ETA {_duration(p.get('eta_seconds'))}"]
    facts = [("loss", p.get("loss")), ("eval loss", p.get("eval_loss")), ("lr", p.get("learning_rate")),
             ("tokens/s", p.get("tokens_per_second"))]
    lines.append(" · ".join(f"{k} {v:.4g}" for k, v in facts if isinstance(v, (int, float))))
    if job.get("error"):
        lines.append(f"\n**Error:** {job['error']}")
    return "\n\n".join(lines)


def build_jobs_tab(service: StudioService) -> dict[str, Any]:
    with gr.Tab("Jobs", id="jobs"):
        with gr.Row():
            job_select = gr.Dropdown([], label="Job", interactive=True, elem_id="job-select", scale=3)
            refresh_btn = gr.Button("Refresh", scale=1)
        status_md = gr.Markdown(elem_id="job-status")
        progress = gr.Slider(0, 100, value=0, label="Progress (%)", interactive=False, elem_id="job-progress")
        loss_plot = gr.LinePlot(x="step", y="loss", color="series", title="Loss", elem_id="loss-plot", height=280)
        with gr.Row():
            stop_btn = gr.Button("Stop", variant="stop")
            resume_btn = gr.Button("Resume")
            more_epochs = gr.Number(1, label="More epochs", minimum=0.1, scale=1)
            continue_btn = gr.Button("Continue training")
        with gr.Row():
            push_repo = gr.Textbox(label="Hub repo (default: <you>/<project name>, private)", scale=3)
            push_merged = gr.Checkbox(False, label="also push the merged model")
            push_btn = gr.Button("Push to Hub", scale=1)
        action_md = gr.Markdown()
        log_box = gr.Textbox(label="Log (last lines)", lines=10, max_lines=10, autoscroll=True)
        details = gr.JSON(label="Metrics and artifacts")
        jobs_table = gr.Dataframe(headers=["id", "name", "status", "progress", "loss", "owner", "created"],
                                  label="All jobs", interactive=False, elem_id="jobs-table")
        timer = gr.Timer(2.0)

    def refresh(selected: Optional[str]) -> tuple:
        jobs = service.list_jobs()
        table = [[j["id"], j["name"], j["status"],
                  f"{j['percent']:.0f}%" if j["percent"] is not None else "", j["loss"] or "", j["owner"],
                  time.strftime("%Y-%m-%d %H:%M", time.localtime(j["created_at"]))] for j in jobs]
        ids = [j["id"] for j in jobs]
        if selected not in ids:  # re-attach: prefer a running job, else the newest
            selected = next((j["id"] for j in jobs if j["status"] in UNFINISHED), ids[0] if ids else None)
        choices = [(f"{j['name']} · {j['id']} · {j['status']}", j["id"]) for j in jobs]
        if selected is None:
            return (gr.update(choices=choices, value=None), "No jobs yet — start one in the Train tab.", 0,
                    _loss_frame({}), "", {}, table)
        job = service.status(selected, series=True)
        info = {"metrics": job["metrics"], "paths": job["paths"], "times": job["times"],
                "error_details": job["error_details"]}
        return (gr.update(choices=choices, value=selected), status_markdown(job), job["progress"].get("percent") or 0,
                _loss_frame(job["progress"]), service.logs(selected, 40), info, table)

    outputs = [job_select, status_md, progress, loss_plot, log_box, details, jobs_table]
    timer.tick(refresh, job_select, outputs, **PRIVATE)
    refresh_btn.click(refresh, job_select, outputs, **PRIVATE)
    job_select.input(refresh, job_select, outputs, **PRIVATE)

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

        ident = _guard(request, profile, oauth_token)
        if not job_id:
            return "Select a job first."
        try:
            out = service.push(job_id, repo.strip() or None, merged, ident.token)
        except ValueError as exc:
            return f"**Cannot push:** {exc}"
        if out["status"] != "succeeded":
            return f"**Trained, not pushed:** {out['error']} — press Push again to retry."
        return f"Pushed to [{out['hub_url']}]({out['hub_url']})"

    push_btn.click(push, [job_select, push_repo, push_merged], action_md, **PRIVATE)
    for button, action in ((stop_btn, "stop"), (resume_btn, "resume"), (continue_btn, "continue")):
        button.click(_bind(act, action), [job_select, more_epochs], action_md, **PRIVATE)
    return {"job_select": job_select, "refresh": (refresh, job_select, outputs)}


def _bind(act: Any, action: str) -> Any:
    def handler(job_id: Optional[str], epochs: float, request: gr.Request,
                profile: Optional[gr.OAuthProfile] = None, oauth_token: Optional[gr.OAuthToken] = None) -> str:
        return act(action, job_id, epochs, request, profile, oauth_token)
    return handler
