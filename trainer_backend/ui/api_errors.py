"""Turns an event's exception into a message a gradio_client caller (or a person) can act on.

Gradio hides the text of any exception that is not a `gr.Error` ("has not enabled verbose error reporting"),
so the gate (ui/gate.py) passes every failure of every event through `to_client_error`: expected failures
(unknown job, wrong state, invalid spec or data, a path or file problem, the Hub) become a `gr.Error` carrying
the message and the fix; anything else is logged here with its traceback under a short id, and the caller gets
that id to quote.
"""
from __future__ import annotations

import logging
import uuid

import gradio as gr

from ..access import AccessDenied
from ..data.issues import DataError
from ..errors import SpecError
from ..hub import HubError
from ..jobs.store import JobNotFound, JobStateError
from ..training.trainers import TrainerNotAvailable

log = logging.getLogger("trainer_backend.api")
_MAX_MESSAGE = 4000  # a whole DataError list can be long; the client needs the first problems, not a wall


def client_message(exc: BaseException) -> str | None:
    """The readable message for an expected failure, or None when the failure is unexpected."""
    if isinstance(exc, JobNotFound):
        return f"{exc}; /list_jobs lists the job ids"
    if isinstance(exc, (JobStateError, SpecError, DataError, TrainerNotAvailable, AccessDenied, HubError)):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}; upload the file or check the path"
    if isinstance(exc, (ValueError, OSError)):  # our own checks raise ValueError with a message for people
        return f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else str(exc)
    return None


def to_client_error(exc: BaseException, endpoint: str) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    message = client_message(exc)
    if message is None:
        error_id = uuid.uuid4().hex[:8]
        log.error("unexpected error %s in endpoint %s", error_id, endpoint, exc_info=exc)
        message = (f"internal error {error_id} in {endpoint} ({type(exc).__name__}); the server log has the "
                   f"traceback under this id — please report it")
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + " …"
    return gr.Error(message, print_exception=False)

