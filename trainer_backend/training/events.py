"""The writer of a run's events.jsonl, and the stop request a run honours at its next step.

What each event holds, and who writes and reads it: trainer_backend/run_events.py (one typed record per kind).
The trainer callback that writes the training events: training/callbacks.py.
"""
from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Callable, Optional

from ..job_files import EVENTS_FILE
from ..run_events import RunEvent, to_json

Echo = Callable[[RunEvent], None]


class EventLog:
    """Append-only JSONL writer; each line is flushed so readers in other processes see it at once."""

    def __init__(self, job_dir: str | Path, echo: Optional[Echo] = None):
        self.path = Path(job_dir) / EVENTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo  # e.g. the CLI's progress printer

    def write(self, record: RunEvent) -> RunEvent:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(to_json(record) + "\n")
            fh.flush()
        if self.echo:
            self.echo(record)
        return record


class StopRequest:
    """SIGTERM/SIGINT -> stop at the next step boundary, after saving a checkpoint."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            if self.requested:  # a second signal: stop now
                raise KeyboardInterrupt
            self.requested = True
        self.previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def uninstall(self) -> None:
        for sig, previous in getattr(self, "previous", {}).items():
            signal.signal(sig, previous)
