"""Push a finished job's adapter to the Hub from the calling process (the app with the signed-in user's
OAuth token, or the CLI with HF_TOKEN), and record the outcome on the job."""
from __future__ import annotations

from typing import Any, Optional

from ..training.events import EventLog
from .lifecycle import collect_artifacts
from .store import NOT_PUSHED, SUCCEEDED, Job, JobStateError, JobStore

PUSHABLE = (SUCCEEDED, NOT_PUSHED)


def push_job(store: JobStore, job: Job, repo_id: Optional[str] = None, merged: bool = False,
             token: Any = None, private: Optional[bool] = None, **push_options: Any) -> Job:
    """Push (or push again); success -> succeeded with hub_url, a Hub failure -> trained_not_pushed + error.
    The token lives only in this call: it is never stored, logged or returned."""
    from ..hub import HubError, push_adapter

    if job.status not in PUSHABLE:
        raise JobStateError(f"job {job.id} is {job.status}; only a finished job can be pushed")
    spec = job.job_spec
    hub = spec.hub if spec else None
    events = EventLog(job.job_dir)
    try:
        result = push_adapter(job.job_dir, repo_id=repo_id or (hub.repo_id if hub else None), token=token,
                              private=(hub.private if hub else True) if private is None else private,
                              merged=merged, **push_options)
    except HubError as exc:
        events.write("push_failed", error=str(exc), metrics=job.metrics)
        store.update(job.id, status=NOT_PUSHED, error=str(exc), error_details={"kind": "push"})
        return store.get(job.id)
    events.write("pushed", repo_id=result.repo_id, url=result.url, commit=result.commit, merged=merged)
    artifacts = {**collect_artifacts(job), "hub_url": result.url, "hub_repo": result.repo_id}
    store.update(job.id, status=SUCCEEDED, error=None, error_details=None, artifacts=artifacts)
    return store.get(job.id)
