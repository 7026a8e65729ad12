"""Reference server for bench/app_start.py: the cheapest possible status endpoint, served two ways by one process.

  /job_status (gr.api through the Gradio queue, default_concurrency_limit=8) - reached with gradio_client
  GET /api/jobs/{job_id} (a plain FastAPI route mounted beside the Gradio app)   - reached with urllib

Neither does any work, so the difference is the cost of the protocol, not of LoRA Studio.
"""
from __future__ import annotations

import os

import gradio as gr
import uvicorn
from fastapi import FastAPI

api = FastAPI()


@api.get("/api/jobs/{job_id}")
def rest_status(job_id: str) -> dict:
    return {"id": job_id, "status": "running"}


with gr.Blocks() as demo:
    gr.Markdown("floor reference")

    @gr.api(api_name="job_status")
    def job_status(job_id: str, series: bool = False) -> dict:
        return {"id": job_id, "status": "running"}

demo.queue(default_concurrency_limit=8)
app = gr.mount_gradio_app(api, demo, path="/")

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
