"""Progress of a long data preparation, for whoever shows it: the CLI's bar, the app's gr.Progress, a job's events.

`prepare_data(progress=...)` calls the callback; code that cannot pass one down (the app's button handlers call the
service, which calls the pipeline) sets it for the current context with `preparation_progress(callback)`.
A callback may raise PreparationCancelled to stop the preparation (a job asked to stop meanwhile).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterator, Optional


class PreparationCancelled(Exception):
    """Raised by a progress callback to stop a preparation; prepare_data cleans up and re-raises it."""


@dataclass(frozen=True)
class PreparationProgress:
    phase: str                      # preparing | done | cached
    rows: int                       # rows prepared so far
    total_rows: Optional[int]       # all rows (an estimate from the bytes read until the files are read)
    fraction: float                 # 0..1
    rows_per_second: Optional[float]
    eta_seconds: Optional[float]
    elapsed_seconds: float

    def line(self) -> str:
        """One line for people: 'preparing data 37% · 18,500 / 50,000 rows · 4,210 rows/s · ETA 0:07'."""
        if self.phase == "cached":
            return f"prepared data from the cache ({self.rows:,} rows)"
        parts = [f"preparing data {100 * self.fraction:.0f}%",
                 f"{self.rows:,} / {self.total_rows:,} rows" if self.total_rows else f"{self.rows:,} rows"]
        if self.rows_per_second:
            parts.append(f"{self.rows_per_second:,.0f} rows/s")
        if self.eta_seconds is not None and self.phase != "done":
            parts.append(f"ETA {int(self.eta_seconds // 60)}:{int(self.eta_seconds % 60):02d}")
        return " · ".join(parts)


ProgressCallback = Callable[[PreparationProgress], None]
_hook: ContextVar[Optional[ProgressCallback]] = ContextVar("lora_studio_preparation_progress", default=None)


@contextmanager
def preparation_progress(callback: Optional[ProgressCallback]) -> Iterator[None]:
    """Preparations started in this context report to `callback`."""
    token = _hook.set(callback)
    try:
        yield
    finally:
        _hook.reset(token)


def current_callback() -> Optional[ProgressCallback]:
    return _hook.get()


class ProgressMeter:
    """Turns (rows done, fraction of the input read) into PreparationProgress, at most every `interval` s."""

    def __init__(self, callback: Optional[ProgressCallback], interval: float = 0.25):
        self.callback, self.interval = callback, interval
        self.t0 = time.monotonic()
        self.last = 0.0

    def update(self, rows: int, rows_read: int, read_fraction: float, final: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if not final and now - self.last < self.interval:
            return
        self.last = now
        elapsed = now - self.t0
        total = rows_read if final or read_fraction >= 1 else \
            (round(rows_read / read_fraction) if read_fraction > 0 else None)
        fraction = 1.0 if final else min(rows / total, 0.999) if total else 0.0
        rate = rows / elapsed if elapsed > 0 and rows else None
        eta = (total - rows) / rate if rate and total and not final else None
        self.callback(PreparationProgress("done" if final else "preparing", rows, total, fraction, rate, eta,
                                          elapsed))

    def cached(self, rows: int) -> None:
        if self.callback is not None:
            self.callback(PreparationProgress("cached", rows, rows, 1.0, None, None, time.monotonic() - self.t0))
