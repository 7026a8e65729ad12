"""Jobs: training as supervised background processes that survive restarts.

    JobManager  - submit / list / get / snapshot / stop / resume / continue_training / reconcile
    JobStore    - the SQLite table behind it (data dir: $LORA_STUDIO_DATA_DIR, /data/lora-studio, ./lora-studio-data)
    supervisor  - the detached process that runs queued jobs in order (python -m trainer_backend.jobs.supervisor)

Names are imported lazily so that `python -m trainer_backend.jobs.supervisor` does not import itself twice.
Nothing here imports torch; only `submit`'s data check does.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "JobManager": "manager", "JobStateError": "store", "default_data_dir": "paths",
    "ProgressSnapshot": "progress", "EventsReader": "progress",
    "Job": "store", "JobNotFound": "store", "JobStore": "store",
    **{name: "store" for name in ("ACTIVE", "FAILED", "INTERRUPTED", "QUEUED", "RESUMABLE", "RUNNING",
                                  "STOPPED", "STOPPING", "SUCCEEDED", "TERMINAL")},
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
