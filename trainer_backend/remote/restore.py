"""Jobs kept on the Hub come back to a data dir that lost them (a Space restarted with an empty disk, a new
machine): each `<user>/lora-studio-job-*` repo the store does not know becomes a job row again, with its spec,
events and log (and adapter, when it finished). A job whose HF Job still runs is queued, so a runner re-attaches to
it; one that was cut off is `interrupted`, and Resume continues from the repo's latest checkpoint (hub/sync.py).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import yaml

from ..hub import sync as hubsync
from ..hub.client import HubError, resolve_token
from ..hub.jobs_api import job_state, whoami
from ..job_files import (ADAPTER_DIR, EVENTS_FILE, LOG_FILE, SPEC_FILE, SWEEP_FILE, SYNC_REPO_PREFIX,
                         has_trained_model)
from ..job_status import JobStatus
from ..run_events import OUTCOME_TYPES, Pushed, Start, outcome_status, parse_line
from ..spec import parse_spec
from .state import RemoteState
from ..spec_values import RUN_NAME

JOB_ID = RUN_NAME  # a job id, or a CLI run's project_name


def _last_outcome(events: bytes) -> tuple[Optional[JobStatus], Optional[float]]:
    """The status the latest attempt ended with (a later push counts as success) and when it was recorded."""
    status, when = None, None
    for record in filter(None, map(parse_line, events.split(b"\n"))):
        if isinstance(record, (*OUTCOME_TYPES, Pushed)):
            status = JobStatus.SUCCEEDED if isinstance(record, Pushed) else outcome_status(record)
            when = record.time
        elif isinstance(record, Start):
            status, when = None, None  # a later attempt began: its outcome is what counts
    return status, when


def restore_jobs(store: Any, jobs_dir: Path, token: Optional[str] = None) -> list[str]:
    """Recreate the synced jobs `store` lacks; returns their ids. Never touches a job the store has."""
    tok = resolve_token(token)
    restored = []
    for repo in hubsync.synced_repos(whoami(tok), tok):
        try:
            job_id = _restore_one(store, jobs_dir, repo, tok)
        except (HubError, ValueError, OSError) as exc:  # one unreadable repo must not hide the others
            print(f"could not restore {repo}: {exc}")
            continue
        if job_id:
            restored.append(job_id)
    return restored


def _restore_one(store: Any, jobs_dir: Path, repo: str, token: str) -> Optional[str]:
    manifest = hubsync.read_json(repo, hubsync.MANIFEST_FILE, token) or {}
    remote = hubsync.read_json(repo, hubsync.REMOTE_FILE, token)
    job_id = str(manifest.get("job_id") or (remote or {}).get("job_id") or repo.split(SYNC_REPO_PREFIX)[-1])
    if not JOB_ID.fullmatch(job_id) or store.exists(job_id):
        return None
    raw = (remote or {}).get("spec") or yaml.safe_load(hubsync.read_file(repo, SPEC_FILE, token) or b"{}")
    job_dir = jobs_dir / job_id
    raw.update(output_dir=str(job_dir))
    raw.setdefault("hub", {}).update(sync=True, sync_repo=repo)
    spec, _ = parse_spec(raw, f"{repo}/{SPEC_FILE}")
    job_dir.mkdir(parents=True, exist_ok=True)
    spec.save(job_dir / SPEC_FILE)
    events = hubsync.read_file(repo, EVENTS_FILE, token) or b""
    (job_dir / EVENTS_FILE).write_bytes(events)
    (job_dir / LOG_FILE).write_bytes(hubsync.read_file(repo, LOG_FILE, token) or b"")
    if spec.sweep is not None and (record := hubsync.read_file(repo, SWEEP_FILE, token)) is not None:
        (job_dir / SWEEP_FILE).write_bytes(record)  # its trials table; Resume gets the study itself
    outcome, finished_at = _last_outcome(events)
    status = outcome or JobStatus.INTERRUPTED
    if status in (JobStatus.SUCCEEDED, JobStatus.NOT_PUSHED):
        hubsync.download_folder(repo, ADAPTER_DIR, job_dir, token)
        if not has_trained_model(job_dir):
            status = JobStatus.INTERRUPTED
    now = time.time()
    if remote and remote.get("job_ids") and spec.compute.backend == "hf_jobs":
        ns = remote.get("namespace") or repo.split("/")[0]
        live = [j for j in remote["job_ids"] if not job_state(token, ns, j).terminal]
        if live:  # still running on HF Jobs: a runner re-attaches (remote/runner.py) once it is queued
            RemoteState(namespace=ns, sync_repo=repo, job_ids=remote["job_ids"], flavor=spec.compute.flavor,
                        mirrored={EVENTS_FILE: len(events), LOG_FILE: (job_dir / LOG_FILE).stat().st_size}
                        ).save(job_dir)
            status = JobStatus.QUEUED
    store.create(job_id, name=manifest.get("name") or spec.project_name, status=status,
                 spec=spec.to_public_dict(), job_dir=str(job_dir), created_at=now, queued_at=now,
                 finished_at=None if status == JobStatus.QUEUED else (finished_at or now),
                 owner=manifest.get("owner") or (remote or {}).get("owner"), attempt=1,
                 error="restored from the Hub after this machine lost it; resume continues from the latest synced "
                       "checkpoint" if status == JobStatus.INTERRUPTED else None)
    return job_id
