"""A job's evaluation report (<job>/evaluation.json): held-out metrics, general tasks, the verdict, the judge.

The report is rewritten atomically after every part, so whoever reads it (the Jobs tab, /evaluation_report, the
model card, the CLI) sees each part as soon as it is measured. A report that says running while its process is
gone is reported as interrupted; the parts it finished stay. An evaluation.json written before the report had
parts (the held-out table alone) reads as a finished report with that part.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from ..background import pid_alive
from ..job_files import EVAL_FILE
from .forgetting import verdict
from .harness import TaskScore
from .metrics import EvalReport

ReportState = Literal["running", "succeeded", "failed", "interrupted"]


@dataclass
class EvaluationRecord:
    state: ReportState = "running"
    fraction: float = 0.0
    message: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # the EvaluationSpec it ran with
    pid: Optional[int] = None
    started: float = field(default_factory=time.time)
    finished: Optional[float] = None
    held_out: Optional[dict[str, Any]] = None        # metrics.EvalReport.to_dict()
    general: list[dict[str, Any]] = field(default_factory=list)  # harness.TaskScore.to_dict() per task
    verdict: Optional[dict[str, Any]] = None         # forgetting.Verdict.to_dict()
    judge: Optional[dict[str, Any]] = None           # judge.JudgeResult.to_dict()
    notes: list[str] = field(default_factory=list)   # stand-ins used, parts left out or failed, and why
    seconds: dict[str, float] = field(default_factory=dict)  # per part: held_out, general, judge
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "EvaluationRecord":
        if "state" not in raw and "fine_tuned" in raw:  # a held-out report saved before the report had parts
            return cls(state="succeeded", held_out=raw, started=0.0, finished=0.0)
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})

    @property
    def held_out_report(self) -> Optional[EvalReport]:
        return EvalReport.from_dict(self.held_out) if self.held_out else None

    @property
    def general_scores(self) -> list[TaskScore]:
        return [TaskScore.from_dict(g) for g in self.general]

    def refresh_verdict(self) -> None:
        """The verdict of what the report holds now (after any part changed)."""
        if self.held_out or self.general:
            self.verdict = verdict(self.held_out_report, self.general_scores).to_dict()


def report_path(job_dir: str | Path) -> Path:
    return Path(job_dir) / EVAL_FILE


def write_record(job_dir: str | Path, record: EvaluationRecord) -> None:
    path = report_path(job_dir)
    record.refresh_verdict()
    tmp = path.with_name(f".{EVAL_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def read_record(job_dir: str | Path) -> Optional[EvaluationRecord]:
    """The job's report, or None when it was never evaluated; `running` with a dead process -> interrupted."""
    try:
        record = EvaluationRecord.from_dict(json.loads(report_path(job_dir).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if record.state == "running" and not pid_alive(record.pid):
        record.state = "interrupted"
        record.message = "the evaluation ended before finishing (a restart?); the parts measured are kept — " \
                         "Evaluate again to finish it"
    return record


def save_held_out(job_dir: str | Path, report: EvalReport) -> None:
    """The held-out part (the Chat / Evaluate tab's Evaluate, or the report's first part), keeping the rest."""
    record = read_record(job_dir) or EvaluationRecord(state="succeeded", finished=time.time())
    record.held_out = report.to_dict()
    write_record(job_dir, record)
