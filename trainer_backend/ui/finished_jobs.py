"""What every action on a finished job that runs in its own process (export, evaluation report) shares: the job
must have finished training with a model in its folder, the check that none runs and the start are one step, and
its stream
follows the action's record until it ends (streams.follow_changes)."""
from __future__ import annotations

import threading
from typing import Any

from ..job_files import has_trained_model
from ..job_status import PUSHABLE, UNFINISHED
from ..jobs.store import JobStateError

_START_LOCKS: dict[str, threading.Lock] = {}  # job folder -> lock: the running check and the start are one step
_LOCKS_LOCK = threading.Lock()


def start_lock(job_dir: str) -> threading.Lock:
    with _LOCKS_LOCK:
        return _START_LOCKS.setdefault(job_dir, threading.Lock())


def finished_job(studio: Any, job_id: str, verb: str, needs: str) -> Any:
    """The job `job_id` of `studio`'s store, when it can be `verb`-ed (export, evaluate); JobStateError saying why
    not otherwise (`needs`: what the action needs, in words)."""
    job = studio.jobs.get(job_id)
    if job.status not in PUSHABLE:
        why = "wait until it finishes" if job.status in UNFINISHED else \
            f"only a job that finished training has a model to {verb}"
        raise JobStateError(f"job {job.id} is {job.status}: {why} ({needs})")
    if not has_trained_model(job.job_dir):
        raise JobStateError(f"job {job.id} has no trained adapter in its folder, so there is nothing to {verb}")
    return job
