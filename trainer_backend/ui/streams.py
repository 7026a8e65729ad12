"""Streams of the named API (a job's progress, an export's or an evaluation's status) and how long they may run.

A gradio_client caller holds a stream open for as long as it lasts (up to each stream's own limit). An MCP tool
call must answer within one request (ui/mcp_tools.py), so it sets a deadline for the streams it reads: every
follower here ends by it, after at most one poll interval, with its latest state already sent.
"""
from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Optional

_DEADLINE: ContextVar[Optional[float]] = ContextVar("lora_studio_stream_deadline", default=None)


def stream_deadline(timeout: float) -> float:
    """The time.monotonic() a stream started now with its own `timeout` ends at (the caller's deadline, if
    earlier)."""
    own, caller = time.monotonic() + timeout, _DEADLINE.get()
    return own if caller is None else min(own, caller)


@contextlib.contextmanager
def streams_end_by(deadline: float) -> Iterator[None]:
    """Within this block (and the worker threads that copy its context), streams end by `deadline`."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def follow_changes(status: Callable[[], dict[str, Any]], key: Callable[[dict[str, Any]], Any], interval: float,
                   timeout: float) -> Iterator[dict[str, Any]]:
    """`status()` at every change of `key(status)`, until its state is no longer running (or `timeout`)."""
    deadline = stream_deadline(timeout)
    last = None
    while True:
        now = status()
        if key(now) != last:
            yield now
            last = key(now)
        if now["state"] != "running" or time.monotonic() > deadline:
            return
        time.sleep(interval)
