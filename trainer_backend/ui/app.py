"""Assemble the app. Local runs bind to 127.0.0.1 without login; on a Space, OAuth decides who may train."""
from __future__ import annotations

import os
from typing import Any, Optional

import gradio as gr

from ..access import can_train, duplicate_url, identify, is_member, on_space, space_token, withhold_space_token
from ..jobs import tokens as job_tokens
from ..library_hooks import calm_gradio_queue_polling, rest_gradio_queue_when_quiet
from ..public_demo import public_adapters
from ..settings import settings
from .api import register_api
from .chat_tab import build_chat_tab
from .gate import install_gate, public
from .http_gate import middleware as http_gate_middleware
from .jobs_tab import build_jobs_tab
from .mcp_server import build_mcp
from .rest import job_routes
from .service import StudioService
from .train_tab import build_train_tab

# System fonts only: Gradio's default theme fetches IBM Plex from Google Fonts, which an air-gapped install cannot
# reach (the page then renders in a fallback that differs from the screenshots).
SYSTEM_SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial",
               "Noto Sans", "Liberation Sans", "sans-serif"]
SYSTEM_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "DejaVu Sans Mono",
               "monospace"]


def theme() -> gr.themes.Base:
    return gr.themes.Default(font=SYSTEM_SANS, font_mono=SYSTEM_MONO)


HEADER = ("# LoRA Studio\nFine-tune language models with LoRA / QLoRA: pick a model and a dataset, check the data, "
          "train in the background, then chat with the result.")


def welcome_markdown() -> str:
    """What a visitor of a Space sees instead of the owner's workspace."""
    text = ("## Welcome\nLoRA Studio fine-tunes language models with LoRA / QLoRA: pick a base model and a dataset, "
            "check every row before any GPU time is spent, train in the background with a live loss curve, push "
            "the adapter to the Hub with a model card, and chat with it side by side with the base model.\n\n"
            "This Space's jobs, data and hardware belong to its owner. **Sign in with Hugging Face** (button "
            f"above) if you are the owner or a member of their organisation, or **[Duplicate this Space]"
            f"({duplicate_url()})** to train on your own hardware — private by default.")
    demos = sorted(public_adapters())
    if demos:
        text += ("\n\n### Public demo\nThe owner shares these adapters for anyone to try through the API "
                 "(`/chat`, `/compare`, within limits): " + ", ".join(f"`{d}`" for d in demos) + ".")
    return text


def restore_synced_jobs(jobs: Any) -> None:
    """With the owner's HF_TOKEN set, jobs kept on the Hub that this disk lost come back (in the background: the
    app starts at once). LORA_STUDIO_RESTORE_FROM_HUB=0 turns it off. On a Space the token was withheld from the
    environment at start (access.withhold_space_token): it is passed explicitly, for this one owner's task."""
    import threading

    token = space_token() if on_space() else os.environ.get("HF_TOKEN")
    if not token or not settings().restore_from_hub:
        return

    def restore() -> None:
        try:
            jobs.restore_from_hub(token)
        except Exception as exc:  # noqa: BLE001 - a Hub that is away must not stop the app; the text has no token
            print(f"restoring synced jobs from the Hub failed: {type(exc).__name__}: {exc}", flush=True)

    threading.Thread(target=restore, name="restore-synced-jobs", daemon=True).start()


def build_app(manager: Any = None) -> gr.Blocks:
    from ..jobs import JobManager
    from ..ml_stack import import_ml_stack

    settings()  # first: a bad LORA_STUDIO_* value stops the app here, with a message naming it (settings.py)
    import_ml_stack()  # before any request thread can import transformers for the first time (ml_stack.py)
    # First of all, before any process is started: on a Space nobody but the owner acts with the owner's token.
    owner_token = withhold_space_token()
    service = StudioService(manager or JobManager())
    if owner_token:  # for the supervisor's housekeeping (pausing the Space), never for anyone's job
        job_tokens.keep(service.data_dir, job_tokens.SPACE_KEY, owner_token)
    restore_synced_jobs(service.jobs)
    with gr.Blocks(title="LoRA Studio") as demo:
        gr.Markdown(HEADER)
        with gr.Row():
            access_md = gr.Markdown(elem_id="access")
            if on_space():
                gr.LoginButton()
        # On a Space the workspace starts hidden and the welcome view shown; `who` swaps them for members.
        with gr.Column(visible=not on_space()) as workspace:
            with gr.Tabs() as tabs:
                train = build_train_tab(service)
                jobs = build_jobs_tab(service)
                chat = build_chat_tab(service)
        welcome = gr.Markdown(welcome_markdown() if on_space() else "", visible=on_space(), elem_id="welcome")
        register_api(service)

        @public
        def who(request: gr.Request, profile: Optional[gr.OAuthProfile] = None,
                oauth_token: Optional[gr.OAuthToken] = None) -> tuple:
            try:
                ident = identify(request, profile, oauth_token)
                member, (allowed, reason) = is_member(ident), can_train(ident)
            except PermissionError as exc:
                member, allowed, reason = False, False, str(exc)
            if allowed:
                text = f"**Access:** {reason}"
            elif member:  # a member on ZeroGPU hardware: everything but training
                text = f"**Access (limited):** {reason}"
            else:
                duplicate = f". [Duplicate this Space]({duplicate_url()})" if on_space() else ""
                text = f"**Access (limited):** {reason}{duplicate}"
            return text, gr.update(visible=member), gr.update(visible=not member)

        demo.load(who, None, [access_md, workspace, welcome], api_visibility="private", show_progress="hidden")
        refresh, inputs, outputs = jobs["refresh"]
        demo.load(refresh, inputs, outputs, api_visibility="private")
        # Start shows the new job: the Jobs tab opens with it selected and its charts fitted (a failed Start empties
        # the box: no tab switch).
        select_job, select_inputs, select_outputs = jobs["select"]
        train["job_started"].change(lambda job_id: gr.Tabs(selected="jobs") if job_id else gr.skip(),
                                    train["job_started"], tabs, api_visibility="private").then(
            select_job, [train["job_started"], *select_inputs], select_outputs, api_visibility="private",
            show_progress="hidden").then(None, js=jobs["refit_js"])
        # A trained job's next steps: its own adapter picked in the Chat tab (the button's js opens the tab), and
        # for Evaluate the evaluation box opened.
        def open_in_chat(job_id: Optional[str]) -> tuple:
            choices = [[label, ref] for label, ref in service.finished_adapters().items()]
            if not job_id or job_id not in {ref for _, ref in choices}:
                return gr.skip(), gr.skip()
            return gr.update(choices=choices, value=job_id), choices

        picked = (open_in_chat, jobs["job_select"], [chat["adapter"], chat["listed"]])
        jobs["chat"].click(*picked, api_visibility="private")
        jobs["evaluate"].click(*picked, api_visibility="private").then(
            lambda: gr.update(open=True), None, chat["evaluate"], api_visibility="private")
        on_dataset, d_in, d_out = train["on_dataset"]
        demo.load(on_dataset, d_in, d_out, api_visibility="private")
    demo.queue(default_concurrency_limit=8)
    calm_gradio_queue_polling(demo, QUEUE_IDLE_POLL_S, PROGRESS_IDLE_POLL_S)  # private to Gradio: library_hooks
    rest_gradio_queue_when_quiet(demo, QUIET_AFTER_S, QUEUE_QUIET_POLL_S, PROGRESS_QUIET_POLL_S)
    install_gate(demo)  # last: every event above, UI and API, goes through the access model
    # Plain GET routes for pollers (rest.py); launch() hands them to the FastAPI app Gradio creates.
    demo.rest_routes = job_routes(service)  # type: ignore[attr-defined]
    demo.studio_mcp = build_mcp(demo)  # type: ignore[attr-defined]  # the same gated endpoints as MCP tools
    return demo


# Gradio's queue looks for new events every 1 ms and for progress updates every 10 ms while idle: ~7% of a core
# on a 2-core Space, taken from the training job all day. Every 10 / 50 ms costs ~1% and adds at most 10 ms to a
# queued call (~170 ms end to end through gradio_client); the plain GET routes (rest.py) do not queue at all.
QUEUE_IDLE_POLL_S, PROGRESS_IDLE_POLL_S = 0.01, 0.05
# After 10 s without a new event (and none running) it polls every 50 / 250 ms: ~0.5 % of a core instead of ~2.4 %;
# the first event after such a quiet spell starts at most 50 ms later (Gradio's own pace on Windows).
QUIET_AFTER_S, QUEUE_QUIET_POLL_S, PROGRESS_QUIET_POLL_S = 10.0, 0.05, 0.25


def launch(demo: Optional[gr.Blocks] = None) -> None:
    from ..jobs.paths import default_data_dir

    demo = demo or build_app()
    host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if on_space() else "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    routes, lifespan = list(getattr(demo, "rest_routes", [])), None
    studio_mcp = getattr(demo, "studio_mcp", None)
    if studio_mcp is not None:  # /mcp (mcp_server.py); Gradio's own MCP server stays off: it would be a second one
        mcp_routes, lifespan = studio_mcp.mount(host)
        routes += mcp_routes
        space_host = os.environ.get("SPACE_HOST") if on_space() else None
        where = f"https://{space_host}" if space_host else f"http://{host}:{port}"
        print(f"* MCP server for agents: {where}/mcp (README: Agents (MCP))", flush=True)
    demo.launch(server_name=host, mcp_server=False, server_port=port,
                max_file_size=settings().max_upload, ssr_mode=False, theme=theme(),
                footer_links=["api"], enable_monitoring=False,  # /monitoring/*: 403 for everyone
                # On a Space, uploads and Gradio's file route are for members only, within quotas (http_gate.py)
                app_kwargs={"routes": routes, "middleware": http_gate_middleware(),
                            **({"lifespan": lifespan} if lifespan else {})},
                # Gradio serves only files it created; say explicitly that nothing of the job store is served
                # (jobs, uploads, adapters, the database), whoever asks.
                allowed_paths=[], blocked_paths=[str(default_data_dir())])
