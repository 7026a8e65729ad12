"""Following a job from where the reader left off: its new events and log lines since a cursor.

What an agent (the MCP tool `job_updates`), a script or a status page reads instead of the whole history each
time: every call returns only what happened since the cursor it passes, and the cursor for the next call. A call
may wait (long-poll, at most MAX_WAIT_S) until something new happens or the job ends, so following a run costs one
request per change, not one per second.

The cursor is two byte offsets, `e<events.jsonl>.l<log>`: opaque to callers, stable across app restarts (the files
are the job's own), and a file that was replaced or cut short (an HF Jobs mirror) is read again from its start.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..run_events import Checkpoint, EventTail, RunEvent, to_dict
from .manager import JobManager

MAX_WAIT_S = 30.0  # a longer hold would outlast proxies' and MCP clients' request timeouts (often 60 s)
MAX_EVENT_BYTES = 256_000  # of events.jsonl per call (a long run's history arrives over a few calls: `more`)
MAX_LOG_BYTES = 64_000  # of the log per call
POLL_S = 0.25
_CURSOR = re.compile(r"e([0-9]{1,15})\.l([0-9]{1,15})")


@dataclass(frozen=True)
class Cursor:
    events: int = 0
    log: int = 0

    def __str__(self) -> str:
        return f"e{self.events}.l{self.log}"

    @classmethod
    def parse(cls, text: str) -> "Cursor":
        text = (text or "").strip()
        if not text:
            return cls()
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise ValueError(f"cursor {text[:40]!r} is not one this app returned: pass the `cursor` of the previous "
                             "answer, or '' to read the job from its start")
        return cls(int(match.group(1)), int(match.group(2)))


def _new_log(path: Path, offset: int) -> tuple[list[str], int, bool]:
    """(complete lines after `offset`, the offset after them, more left). A progress bar's redraws (\\r) keep
    only what a terminal would finally show."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return [], offset, False
    if size < offset:  # the log was replaced: read it again from its start
        offset = 0
    if size == offset:
        return [], offset, False
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(MAX_LOG_BYTES)
    end = data.rfind(b"\n") + 1 or (len(data) if len(data) == MAX_LOG_BYTES else 0)
    text = data[:end].decode("utf-8", "replace")
    lines = [ln.rsplit("\r", 1)[-1].rstrip() for ln in text.split("\n")]
    return [ln for ln in lines if ln.strip()], offset + end, offset + end < size


def _event_for_client(event: RunEvent) -> dict[str, Any]:
    """An event as a client reads it: a checkpoint by its folder's name (`checkpoint-40`), not the server's path.
    (Gradio also takes any object with a "path" string in an answer for a file to serve.)"""
    data = to_dict(event)
    if isinstance(event, Checkpoint):
        data["checkpoint"] = Path(data.pop("path")).name
    return data


def job_updates(manager: JobManager, job_id: str, cursor: str = "", wait: float = 0.0) -> dict[str, Any]:
    """What happened in job `job_id` since `cursor`: {job_id, status, done, error, progress, events, log, cursor,
    more, metrics}. `wait` > 0 holds the call until something new happens, the job ends or `wait` seconds pass."""
    job = manager.get(job_id)
    start = Cursor.parse(cursor)
    tail = EventTail(job.events_path, start.events)
    deadline = time.monotonic() + max(0.0, min(float(wait), MAX_WAIT_S))
    first_status = job.status
    while True:
        events = tail.new_events(MAX_EVENT_BYTES)
        log, log_offset, log_more = _new_log(job.log_path, start.log)
        job = manager.get(job.id)
        if events or log or job.is_terminal or job.status != first_status or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    progress = {k: v for k, v in manager.snapshot(job.id).to_dict(series=False).items() if v is not None}
    return {"job_id": job.id, "status": job.status, "done": job.is_terminal, "error": job.error,
            "progress": progress, "events": [_event_for_client(e) for e in events], "log": log,
            "cursor": str(Cursor(tail.offset, log_offset)), "more": tail.pending or log_more,
            "metrics": job.metrics if job.is_terminal else None}
