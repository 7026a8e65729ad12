"""How a run ends: turning an exit code and the run's events into a final job row, and restart recovery.

Shared by the supervisor (which sees its children's exit codes) and by recovery (which only has the
events.jsonl of a process it did not start, or that died while nobody was watching).
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Optional

import psutil

from ..job_files import ADAPTER_DIR, REPORT_FILE, checkpoints, has_trained_model, latest_checkpoint
from ..job_status import ExitCode
from ..run_events import OUTCOME_TYPES, Failed, Finished, Outcome, Pushed, PushFailed, Stopped, events_in_range
from .procs import group_members, is_alive, process_start_time, signal_name
from .progress import EventsReader
from .store import (ACTIVE, FAILED, INTERRUPTED, NOT_PUSHED, PRUNED, QUEUED, RUNNING, STOPPED, SUCCEEDED, ErrorDetails, Job,
                    JobStore)

EXIT_OK, EXIT_INVALID, EXIT_STOPPED, EXIT_NOT_PUSHED = ExitCode.OK, ExitCode.INVALID, ExitCode.STOPPED, \
    ExitCode.NOT_PUSHED  # `... train` exit codes, as this module reads them
LOG_TAIL_LINES = 30


def collect_artifacts(job: Job, scan_events: bool = False) -> dict[str, Any]:
    """Paths of what the job produced; the Hub URL comes from the stored row (or, once, from the events)."""
    d = Path(job.job_dir)
    ckpts = [str(p) for p in checkpoints(d)]
    out: dict[str, Any] = {"job_dir": str(d), "spec": str(job.spec_path), "log": str(job.log_path),
                           "events": str(job.events_path), "checkpoints": ckpts,
                           "last_checkpoint": ckpts[-1] if ckpts else None}
    if has_trained_model(d):
        out["adapter"] = str(d / ADAPTER_DIR)
    if (d / REPORT_FILE).exists():
        out["data_report"] = str(d / REPORT_FILE)
    stored = job.artifacts or {}
    out.update({k: stored[k] for k in ("hub_url", "hub_repo") if stored.get(k)})
    if scan_events:  # at finalize: the training process may have pushed
        pushed = [e for e in events_in_range(job.events_path, 0) if isinstance(e, Pushed)]
        if pushed:
            out["hub_url"], out["hub_repo"] = pushed[-1].url, pushed[-1].repo_id
    return out


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 64_000) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(size - max_bytes, 0))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    # Progress bars redraw with \r; keep only what a terminal would finally show on each line.
    rows = [ln.rsplit("\r", 1)[-1].rstrip() for ln in text.split("\n")]
    return [r for r in rows if r.strip()][-lines:]


def decide(job: Job, exit_code: Optional[int],
           outcome: Optional[Outcome]) -> tuple[str, Optional[str], Optional[ErrorDetails]]:
    """(status, one-line error, error details) from how the process ended and what it last recorded."""
    stop_requested = job.stop_requested_at is not None
    if isinstance(outcome, PushFailed) or exit_code == EXIT_NOT_PUSHED:
        return NOT_PUSHED, getattr(outcome, "error", None) or "the Hub push failed", ErrorDetails(kind="push")
    if isinstance(outcome, Finished) and exit_code in (EXIT_OK, None):
        return SUCCEEDED, None, None
    if exit_code == EXIT_OK:
        return SUCCEEDED, None, None
    if isinstance(outcome, Stopped) and outcome.reason == "pruned":
        return PRUNED, outcome.note, None
    if exit_code == EXIT_STOPPED or isinstance(outcome, Stopped):
        return STOPPED, None, None
    if isinstance(outcome, Failed):
        details = ErrorDetails(kind=outcome.kind, issues=outcome.issues, truncated=outcome.truncated,
                               traceback=outcome.traceback)
        if outcome.kind == "data" and outcome.issues:
            return FAILED, f"{outcome.error}: {outcome.issues[0]}", details
        return FAILED, outcome.error or "training failed", details
    tail = log_tail(job.log_path)
    if exit_code == EXIT_INVALID:  # spec problems are printed (not recorded as events) by the CLI
        first = next((i for i in range(len(tail) - 1, -1, -1) if tail[i].startswith("error:")), None)
        message = "\n".join(tail[first:]) if first is not None else (tail[-1] if tail else "invalid spec")
        return FAILED, message.splitlines()[0].removeprefix("error: "), ErrorDetails(kind="validation",
                                                                                     log_tail=tail, message=message)
    if exit_code is None or exit_code < 0:
        if stop_requested:
            return STOPPED, None, None
        if exit_code is None:
            ckpt = latest_checkpoint(job.job_dir)
            hint = f"; resume continues from {ckpt.name}" if ckpt else "; resume restarts it from the beginning"
            return INTERRUPTED, f"training process {job.pid or '(not started)'} ended while no supervisor " \
                                f"was watching, without recording an outcome{hint}", ErrorDetails(kind="interrupted")
        return FAILED, f"training process was killed by {signal_name(exit_code)}" + \
            (" (out of memory?)" if exit_code == -signal.SIGKILL else ""), ErrorDetails(kind="killed", log_tail=tail)
    return FAILED, (tail[-1] if tail else f"training exited with code {exit_code}"), \
        ErrorDetails(kind="exit", log_tail=tail)


def finalize(store: JobStore, job: Job, exit_code: Optional[int]) -> Optional[Job]:
    """Record how a run ended. Only an active row changes (a concurrent finalizer leaves it alone)."""
    outcome = _run_outcome(job)
    status, error, details = decide(job, exit_code, outcome)
    snap = EventsReader(job.events_path, job.events_offset).snapshot()
    metrics = outcome.metrics if isinstance(outcome, (Finished, PushFailed)) else job.metrics
    done = store.update(job.id, only_if_status=ACTIVE, status=status, finished_at=time.time(),
                        exit_code=exit_code, error=error, error_details=details, metrics=metrics,
                        progress=snap.summary(), artifacts=collect_artifacts(job, scan_events=True))
    return store.get(job.id) if done else None


def _run_outcome(job: Job) -> Optional[Outcome]:
    """The outcome the job's latest run recorded (its events start at run_events_offset), if any."""
    events = events_in_range(job.events_path, job.run_events_offset)
    return next((e for e in reversed(events) if isinstance(e, OUTCOME_TYPES)), None)


def kill_leftovers(job: Job) -> list[int]:
    """SIGKILL whatever is left in a finished job's process group (ranks, helpers): no orphans, ever.

    Only processes started after our leader count, so a recycled group id can never hit a stranger.
    """
    if not job.pid or not job.pid_start or job.pid_start < 0 or job.pid in (os.getpid(), os.getpgrp()):
        return []
    leader_start = process_start_time(job.pid)
    if leader_start is not None and abs(leader_start - job.pid_start) > 0.05:
        return []  # the pid now belongs to another live process: its group is not ours
    killed = []
    for pid in group_members(job.pid):
        try:
            proc = psutil.Process(pid)
            if proc.create_time() + 0.05 >= job.pid_start:
                proc.kill()
                killed.append(pid)
        except psutil.Error:  # gone meanwhile
            continue
    return killed


def ended_unwatched(store: JobStore, job: Job) -> Optional[Job]:
    """The job's process is gone and nobody saw it exit (a restart, or a process the supervisor adopted).

    A run on HF Jobs that recorded no outcome is queued again: its HF Job runs on without us, and the new runner
    re-attaches to it (remote/runner.py), never starting a second one. Anything else is finalized from its events:
    interrupted unless it recorded an outcome. Returns the final row (None when queued again or changed meanwhile).
    """
    kill_leftovers(job)
    spec = job.job_spec
    runs_remotely = spec is not None and spec.compute.backend == "hf_jobs"
    if job.status == RUNNING and runs_remotely and _run_outcome(job) is None:
        store.update(job.id, only_if_status=(RUNNING,), status=QUEUED, queued_at=time.time(), pid=None,
                     pid_start=None)
        return None
    return finalize(store, job, None)


def recover(store: JobStore) -> list[Job]:
    """Restart recovery; the caller holds the supervisor lock, so no supervisor is watching anything.

    A running/stopping job whose training process is gone (or whose pid now belongs to another process) ends
    unwatched (above). One whose process is still alive is returned, to be re-attached by the supervisor, never
    launched a second time.
    """
    alive = []
    for job in store.active():
        if job.pid and is_alive(job.pid, job.pid_start):
            alive.append(job)
        else:
            ended_unwatched(store, job)
    return alive
