"""A job folder's remote.json: which HF Jobs run the job and how far the runner has mirrored them.

Written by the runner (remote/runner.py) and by a restore from the Hub (remote/restore.py); read by both and by the
job view (jobs/manager.py). Read leniently: a file from another version keeps what this one knows.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from ..job_files import REMOTE_STATE_FILE


class RemoteState(BaseModel):
    model_config = ConfigDict(extra="ignore")
    namespace: Optional[str] = None     # whose HF Jobs (a user or an org)
    sync_repo: Optional[str] = None     # the job repo the Job keeps its folder in
    flavor: Optional[str] = None
    job_ids: list[str] = []             # the current attempt's HF Jobs, one per node
    urls: list[str] = []
    mirrored: dict[str, int] = {}       # file name -> bytes of the repo's copy already appended to the local one
    job_log_lines: dict[str, int] = {}  # HF Job id -> lines of its log already copied to the debug log
    outcome: Optional[str] = None       # the outcome event the trainer recorded, once mirrored

    def placed(self) -> tuple[str, str]:
        """(namespace, job repo) of a submitted job."""
        if not self.namespace or not self.sync_repo:
            raise ValueError("the job was never submitted to HF Jobs: no namespace or job repo is recorded")
        return self.namespace, self.sync_repo

    @classmethod
    def read(cls, job_dir: str | Path) -> "RemoteState":
        """The job's state; an empty one when it has none (never submitted) or it cannot be read."""
        try:
            return cls.model_validate(json.loads((Path(job_dir) / REMOTE_STATE_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError, ValidationError):
            return cls()

    def save(self, job_dir: str | Path) -> None:
        """Atomically: a reader never sees half a file."""
        path = Path(job_dir) / REMOTE_STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=1, exclude_defaults=True), encoding="utf-8")
        tmp.replace(path)
