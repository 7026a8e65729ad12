"""JobManager: the one API the UI and the CLI use for jobs (submit, list, stop, resume, progress, ...).

It never trains in-process: it validates, writes the job's spec into its own folder, records a row and
makes sure a supervisor process is running (see supervisor.py). Everything it knows comes from the store
and from the job folders, so any number of managers in any number of processes can share a data dir.
"""
from __future__ import annotations

import builtins
import copy
import json
import signal
import time
from pathlib import Path
from typing import Any, Optional

from ..access import current_caller, hub_identity_label
from ..job_files import EVENTS_FILE, SPEC_FILE, latest_checkpoint, write_stop_request
from ..run_events import StopReason
from ..spec import JobSpec, SpecError, load_job_spec, load_spec, parse_spec
from ..spec_compute import ComputeSpec
from . import intake, lifecycle, tokens
from .paths import JOBS_SUBDIR, default_data_dir
from .procs import is_alive, signal_group
from .progress import EventsReader, ProgressSnapshot, file_size
from .store import (ACTIVE, FAILED, PRUNED, QUEUED, RESUMABLE, RUNNING, STOPPED, STOPPING, TERMINAL, ErrorDetails, Job,
                    JobStateError, JobStore, new_job_id)
from ..remote.state import RemoteState
from .supervisor import SupervisorLock, ensure_supervisor

DEFAULT_STOP_TIMEOUT = 60.0


class JobManager:
    def __init__(self, data_dir: Optional[str | Path] = None, *, max_concurrent: Optional[int] = None,
                 stop_timeout: float = DEFAULT_STOP_TIMEOUT, autostart: bool = True, recover: bool = True):
        """`autostart=False` records jobs without starting a supervisor (for embedding / inspection only)."""
        self.data_dir = default_data_dir(data_dir)
        self.jobs_dir = self.data_dir / JOBS_SUBDIR
        self.store = JobStore(self.data_dir)
        self.max_concurrent = max_concurrent
        self.stop_timeout = stop_timeout
        self.autostart = autostart
        self._readers: dict[str, tuple[str, EventsReader]] = {}  # id or prefix -> (id, reader)
        if recover:
            self.reconcile()

    # ---- restart recovery --------------------------------------------------------------------------
    def reconcile(self) -> list[Job]:
        """Notice jobs whose training died while nobody watched (-> interrupted / their recorded outcome),
        and hand still-running ones to a supervisor (re-attached, not started twice). Cheap; idempotent."""
        lock = SupervisorLock(self.data_dir)
        alive: list[Job] = []
        if lock.acquire():  # otherwise a live supervisor owns the dir and recovered on its own start
            try:
                alive = lifecycle.recover(self.store)
            finally:
                lock.release()
        if self.autostart and (alive or self.store.count((*ACTIVE, QUEUED))):
            ensure_supervisor(self.data_dir, self.max_concurrent)
        return alive

    # ---- submit ------------------------------------------------------------------------------------
    def submit(self, spec: JobSpec | dict | str | Path, *, overrides: Optional[list[str]] = None,
               name: Optional[str] = None, owner: Optional[str] = None, validate_data: bool = True,
               env: Optional[dict[str, str]] = None, parent_id: Optional[str] = None,
               hub_token: Optional[str] = None, hub_identity: Optional[str] = None) -> Job:
        """Validate and queue a job; returns at once. An invalid spec or dataset gives a `failed` job that
        carries the problems and never starts a process. `env`: extra variables for the training process
        (stored in the job row: not for secrets). `hub_token`: the Hub token the job acts with (the caller's
        own, in the app), held outside every job file until the job ends (tokens.py); `hub_identity`: whose it
        is, in words, recorded on the job."""
        cwd = Path.cwd()
        job_id = new_job_id()
        while self.store.exists(job_id):
            job_id = new_job_id()
        owner = owner or intake.current_user()
        common = dict(owner=owner, cwd=str(cwd), env=env or None, parent_id=parent_id,
                      hub_identity=hub_identity or hub_identity_label(current_caller()))  # CLI: this machine's login
        try:
            job_spec, warnings = self._load(spec, overrides)
        except SpecError as exc:
            details = ErrorDetails(kind="validation", issues=intake.bullets(str(exc)))
            return self._record_invalid(job_id, name or intake.name_of(spec), common, str(exc), details,
                                        intake.redacted(spec))
        job_dir = Path(job_spec.output_dir).expanduser().resolve() if job_spec.output_dir else self.jobs_dir / job_id
        intake.absolutize_paths(job_spec, cwd)
        job_spec.output_dir = str(job_dir)  # the trainer, resume and `train` all agree on the folder
        name = name or job_spec.project_name
        for other in self.store.list((*ACTIVE, QUEUED)):
            if Path(other.job_dir) == job_dir:
                raise JobStateError(f"job {other.id} ({other.status}) already uses {job_dir}; "
                                    "choose another output_dir or wait for it")
        if job_spec.compute.backend == "hf_jobs":
            from ..remote.hf_jobs import preflight

            remote_problems = preflight(job_spec.compute, hub_token or job_spec.hub.token)  # whoever submits
            if remote_problems:
                return self._record_invalid(job_id, name, common, "cannot run on HF Jobs: " + remote_problems[0],
                                            ErrorDetails(kind="validation", issues=remote_problems),
                                            job_spec.to_public_dict(), str(job_dir))
        if validate_data:
            problem = intake.validate_data(job_spec)
            if problem is not None:
                return self._record_invalid(job_id, name, common, problem[0], problem[1],
                                            job_spec.to_public_dict(), str(job_dir))
        job_spec.save(job_dir / SPEC_FILE)  # secrets are dropped by JobSpec.save
        if hub_token:  # before the row: the supervisor may start the job the moment it is queued
            tokens.keep(self.data_dir, job_id, hub_token)
        now = time.time()
        job = self.store.create(job_id, name=name, status=QUEUED, spec=job_spec.to_public_dict(),
                                job_dir=str(job_dir), created_at=now, queued_at=now,
                                events_offset=file_size(job_dir / EVENTS_FILE),
                                error_details=ErrorDetails(warnings=warnings) if warnings else None, **common)
        self._kick()
        return job

    def _load(self, spec: JobSpec | dict | str | Path, overrides: Optional[list[str]]) -> tuple[JobSpec, list]:
        if isinstance(spec, JobSpec):
            if overrides:
                raw = spec.model_dump(mode="json", exclude_none=True)
                if spec.hub.token is not None:
                    raw["hub"]["token"] = spec.hub.token.get_secret_value()
                return self._load(raw, overrides)
            return spec.model_copy(deep=True), []
        if isinstance(spec, dict):
            from ..spec import apply_override
            raw = copy.deepcopy(spec)  # overrides must not change the caller's dict
            for item in overrides or []:
                apply_override(raw, item)
            return parse_spec(raw, "spec")
        return load_spec(spec, overrides)

    def _record_invalid(self, job_id: str, name: str, common: dict, error: str, details: ErrorDetails,
                        spec: Optional[dict], job_dir: Optional[str] = None) -> Job:
        now = time.time()
        return self.store.create(job_id, name=name, status=FAILED, spec=spec,
                                 job_dir=job_dir or str(self.jobs_dir / job_id), created_at=now,
                                 finished_at=now, error=intake.one_line(error, details), error_details=details,
                                 **common)

    def _kick(self) -> None:
        if self.autostart:
            ensure_supervisor(self.data_dir, self.max_concurrent)

    # ---- queries -----------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        return self.store.get(job_id)

    def list(self, status: Optional[str | list[str]] = None, owner: Optional[str] = None,
             limit: Optional[int] = None) -> list[Job]:
        statuses = [status] if isinstance(status, str) else status
        return self.store.list(statuses, owner=owner, limit=limit)

    def snapshot(self, job_id: str) -> ProgressSnapshot:
        """Live progress; one SQLite lookup + one stat() when nothing changed since the last poll."""
        cached = self._readers.get(job_id)
        if cached is None:
            job = self.store.get(job_id)
            reader = EventsReader(job.events_path, job.events_offset)
            cached = self._readers[job_id] = self._readers.setdefault(job.id, (job.id, reader))
        full_id, reader = cached
        return reader.snapshot(live=self.store.status_of(full_id) in ACTIVE)

    def describe(self, job_id: str, series: bool = False) -> dict[str, Any]:
        """The job as one JSON-ready object: id, status, progress, pid, times, metrics, error, paths."""
        job = self.store.get(job_id)
        snap = self.snapshot(job.id)
        end = job.finished_at or (time.time() if job.is_active else None)
        return {
            "id": job.id, "name": job.name, "owner": job.owner, "hub_identity": job.hub_identity, "status": job.status,
            "parent_id": job.parent_id, "attempt": job.attempt,
            "pid": job.pid, "alive": bool(job.is_active and job.pid and is_alive(job.pid, job.pid_start)),
            "exit_code": job.exit_code,
            "times": {"created_at": job.created_at, "queued_at": job.queued_at, "started_at": job.started_at,
                      "finished_at": job.finished_at,
                      "duration_seconds": round(end - job.started_at, 2) if end and job.started_at else None},
            "progress": snap.to_dict(series=series),
            "metrics": job.metrics, "error": job.error, "error_details": job.error_details.to_dict() if job.error_details else None,
            "paths": lifecycle.collect_artifacts(job), "spec": job.spec, "compute": _compute_view(job),
        }

    def logs(self, job_id: str, tail: Optional[int] = 200) -> str:
        job = self.store.get(job_id)
        if tail is None:
            try:
                return job.log_path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                return ""
        return "\n".join(lifecycle.log_tail(job.log_path, tail, max_bytes=max(64_000, tail * 400)))

    def wait(self, job_id: str, timeout: Optional[float] = None, poll: float = 0.2) -> Job:
        """Block until the job reaches a terminal status (or `timeout` seconds pass: TimeoutError)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job_id = self.store.get(job_id).id
        while True:
            job = self.store.get(job_id)
            if job.is_terminal:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout}s")
            time.sleep(poll)

    # ---- control -----------------------------------------------------------------------------------
    def stop(self, job_id: str, timeout: Optional[float] = None, wait: bool = False, *,
             reason: Optional[StopReason] = None, note: Optional[str] = None) -> Job:
        """Graceful stop: SIGTERM to the process group -> the trainer saves a checkpoint at the next step
        and exits; after `timeout` s the supervisor SIGKILLs the whole group. A queued job just stops.
        `reason`/`note`: why (a sweep's pruner: the run then ends `pruned`, its events say at which evaluation)."""
        job = self.store.get(job_id)
        if job.status in (RUNNING, STOPPING):
            write_stop_request(job.job_dir, reason, note)
        timeout = self.stop_timeout if timeout is None else timeout
        now = time.time()
        if job.status == QUEUED and self.store.update(  # a queued trial its sweep prunes (a resumed one) ends pruned
                job.id, only_if_status=(QUEUED,), status=PRUNED if reason == "pruned" else STOPPED, finished_at=now,
                stop_requested_at=now, error=note if reason == "pruned" else None):
            tokens.forget(self.data_dir, job.id)
            return self.store.get(job.id)
        self.store.update(job.id, only_if_status=(RUNNING,), status=STOPPING, stop_requested_at=now,
                          stop_deadline=now + timeout)
        job = self.store.get(job.id)
        if job.status != STOPPING:
            return job  # already finished (or never ran): nothing to stop
        # Signal right away for low latency; claim_term makes sure only one process ever sends it.
        if job.pid and is_alive(job.pid, job.pid_start) and self.store.claim_term(job.id):
            signal_group(job.pid, signal.SIGTERM)
        self._kick()  # a supervisor enforces the deadline and records the outcome
        return self.wait(job.id, timeout=timeout + 30) if wait else self.store.get(job.id)

    def push(self, job_id: str, repo_id: Optional[str] = None, merged: bool = False, token: Any = None,
             private: Optional[bool] = None, **push_options: Any) -> Job:
        """Push a finished job's adapter to the Hub now (retry of a failed push included)."""
        from .publish import push_job

        return push_job(self.store, self.store.get(job_id), repo_id, merged, token, private, **push_options)

    def resume(self, job_id: str, overrides: Optional[builtins.list[str]] = None, *,
               hub_token: Optional[str] = None, hub_identity: Optional[str] = None) -> Job:
        """Run a stopped / failed / interrupted job again in place (same id and folder) from its latest
        checkpoint, so step count and loss series continue. Without a checkpoint it starts over. The run acts
        with `hub_token` and records `hub_identity`: whoever resumed it (see submit)."""
        job = self.store.get(job_id)
        if job.status not in RESUMABLE:
            raise JobStateError(f"job {job.id} is {job.status}; only {', '.join(RESUMABLE)} jobs can be resumed"
                                + (" (use continue_training to train a finished job further)"
                                   if job.status == "succeeded" else ""))
        if job.attempt == 0 and job.status == FAILED:
            raise JobStateError(f"job {job.id} failed validation and never ran; fix the spec and submit again")
        spec, _ = load_job_spec(job.spec_path, overrides)
        own = latest_checkpoint(job.job_dir)
        inherited = spec.training.resume_from_checkpoint  # a continued job's parent checkpoint
        if own is not None:  # the newest *complete* checkpoint (a kill can interrupt a save)
            done = int(own.name.rsplit("-", 1)[-1])
            if 0 < spec.training.max_steps <= done:
                raise JobStateError(f"job {job.id} is already at step {done}; resume with "
                                    f"training.max_steps > {done} (it is {spec.training.max_steps})")
            spec.training.resume_from_checkpoint = str(own)
        elif spec.synced:  # kept on the Hub: the run pulls the repo's latest checkpoint (none: it starts over)
            spec.training.resume_from_checkpoint = "latest"
        elif not (inherited and inherited != "latest" and Path(inherited).is_dir()):
            spec.training.resume_from_checkpoint = None
        spec.output_dir = job.job_dir
        spec.save(job.spec_path)
        if hub_token:
            tokens.keep(self.data_dir, job.id, hub_token)
        requeued = self.store.update(
            job.id, only_if_status=RESUMABLE, status=QUEUED, queued_at=time.time(), spec=spec.to_public_dict(),
            finished_at=None, exit_code=None, error=None, error_details=None, stop_requested_at=None,
            stop_deadline=None, term_sent=0, hub_identity=hub_identity or hub_identity_label(current_caller()))
        if not requeued:
            raise JobStateError(f"job {job.id} changed state meanwhile; try again")
        self._kick()
        return self.store.get(job.id)

    def restore_from_hub(self, token: Any = None) -> builtins.list[str]:
        """List again the jobs kept on the Hub (hub.sync, HF Jobs) that this data dir lost (remote/restore.py)."""
        from ..remote.restore import restore_jobs

        restored = restore_jobs(self.store, self.jobs_dir, token)
        if any(self.store.status_of(j) == QUEUED for j in restored):
            self._kick()  # a Job still running on HF Jobs: its runner re-attaches
        return restored

    def continue_training(self, job_id: str, epochs: float, *, name: Optional[str] = None,
                          owner: Optional[str] = None, validate_data: bool = False,
                          hub_token: Optional[str] = None, hub_identity: Optional[str] = None) -> Job:
        """A new job, linked to `job_id`, that trains its latest checkpoint for `epochs` more epochs.

        The HF Trainer restores global_step from the checkpoint and recomputes the total from the new
        epoch count, so the step count continues and only the extra epochs are trained (the LR schedule
        is rebuilt over the new total, picking up at the checkpoint's step).
        """
        parent = self.store.get(job_id)
        if parent.status not in TERMINAL:
            raise JobStateError(f"job {parent.id} is {parent.status}; wait for it to finish first")
        ckpt = latest_checkpoint(parent.job_dir)
        if ckpt is None:
            raise JobStateError(f"job {parent.id} has no checkpoint to continue from "
                                "(train with training.save_strategy 'steps' or 'epoch')")
        if epochs <= 0:
            raise ValueError("epochs must be > 0")
        spec, _ = load_job_spec(parent.spec_path)
        try:
            trained = float(json.loads((ckpt / "trainer_state.json").read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            trained = spec.training.epochs
        raw = spec.to_public_dict()
        raw.pop("output_dir", None)
        raw["training"].update(epochs=round(trained + epochs, 6), max_steps=-1, resume_from_checkpoint=str(ckpt))
        return self.submit(raw, name=name or f"{parent.name}+{epochs:g}ep", owner=owner or parent.owner,
                           validate_data=validate_data, env=parent.env, parent_id=parent.id, hub_token=hub_token,
                           hub_identity=hub_identity)  # whoever continues it, not whoever started the parent


def _compute_view(job: Job) -> dict[str, Any]:
    """Where the job trains: local, or its HF Job(s) with their pages and the job repo (remote/runner.py)."""
    spec = job.job_spec
    compute = spec.compute if spec else ComputeSpec()
    view: dict[str, Any] = {"backend": compute.backend}
    if compute.backend != "hf_jobs":
        return view
    view.update(flavor=compute.flavor, nodes=compute.nodes)
    state = RemoteState.read(job.job_dir)
    if state.job_ids:
        view.update(job_ids=state.job_ids, urls=state.urls, repo_id=state.sync_repo)
    return view
