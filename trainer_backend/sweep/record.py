"""A sweep's state as people and clients read it: <sweep job>/sweep.json, rewritten atomically by its driver after
every change (a trial started, reported, pruned or finished). The Jobs tab, /sweep_status and the CLI read this
file, never the Optuna storage, so reading a sweep costs one small file and imports nothing of Optuna's."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from ..job_files import SWEEP_FILE

SweepState = Literal["running", "succeeded", "stopped", "failed"]
# A trial's state in the table: the Optuna trial's, refined by its job's (queued, running, pruned, ...).
TrialState = Literal["queued", "running", "complete", "pruned", "failed", "stopped"]


@dataclass
class TrialRow:
    number: int                      # 0-based (shown 1-based: "trial 3")
    job_id: Optional[str] = None
    params: dict[str, Any] = field(default_factory=dict)
    state: TrialState = "queued"
    value: Optional[float] = None    # the objective: final, or the last reported while it runs
    intermediate: list[list[float]] = field(default_factory=list)  # [step, value] the pruner saw
    pruned_at_step: Optional[int] = None
    seconds: Optional[float] = None  # training time so far (all its runs)
    cost_usd: Optional[float] = None
    note: Optional[str] = None       # why it was pruned, failed or stopped
    baseline: bool = False           # the sweep spec's own settings


@dataclass
class SweepRecord:
    state: SweepState = "running"
    objective: str = "eval_loss"
    objective_label: str = "eval loss"
    direction: str = "minimize"
    parameters: dict[str, str] = field(default_factory=dict)  # key -> its range in words
    trials_planned: int = 0
    parallel: int = 1
    pruner: str = "none"
    trials: list[TrialRow] = field(default_factory=list)
    best: Optional[int] = None       # number of the best complete trial
    importances: dict[str, float] = field(default_factory=dict)
    elapsed_seconds: float = 0.0     # running time of the sweep (its runs added up)
    cost_usd: Optional[float] = None  # HF Jobs spend so far (None: this machine, no price)
    estimate: Optional[str] = None   # the plan's estimate in words, before the first trial
    promoted: Optional[str] = None   # the job the best trial was promoted to
    message: str = ""
    notes: list[str] = field(default_factory=list)
    updated: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "SweepRecord":
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        known["trials"] = [TrialRow(**{k: v for k, v in t.items() if k in TrialRow.__dataclass_fields__})
                           for t in raw.get("trials") or []]
        return cls(**known)

    @property
    def best_trial(self) -> Optional[TrialRow]:
        return next((t for t in self.trials if t.number == self.best), None)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out


def write_record(job_dir: str | Path, record: SweepRecord) -> None:
    path = Path(job_dir) / SWEEP_FILE
    record.updated = time.time()
    tmp = path.with_name(f".{SWEEP_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def read_record(job_dir: str | Path) -> Optional[SweepRecord]:
    try:
        return SweepRecord.from_dict(json.loads((Path(job_dir) / SWEEP_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
