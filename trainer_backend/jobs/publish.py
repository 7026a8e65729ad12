"""Push a finished job's adapter to the Hub from the calling process (the app with the signed-in user's
OAuth token, or the CLI with HF_TOKEN), and record the outcome on the job."""
from __future__ import annotations

from typing import Any, Optional

from .lifecycle import collect_artifacts
from .store import NOT_PUSHED, SUCCEEDED, ErrorDetails, Job, JobStateError, JobStore

PUSHABLE = (SUCCEEDED, NOT_PUSHED)


def push_job(store: JobStore, job: Job, repo_id: Optional[str] = None, merged: bool = False,
             token: Any = None, private: Optional[bool] = None, **push_options: Any) -> Job:
    """Push (or push again); success -> succeeded with hub_url, a Hub failure -> trained_not_pushed + error.
    The token lives only in this call: it is never stored, logged or returned."""
    from ..hub.publish import push_and_record

    if job.status not in PUSHABLE:
        raise JobStateError(f"job {job.id} is {job.status}; only a finished job can be pushed")
    spec = job.job_spec
    hub = spec.hub if spec else None
    outcome = push_and_record(job.job_dir, repo_id=repo_id or (hub.repo_id if hub else None), token=token,
                              private=(hub.private if hub else True) if private is None else private,
                              merged=merged, metrics=job.metrics, **push_options)
    if outcome.result is None:
        store.update(job.id, status=NOT_PUSHED, error=outcome.error, error_details=ErrorDetails(kind="push"))
        return store.get(job.id)
    result = outcome.result
    artifacts = {**collect_artifacts(job), "hub_url": result.url, "hub_repo": result.repo_id,
                 **({"gguf_url": result.gguf.url} if result.gguf else {})}
    store.update(job.id, status=SUCCEEDED, error=None, error_details=None, artifacts=artifacts)
    return store.get(job.id)
