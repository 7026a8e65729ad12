"""The named API for gradio_client: every action of the app, with explicit api_names and typed inputs.

Endpoints that take an uploaded dataset are wired through hidden components (so a client can send a file
with `gradio_client.handle_file`); the rest are typed functions registered with `gr.api`. Every call that
changes something checks the caller first (access.py). Every endpoint goes through `client_errors`
(api_errors.py), so a failure reaches the client as a readable message, never as an opaque AppError.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import gradio as gr

from ..access import AccessDenied, identify, require_trainer
from .api_errors import client_errors
from .service import StudioService


def _guard(request: Optional[gr.Request], profile: Optional[gr.OAuthProfile] = None,
           oauth_token: Optional[gr.OAuthToken] = None) -> Any:
    """The caller's identity, or a gr.Error when they may not change anything."""
    try:
        ident = identify(request, profile, oauth_token)
        require_trainer(ident)
        return ident
    except AccessDenied as exc:
        raise gr.Error(str(exc)) from None


def _file_path(file: Any) -> Optional[str]:
    if file is None:
        return None
    return file if isinstance(file, str) else getattr(file, "name", None) or file.get("path")


def register_api(service: StudioService) -> None:
    """Create the endpoints inside the current gr.Blocks context."""
    with gr.Column(visible=False):
        spec_in = gr.Textbox(label="spec (YAML or JSON)")
        file_in = gr.File(label="dataset file (optional; else data.path in the spec)")
        result = gr.JSON()
        validate_btn, report_btn, start_btn = gr.Button(), gr.Button(), gr.Button()

    def validate_dataset(spec: str, dataset: Any) -> dict:
        """Validate the spec and every data row. Returns {ok, errors, warnings}."""
        out = service.validate(spec, _file_path(dataset))
        out.pop("report", None)
        return out

    def dataset_report(spec: str, dataset: Any) -> dict:
        """The dataset report: format and why, rows per split, token lengths, truncation, a rendered sample."""
        return service.validate(spec, _file_path(dataset))

    def start_training(spec: str, dataset: Any, request: gr.Request, profile: Optional[gr.OAuthProfile] = None,
                       oauth_token: Optional[gr.OAuthToken] = None) -> dict:
        """Queue a training job. Returns {job_id, status, error, issues}: a job whose data is invalid is
        recorded as failed with the problems and never starts."""
        ident = _guard(request, profile, oauth_token)
        return service.start(spec, _file_path(dataset), ident.username)

    validate_btn.click(client_errors(validate_dataset), [spec_in, file_in], result, api_name="validate_dataset")
    report_btn.click(client_errors(dataset_report), [spec_in, file_in], result, api_name="dataset_report")
    start_btn.click(client_errors(start_training), [spec_in, file_in], result, api_name="start_training")

    @gr.api(api_name="list_jobs", queue=False)  # a cheap read: no queue round trip for pollers
    @client_errors
    def list_jobs(limit: int = 100) -> list[dict]:
        """Jobs, newest first: id, name, status, owner, percent, step, total_steps, loss, error."""
        return service.list_jobs(limit)

    @gr.api(api_name="job_status", queue=False)  # a cheap read: no queue round trip for pollers
    @client_errors
    def job_status(job_id: str, series: bool = False) -> dict:
        """One job: status, progress (step/total, percent, elapsed, ETA, loss, lr, tokens/s, eval loss; the loss
        series when series=true), times, metrics, error, artifact paths."""
        return service.status(job_id, series)

    @gr.api(api_name="job_events")
    @client_errors
    def job_events(job_id: str, interval: float = 1.0) -> Iterator[dict]:
        """Streams progress snapshots until the job ends."""
        yield from service.events(job_id, max(interval, 0.2))

    @gr.api(api_name="job_logs", queue=False)  # a cheap read: no queue round trip for pollers
    @client_errors
    def job_logs(job_id: str, tail: int = 200) -> str:
        """The last lines of the job's log file."""
        return service.logs(job_id, tail)

    @gr.api(api_name="stop_job")
    @client_errors
    def stop_job(job_id: str, request: gr.Request) -> dict:
        """Graceful stop: a checkpoint is saved at the next step, then the process exits."""
        _guard(request)
        return service.stop(job_id)

    @gr.api(api_name="resume_job")
    @client_errors
    def resume_job(job_id: str, request: gr.Request) -> dict:
        """Resume a stopped, failed or interrupted job from its last checkpoint."""
        _guard(request)
        return service.resume(job_id)

    @gr.api(api_name="continue_job")
    @client_errors
    def continue_job(job_id: str, epochs: float, request: gr.Request) -> dict:
        """Train a finished job for N more epochs as a new job linked to it."""
        _guard(request)
        return service.continue_training(job_id, epochs)

    @gr.api(api_name="push_job")
    @client_errors
    def push_job(job_id: str, repo_id: str = "", merged: bool = False, request: gr.Request = None) -> dict:
        """Push a finished job's adapter (optionally also the merged model) to the caller's Hub account; a
        failed push leaves the job 'trained_not_pushed' and can be retried."""
        ident = _guard(request)
        return service.push(job_id, repo_id, merged, ident.token)

    _register_inference_api(service)


def _register_inference_api(service: StudioService) -> None:
    from ..evaluation import evaluate as run_evaluation
    from ..inference import GenerationSettings, chat_stream, compare as run_compare

    def settings(temperature: float, top_p: float, max_new_tokens: int, repetition_penalty: float) -> Any:
        return GenerationSettings(temperature, top_p, int(max_new_tokens), repetition_penalty)

    @gr.api(api_name="chat")
    @client_errors
    def chat(adapter: str, message: str, history: Optional[list[dict]] = None, system: str = "",
             temperature: float = 0.0, top_p: float = 0.9, max_new_tokens: int = 256,
             repetition_penalty: float = 1.0) -> Iterator[str]:
        """Streams the fine-tuned model's answer (adapter: job id, job folder or Hub repo id)."""
        messages = list(history or []) + [{"role": "user", "content": message}]
        yield from chat_stream(_adapter_ref(service, adapter), messages,
                               settings(temperature, top_p, max_new_tokens, repetition_penalty), system or None)

    @gr.api(api_name="compare")
    @client_errors
    def compare(adapter: str, message: str, system: str = "", temperature: float = 0.0,
                max_new_tokens: int = 256) -> dict:
        """The same prompt answered by the base model and the fine-tuned one: {base, fine_tuned}."""
        return run_compare(_adapter_ref(service, adapter), [{"role": "user", "content": message}],
                           settings(temperature, 0.9, max_new_tokens, 1.0), system or None)

    @gr.api(api_name="evaluate")
    @client_errors
    def evaluate(adapter: str, max_examples: int = 50, max_new_tokens: int = 128) -> dict:
        """Base vs fine-tuned on the job's validation split: loss, perplexity, exact match, ROUGE-L, examples."""
        report = run_evaluation(_adapter_ref(service, adapter), None, int(max_examples),
                                settings(0.0, 0.9, max_new_tokens, 1.0))
        return report.to_dict()


def _adapter_ref(service: StudioService, ref: str) -> str:
    """A job id resolves to its folder; other refs (folder inside the data dir, Hub id) pass through checks."""
    from ..uploads import check_client_path

    try:
        return service.jobs.get(ref).job_dir
    except KeyError:
        return check_client_path(ref, [service.data_dir], "adapter")
