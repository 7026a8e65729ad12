"""Push a trained job and record the outcome in its events: the one push path for `train` (push after training)
and for a later push of a finished job (jobs/publish.py, the Push button, `python -m trainer_backend push`)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..job_status import JobStatus
from ..spec import JobSpec
from ..run_events import Pushed, PushFailed
from ..training.events import Echo, EventLog
from .client import HubError
from .push import PushResult, push_adapter


@dataclass
class PushOutcome:
    status: JobStatus                   # SUCCEEDED, or NOT_PUSHED (the adapter stays on disk; retry later)
    result: Optional[PushResult] = None
    error: Optional[str] = None         # already redacted: never holds the token


def push_and_record(job_dir: str | Path, *, repo_id: Optional[str], token: Any, private: bool,
                    merged: bool = False, metrics: Optional[dict] = None, **push_options: Any) -> PushOutcome:
    events = EventLog(job_dir)
    try:
        result = push_adapter(job_dir, repo_id=repo_id, token=token, private=private, merged=merged,
                              **push_options)
    except HubError as exc:
        events.write(PushFailed(error=str(exc), metrics=metrics or {}))
        return PushOutcome(JobStatus.NOT_PUSHED, error=str(exc))
    events.write(Pushed(repo_id=result.repo_id, url=result.url, commit=result.commit, merged=merged,
                        gguf_url=result.gguf.url if result.gguf else None))
    return PushOutcome(JobStatus.SUCCEEDED, result)


def train_and_push(spec: JobSpec, echo: Optional[Echo] = None) -> Any:
    """Train; then, when the spec asks for it (hub.push_to_hub), push. A failed push leaves a trained job
    with status NOT_PUSHED that `push` can retry."""
    from ..training.run import run_training
    from .sync import synced_job

    with synced_job(spec, EventLog(spec.job_dir, echo)):  # its refusal is printed like a training failure  # hub.sync / HF Jobs: the job folder kept on the Hub
        result = run_training(spec, echo=echo)
        if result.status == JobStatus.SUCCEEDED:
            _evaluate(spec)
        exported = result.status == JobStatus.SUCCEEDED and bool(spec.export.formats) and _export(spec)
        if result.status == JobStatus.SUCCEEDED and spec.hub.push_to_hub:
            outcome = push_and_record(spec.job_dir, repo_id=spec.hub.repo_id, token=spec.hub.token,
                                      private=spec.hub.private, metrics=result.metrics, gguf=exported)
            result.status = outcome.status
    return result


def _evaluate(spec: JobSpec) -> None:
    """The spec's evaluation report right after training (before the export and the push, so the model card
    has it). It never fails the trained job: a report that fails says why in evaluation.json."""
    from ..evaluation.run import EvaluationRefused, run_report
    from ..settings import settings

    if not spec.evaluation.auto or not settings().auto_evaluation:
        return
    token = spec.hub.token.get_secret_value() if spec.hub.token else None
    last_part, last_at = [""], [0.0]

    def progress(record: Any) -> None:  # the log gets a line when a part starts and every 10 seconds, not per row
        part = record.message.split(":")[0]
        if part != last_part[0] or time.time() - last_at[0] >= 10:
            last_part[0], last_at[0] = part, time.time()
            print(f"evaluation [{record.fraction:.0%}]: {record.message}", flush=True)

    try:
        record = run_report(spec.job_dir, spec.evaluation, token, on_progress=progress)
    except EvaluationRefused as exc:
        print(f"evaluation: {exc}", flush=True)
        return
    print(f"evaluation {record.state}: {record.message}", flush=True)


def _export(spec: JobSpec) -> bool:
    """The spec's `export:` right after training (before the push, which then takes the GGUF files along).
    A failed export leaves the trained job as it is; export.json and the log say what failed. True: exported."""
    from ..export.report import failed_files
    from ..export.run import export_job

    token = spec.hub.token.get_secret_value() if spec.hub.token else None
    record = export_job(spec.job_dir, spec.export, token,
                        on_progress=lambda r: print(f"export [{r.fraction:.0%}]: {r.message}", flush=True))
    failed = failed_files(record)
    if failed:
        print("export: " + ", ".join(f.name for f in failed) + " failed the round-trip check and is not pushed "
              "(see export/export.json)", flush=True)
    return record.state == "succeeded"
