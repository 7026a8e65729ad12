"""Assemble the app. Local runs bind to 127.0.0.1 without login; on a Space, OAuth decides who may train."""
from __future__ import annotations

import os
from typing import Any, Optional

import gradio as gr

from ..access import can_train, identify, on_space
from .api import register_api
from .chat_tab import build_chat_tab
from .jobs_tab import build_jobs_tab
from .service import StudioService
from .train_tab import build_train_tab

HEADER = ("# LoRA Studio\nFine-tune language models with LoRA / QLoRA: pick a model and a dataset, check the data, "
          "train in the background, then chat with the result.")


def build_app(manager: Any = None) -> gr.Blocks:
    from ..jobs import JobManager
    from ..ml_stack import import_ml_stack

    import_ml_stack()  # before any request thread can import transformers for the first time (ml_stack.py)
    service = StudioService(manager or JobManager())
    with gr.Blocks(title="LoRA Studio") as demo:
        gr.Markdown(HEADER)
        with gr.Row():
            access_md = gr.Markdown(elem_id="access")
            if on_space():
                gr.LoginButton()
        with gr.Tabs() as tabs:
            train = build_train_tab(service)
            jobs = build_jobs_tab(service)
            build_chat_tab(service)
        register_api(service)

        def who(request: gr.Request, profile: Optional[gr.OAuthProfile] = None,
                oauth_token: Optional[gr.OAuthToken] = None) -> str:
            try:
                allowed, reason = can_train(identify(request, profile, oauth_token))
            except PermissionError as exc:
                allowed, reason = False, str(exc)
            if allowed:
                return f"🔓 {reason}"
            duplicate = (f"[Duplicate this Space](https://huggingface.co/spaces/{os.environ['SPACE_ID']}"
                         "?duplicate=true)") if on_space() else ""
            return f"🔒 Read-only: {reason}. {duplicate}"

        demo.load(who, None, access_md, api_visibility="private")
        refresh, inputs, outputs = jobs["refresh"]
        demo.load(refresh, inputs, outputs, api_visibility="private")
        train["job_started"].change(lambda _: gr.Tabs(selected="jobs"), train["job_started"], tabs,
                                    api_visibility="private").then(refresh, inputs, outputs, api_visibility="private")
        on_dataset, d_in, d_out = train["on_dataset"]
        demo.load(on_dataset, d_in, d_out, api_visibility="private")
    demo.queue(default_concurrency_limit=8)
    return demo


def launch(demo: Optional[gr.Blocks] = None) -> None:
    demo = demo or build_app()
    default_host = "0.0.0.0" if on_space() else "127.0.0.1"
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", default_host),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                max_file_size=os.environ.get("LORA_STUDIO_MAX_UPLOAD", "512mb"), ssr_mode=False,
                footer_links=["api"])
