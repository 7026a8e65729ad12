"""The named API for gradio_client: every action of the app, with explicit api_names and typed inputs.

Endpoints that take an uploaded dataset are wired through hidden components (so a client can send a file
with `gradio_client.handle_file`); the rest are typed functions registered with `gr.api`. Every call that
changes something checks the caller first (access.py).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional, Union

import gradio as gr

from ..access import AccessDenied, current_caller, identify, is_member, require_trainer
from ..jobs.follow import MAX_WAIT_S as MAX_FOLLOW_WAIT_S, job_updates as follow_job
from ..public_demo import DemoCaps, DemoLimiter, check_demo_request, demo_hub_token, demo_turn, visitor_key
from .gate import current_request, public
from .service import StudioService

# Hard bounds on numbers a client sends (also for members): past them a call is refused, not clamped silently.
MAX_LOG_LINES = 5000
MAX_LIST = 1000
_DEMO_LIMITER = DemoLimiter()


def _bounded(name: str, value: Any, low: float, high: float) -> Any:
    try:
        ok = low <= float(value) <= high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise gr.Error(f"{name} must be a number from {low:g} to {high:g} (got {value!r})", print_exception=False)
    return value


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

    def plan_job(spec: str, dataset: Any, probe_steps: int = 0, hardware: str = "") -> dict:
        """Before Start: parameters, peak memory by part, tokens, steps, time and cost ({ok, plan, markdown}).
        probe_steps > 0 loads the model and times that many real optimizer steps on this machine."""
        _bounded("probe_steps", probe_steps, 0, 20)
        return service.plan(spec, _file_path(dataset), int(probe_steps), hardware or None)

    with gr.Column(visible=False):
        probe_in, hardware_in, plan_btn = gr.Number(value=0, precision=0), gr.Textbox(value=""), gr.Button()
    plan_btn.click(plan_job, [spec_in, file_in, probe_in, hardware_in], result, api_name="plan_job")
    validate_btn.click(validate_dataset, [spec_in, file_in], result, api_name="validate_dataset")
    report_btn.click(dataset_report, [spec_in, file_in], result, api_name="dataset_report")
    start_btn.click(start_training, [spec_in, file_in], result, api_name="start_training")

    @gr.api(api_name="list_jobs", queue=False)  # a cheap read: no queue round trip for pollers
    def list_jobs(limit: int = 100) -> list[dict]:
        """Jobs, newest first: id, name, status, owner, percent, step, total_steps, loss, error."""
        return service.list_jobs(int(_bounded("limit", limit, 1, MAX_LIST)))

    @gr.api(api_name="job_status", queue=False)  # a cheap read: no queue round trip for pollers
    def job_status(job_id: str, series: bool = False) -> dict:
        """One job: status, progress (step/total, percent, elapsed, ETA, loss, lr, tokens/s, eval loss; the loss
        series when series=true; GRPO runs add reward/KL/length series and sample completions), trainer, times,
        metrics, error, artifact paths."""
        return service.status(job_id, series)

    @gr.api(api_name="job_events")
    def job_events(job_id: str, interval: float = 1.0) -> Iterator[dict]:
        """Streams progress snapshots until the job ends."""
        yield from service.events(job_id, float(_bounded("interval", interval, 0.2, 60)))

    @gr.api(api_name="job_updates", queue=False)  # its wait holds a worker thread, never a queue slot
    def job_updates(job_id: str, cursor: str = "", wait: float = 0) -> dict:
        """What happened in a job since `cursor` ("" = from its start): {status, done, error, progress, events
        (progress logs, evaluations, checkpoints, how it ended), log (new lines), cursor (pass it to the next call),
        more, metrics (once done)}. wait > 0 (at most 30 s) holds the call until something new happens or the job
        ends: follow a run with one call per change, not its whole history each time."""
        _bounded("wait", wait, 0, MAX_FOLLOW_WAIT_S)
        return follow_job(service.jobs, job_id, cursor or "", float(wait))

    @gr.api(api_name="job_logs", queue=False)  # a cheap read: no queue round trip for pollers
    def job_logs(job_id: str, tail: int = 200) -> str:
        """The last lines of the job's log file."""
        return service.logs(job_id, int(_bounded("tail", tail, 1, MAX_LOG_LINES)))

    @gr.api(api_name="stop_job")
    def stop_job(job_id: str, request: gr.Request) -> dict:
        """Graceful stop: a checkpoint is saved at the next step, then the process exits."""
        _guard(request)
        return service.stop(job_id)

    @gr.api(api_name="resume_job")
    def resume_job(job_id: str, request: gr.Request) -> dict:
        """Resume a stopped, failed or interrupted job from its last checkpoint."""
        _guard(request)
        return service.resume(job_id)

    @gr.api(api_name="continue_job")
    def continue_job(job_id: str, epochs: float, request: gr.Request) -> dict:
        """Train a finished job for N more epochs as a new job linked to it."""
        _guard(request)
        return service.continue_training(job_id, epochs)

    @gr.api(api_name="push_job")
    def push_job(job_id: str, repo_id: str = "", merged: bool = False, gguf: bool = False,
                 request: Optional[gr.Request] = None) -> dict:
        """Push a finished job's adapter (optionally also the merged model, and with gguf=true the job's checked
        export: GGUF files + Modelfile to <repo>-GGUF) to the caller's Hub account; a failed push leaves the job
        'trained_not_pushed' and can be retried."""
        _guard(request)
        return service.push(job_id, repo_id, merged, gguf)

    _register_sweep_api(service, spec_in, file_in, result)
    _register_export_api(service)
    _register_evaluation_api(service)
    _register_inference_api(service)


def _register_sweep_api(service: StudioService, spec_in: Any, file_in: Any, result: Any) -> None:
    from .sweep_service import SweepService

    sweeps = SweepService(service)

    def start_sweep(spec: str, dataset: Any, request: gr.Request, profile: Optional[gr.OAuthProfile] = None,
                    oauth_token: Optional[gr.OAuthToken] = None) -> dict:
        """Queue a sweep: a spec with a `sweep:` section (parameters to search with a range or choices, objective,
        trials, parallel, sampler, pruner, time_budget, max_cost, max_rows). Each trial is a job of its own, started
        with the caller's Hub token. Returns {job_id, status, error, issues}."""
        ident = _guard(request, profile, oauth_token)
        return sweeps.start(spec, _file_path(dataset), ident.username)

    with gr.Column(visible=False):
        sweep_btn = gr.Button()
    sweep_btn.click(start_sweep, [spec_in, file_in], result, api_name="start_sweep")

    @gr.api(api_name="sweep_status", queue=False)  # a cheap read of sweep.json
    def sweep_status(job_id: str, request: Optional[gr.Request] = None) -> dict:
        """A sweep now: status, objective and direction, each trial (job id, settings, state queued / running /
        complete / pruned / failed / stopped, objective, evaluations by step, where it was pruned, time, cost), the
        best trial, parameter importances, elapsed time and spend."""
        _guard(request)
        try:
            return sweeps.status(job_id)
        except ValueError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    @gr.api(api_name="promote_sweep")
    def promote_sweep(job_id: str, continue_epochs: float = 0, request: Optional[gr.Request] = None) -> dict:
        """Start the best trial's settings as a full run on all the data (with the sweep spec's Hub push, export and
        report), or with continue_epochs > 0 train the best trial itself that many epochs more. Returns the new job
        {id, name, status, error, parent_id}."""
        _guard(request)
        _bounded("continue_epochs", continue_epochs, 0, 1000)
        try:
            return sweeps.promote(job_id, float(continue_epochs) or None)
        except ValueError as exc:
            raise gr.Error(str(exc), print_exception=False) from None


def _register_export_api(service: StudioService) -> None:
    from .export_service import ExportService, options_raw, parse_options

    exports = ExportService(service)

    @gr.api(api_name="export_job")
    def export_job(job_id: str, formats: list[str], merged_dtype: str = "auto", check_prompts: int = 8,
                   check_tokens: int = 32, system_prompt: str = "",
                   request: Optional[gr.Request] = None) -> Iterator[dict]:
        """Export a finished job in the background (formats: merged, f16, bf16, q8_0, q4_K_M, lora_gguf,
        modelfile) with the caller's own Hub token, and stream its status until it ends: {state, fraction,
        message, files, columns, table (each file's round-trip check: pass / warn / fail and what differs), notes,
        error}. While an export with the same options runs, this follows it (`attached`: true); other options
        are refused until it ends."""
        _guard(request)
        spec = parse_options(options_raw(formats, merged_dtype, check_prompts, check_tokens, system_prompt))
        yield from exports.export(job_id, spec)

    @gr.api(api_name="export_status", queue=False)  # a cheap read of the export's record
    def export_status(job_id: str, request: Optional[gr.Request] = None) -> dict:
        """The job's export now (state none when it was never exported): as /export_job's items."""
        _guard(request)
        return exports.status(job_id)


def _register_evaluation_api(service: StudioService) -> None:
    from .evaluation_service import EvaluationService, given_settings

    reports = EvaluationService(service)

    @gr.api(api_name="evaluate_job")
    def evaluate_job(job_id: str, tasks: Optional[list[str]] = None, task_limit: Optional[int] = None,
                     max_examples: Optional[int] = None, time_budget: Optional[int] = None, judge: str = "",
                     judge_model: str = "", judge_prompts: Optional[int] = None,
                     request: Optional[gr.Request] = None) -> Iterator[dict]:
        """The evaluation report of a finished job, in the background with the caller's own Hub token: held-out
        metrics base vs fine-tuned, general tasks through lm-evaluation-harness (tasks: harness task names, LoRA
        Studio's local tasks or a task folder; [] none), the forgetting verdict, a judge's win rate (judge: a Hub
        model id or, for a Space's owner, an OpenAI-compatible URL; "none": no judge). Values left out come from the
        job's spec. Streams {state, fraction, message, verdict, held_out, general, judge, notes, error} until it
        ends; refused while a report of the job runs."""
        _guard(request)
        given = given_settings(tasks, task_limit, max_examples, time_budget, judge, judge_model, judge_prompts)
        yield from reports.evaluate(job_id, reports.settings_for(job_id, given))

    @gr.api(api_name="evaluation_report", queue=False)  # a cheap read of evaluation.json
    def evaluation_report(job_id: str, request: Optional[gr.Request] = None) -> dict:
        """The job's evaluation report now (state none when it was never evaluated): as /evaluate_job's items."""
        _guard(request)
        return reports.status(job_id)


def _register_inference_api(service: StudioService) -> None:
    from ..generation import DEFAULTS, EVALUATION, GenerationSettings

    def settings(temperature: float, top_p: float, max_new_tokens: int, repetition_penalty: float) -> Any:
        cap = None if is_member(current_caller()) else DemoCaps.from_env().max_new_tokens
        try:
            return GenerationSettings.checked(cap, temperature=temperature, top_p=top_p,
                                              max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
        except ValueError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    def visitor_turn(adapter: str, history: Any, message: Any, system: Any, tools: Optional[list[dict]]) -> Any:
        """(context, messages). Members: no limits. Visitors: only the public demo's adapters, within its caps,
        cheap checks before their turn is counted, the rendered prompt's within it (public_demo.py); no tools
        (their schemas are not counted in that prompt)."""
        caller = current_caller()
        if is_member(caller):
            return contextlib.nullcontext(), list(history or []) + [{"role": "user", "content": message}]
        if tools:
            raise gr.Error("the public demo takes no tools: send tools=None (or duplicate the Space to try tool "
                           "calls)", print_exception=False)
        caps = DemoCaps.from_env()
        try:
            messages = check_demo_request(adapter, _job_id(service, adapter), caps, history, message, system)
        except AccessDenied as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        visitor = visitor_key(caller.username, current_request())
        return demo_turn(_DEMO_LIMITER, visitor, caps, lambda: service.adapter_path(adapter), messages,
                         system or None, demo_hub_token(adapter)), messages

    @gr.api(api_name="chat")
    @public  # visitors: the public demo only (visitor_turn)
    def chat(adapter: str, message: str, history: Optional[list[dict]] = None, system: str = "",
             temperature: float = DEFAULTS.temperature, top_p: float = DEFAULTS.top_p,
             max_new_tokens: int = DEFAULTS.max_new_tokens,
             repetition_penalty: float = DEFAULTS.repetition_penalty,
             tools: Union[str, list[dict], None] = None) -> Iterator[str]:
        """Streams the fine-tuned model's answer (adapter: job id, job folder or Hub repo id). `tools`: the tool
        schemas it may call (a list or its JSON text; OpenAI's {"type": "function", "function": {...}} or bare
        {name, description, parameters}); history may hold assistant `tool_calls` and `tool` results. The answer
        is the model's text, calls as it writes them (tool_output.extract_calls reads them)."""
        gen = settings(temperature, top_p, max_new_tokens, repetition_penalty)
        schemas = _tools(tools)
        turn, messages = visitor_turn(adapter, history, message, system or "", schemas)
        try:
            with turn:
                yield from service.chat(adapter, messages, gen, system or None, schemas)
        except AccessDenied as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    @gr.api(api_name="compare")
    @public  # visitors: the public demo only (visitor_turn)
    def compare(adapter: str, message: str, system: str = "", temperature: float = DEFAULTS.temperature,
                max_new_tokens: int = DEFAULTS.max_new_tokens, tools: Union[str, list[dict], None] = None) -> dict:
        """The same prompt answered by the base model and the fine-tuned one: {base, fine_tuned}. `tools`: as
        /chat's."""
        gen = settings(temperature, DEFAULTS.top_p, max_new_tokens, DEFAULTS.repetition_penalty)
        schemas = _tools(tools)
        turn, messages = visitor_turn(adapter, [], message, system or "", schemas)
        try:
            with turn:
                return service.compare(adapter, messages, gen, system or None, schemas)
        except AccessDenied as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    @gr.api(api_name="evaluate")
    def evaluate(adapter: str, max_examples: int = 50, max_new_tokens: int = EVALUATION.max_new_tokens) -> dict:
        """Base vs fine-tuned on the job's validation split: loss, perplexity, exact match, ROUGE-L, examples."""
        _bounded("max_examples", max_examples, 1, 10_000)
        report = service.evaluate(adapter, None, int(max_examples),
                                  settings(EVALUATION.temperature, EVALUATION.top_p, max_new_tokens,
                                           EVALUATION.repetition_penalty))
        return report.to_dict()


def _tools(value: Any) -> Optional[list[dict]]:
    """A client's `tools` (a list of schemas or its JSON text) in the canonical shape; None for none."""
    from ..tool_calls import ToolFormatError, normalize_tools

    try:
        return normalize_tools(value) or None
    except ToolFormatError as exc:
        raise gr.Error(f"tools: {exc.message}" + (f"; fix: {exc.fix}" if exc.fix else ""),
                       print_exception=False) from None


def _job_id(service: StudioService, ref: str) -> Optional[str]:
    try:
        return service.jobs.get(ref).id
    except (KeyError, ValueError):
        return None
