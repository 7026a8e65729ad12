"""Errors at the app's endpoints (ui/gate.py): expected failures reach the client as their own message, anything
else as an id that the server log explains."""
from __future__ import annotations

import logging

import gradio as gr

from trainer_backend.jobs.store import JobNotFound, JobStateError
from trainer_backend.ui.gate import _readable


def test_expected_failures_keep_their_message() -> None:
    assert _readable(JobNotFound("no job abc: list jobs with /list_jobs")).message == \
        "no job abc: list jobs with /list_jobs"
    assert "only a finished job" in _readable(JobStateError("job x is running; only a finished job can be pushed")).message
    assert "validation split" in _readable(ValueError("the job has no validation split; set data.valid_split")).message
    same = gr.Error("already readable")
    assert _readable(same) is same


def test_unexpected_failures_are_logged_with_an_id_the_client_gets(caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="lora_studio.app"):
        message = _readable(RuntimeError("CUDA error: an illegal memory access was encountered")).message
    assert message.startswith("internal error ") and "RuntimeError" in message
    error_id = message.split()[2]
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records), "the log has the traceback"
    assert "illegal memory access" not in message, "internals stay in the server log"
