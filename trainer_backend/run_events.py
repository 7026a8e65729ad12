"""The events of a run (a job folder's events.jsonl): one typed record per kind, shared by every writer and reader.

One JSON object per line, always with `event` (the kind) and `time`. Writers build a record
(`Log(step=..., ...)`) and hand it to training/events.EventLog; readers get the same classes back from
`parse_event` / `read_events` / `events_in_range` and match on them, so a field has one name everywhere and a
misspelt one is a type error, not a chart that stays empty.

Who writes what:
  training (training/run.py, training/callbacks.py, trainers/grpo.py): Preparing, Phase, FittedToHardware, Start, Log,
    Eval, Samples, Checkpoint, OomAdjusted, Stopped, Finished, Failed
  the Hub (hub/publish.py, hub/sync.py): Pushed, PushFailed, CheckpointPulled, SyncFailed, Failed (kind "hub")
  HF Jobs (remote/runner.py): RemoteSubmitted, RemoteReattached, Stopped, Failed (kind "remote")
Readers: jobs/progress.py (the snapshot and charts), jobs/lifecycle.py (how a run ended), the CLI's console,
hub/plot.py (the model card's loss plot), remote/restore.py and remote/runner.py (a job mirrored from the Hub).

Reading is lenient: a line of an unknown kind, or one that does not fit its kind (a file from another version),
is skipped rather than failing a whole job view; extra keys of other kinds are ignored. `Log` and `Eval` keep
extra keys: TRL logs trainer-specific metrics under its own names (`rewards/margins`, `rewards/<name>/mean`, ...).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypeGuard, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .job_files import EVENTS_FILE
from .job_status import JobStatus


def _now() -> float:
    return round(time.time(), 3)


class RunEvent(BaseModel):
    """Fields every event has. Frozen: one parsed record may be handed to many readers."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    event: str  # the kind: each record class fixes it to its own name
    time: float = Field(default_factory=_now)


class _WithMetrics(RunEvent):
    model_config = ConfigDict(extra="allow", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _plain_numbers(cls, data: Any) -> Any:
        """A tensor or numpy scalar among the metrics TRL logged becomes the Python number it holds."""
        if isinstance(data, dict):
            return {k: v.item() if hasattr(v, "item") else v for k, v in data.items()}
        return data

    def metric(self, key: str) -> Optional[float]:
        """A logged number under TRL's name (`rewards/margins`, `kl`, ...): finite int/float, else None."""
        value = getattr(self, key, None) if key in type(self).model_fields else (self.model_extra or {}).get(key)
        return float(value) if is_number(value) else None

    def extra_metrics(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Preparing(RunEvent):
    """Reading, checking and tokenising the data, before step 0 (at most one a second)."""
    event: Literal["preparing"] = "preparing"
    phase: str = "preparing"
    progress: float = 0.0  # 0..1
    rows: int = 0
    total_rows: Optional[int] = None
    rows_per_second: Optional[float] = None
    eta_seconds: Optional[float] = None


class Phase(RunEvent):
    """Where a run is before its first step, so a person sees why nothing moves yet: `loading model` (the base
    model, a minute for a large one) and `restoring checkpoint` (a resume: weights, optimizer, data position).
    Preparing the data has its own record (Preparing); `start` ends the phases."""
    event: Literal["phase"] = "phase"
    phase: str


class FittedToHardware(RunEvent):
    """Settings this machine cannot honour and what this run does instead; the job's spec keeps what was asked."""
    event: Literal["fitted_to_hardware"] = "fitted_to_hardware"
    changes: list[str] = []


class Start(RunEvent):
    event: Literal["start"] = "start"
    max_steps: Optional[int] = None
    num_epochs: Optional[float] = None
    start_step: int = 0
    resumed_from: Optional[str] = None
    train_rows: Optional[int] = None
    valid_rows: Optional[int] = None
    device: Optional[str] = None
    world_size: int = 1


class Log(_WithMetrics):
    """One optimizer step's log line; GRPO adds `reward`, `kl`, `rewards/<name>/mean`, ... as extra keys."""
    event: Literal["log"] = "log"
    step: int = 0
    max_steps: Optional[int] = None
    epoch: Optional[float] = None
    progress: Optional[float] = None  # 0..1
    loss: Optional[float] = None
    learning_rate: Optional[float] = None
    grad_norm: Optional[float] = None
    tokens_seen: Optional[int] = None
    tokens_per_second: Optional[float] = None
    elapsed_seconds: Optional[float] = None
    eta_seconds: Optional[float] = None
    peak_memory_bytes: Optional[int] = None
    peak_memory_device: Optional[str] = None  # GPU (torch allocated) | RAM (process peak resident set)


class Eval(_WithMetrics):
    event: Literal["eval"] = "eval"
    step: int = 0
    epoch: Optional[float] = None
    eval_loss: Optional[float] = None


class Sample(BaseModel):
    """One GRPO completion with the score each reward function gave it."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    prompt: str = ""
    completion: str = ""
    rewards: dict[str, Optional[float]] = {}
    total: Optional[float] = None


class Samples(RunEvent):
    event: Literal["samples"] = "samples"
    step: int = 0
    samples: list[Sample] = []


class Checkpoint(RunEvent):
    event: Literal["checkpoint"] = "checkpoint"
    step: int = 0
    path: str


class OomAdjusted(RunEvent):
    """Out of memory: the run goes on with a smaller micro-batch and the same effective batch."""
    event: Literal["oom_adjusted"] = "oom_adjusted"
    step: int = 0
    error: str = ""
    batch_size: int
    gradient_accumulation: int
    previous_batch_size: int
    previous_gradient_accumulation: int
    resume_from: Optional[str] = None


StopReason = Literal["pruned", "budget"]


class Stopped(RunEvent):
    """A stop the person asked for (saved at a step boundary), an HF Job that was cancelled, or a sweep's trial its
    pruner stopped (`reason` pruned: the note says at which evaluation and why) or its budget ended."""
    event: Literal["stopped"] = "stopped"
    step: Optional[int] = None
    checkpoint: Optional[str] = None
    note: Optional[str] = None
    reason: Optional[StopReason] = None


class Finished(RunEvent):
    event: Literal["finished"] = "finished"
    step: int = 0
    metrics: dict[str, Any] = {}
    adapter_dir: Optional[str] = None


FailureKind = Literal["data", "spec", "exception", "hub", "remote"]


class Failed(RunEvent):
    """Why a run failed: `data` (issues name file, row and column), `spec`, `hub`, `remote` or a traceback."""
    event: Literal["failed"] = "failed"
    error: str
    kind: FailureKind = "exception"
    issues: list[str] = []
    truncated: bool = False
    traceback: Optional[str] = None


class Pushed(RunEvent):
    event: Literal["pushed"] = "pushed"
    repo_id: str
    url: Optional[str] = None
    commit: Optional[str] = None
    merged: bool = False
    gguf_url: Optional[str] = None  # the <repo>-GGUF repo the job's export went to, when pushed with it


class PushFailed(RunEvent):
    """Training succeeded, the Hub push did not: the adapter is on disk and Push retries."""
    event: Literal["push_failed"] = "push_failed"
    error: str
    metrics: dict[str, Any] = {}


class CheckpointPulled(RunEvent):
    """A resume on an empty disk fetched the latest checkpoint from the job's Hub repo."""
    event: Literal["checkpoint_pulled"] = "checkpoint_pulled"
    repo_id: str
    checkpoint: Optional[str] = None


class SyncFailed(RunEvent):
    """The last sync to the job's Hub repo failed; the run's outcome stands."""
    event: Literal["sync_failed"] = "sync_failed"
    repo_id: str
    error: str


class RemoteSubmitted(RunEvent):
    event: Literal["remote_submitted"] = "remote_submitted"
    backend: str = "hf_jobs"
    flavor: Optional[str] = None
    nodes: int = 1
    job_ids: list[str] = []
    url: Optional[str] = None
    repo_id: Optional[str] = None


class RemoteReattached(RunEvent):
    """A new runner found the job's HF Job still running and follows it (never a second Job)."""
    event: Literal["remote_reattached"] = "remote_reattached"
    job_ids: list[str] = []


AnyEvent = Annotated[Union[Preparing, Phase, FittedToHardware, Start, Log, Eval, Samples, Checkpoint, OomAdjusted, Stopped,
                           Finished, Failed, Pushed, PushFailed, CheckpointPulled, SyncFailed, RemoteSubmitted,
                           RemoteReattached], Field(discriminator="event")]
Outcome = Union[Finished, Stopped, Failed, PushFailed]  # how a run ended, as the run itself recorded it
OUTCOME_TYPES = (Finished, Stopped, Failed, PushFailed)
# The job status an outcome means when nothing else is known (no exit code: a run restored from the Hub, one that
# ended unwatched); jobs/lifecycle.decide weighs an exit code too.
OUTCOME_STATUS: dict[type, JobStatus] = {Finished: JobStatus.SUCCEEDED, Stopped: JobStatus.STOPPED,
                                         Failed: JobStatus.FAILED, PushFailed: JobStatus.NOT_PUSHED}


def outcome_status(record: RunEvent) -> JobStatus:
    """The job status an outcome record means on its own (a stop by a sweep's pruner: pruned)."""
    if isinstance(record, Stopped) and record.reason == "pruned":
        return JobStatus.PRUNED
    return OUTCOME_STATUS[type(record)]


STEP_EVENTS = (Log, Eval, Samples, Checkpoint, OomAdjusted, Stopped, Finished)  # the ones that carry a step
EVENT_KINDS: tuple[str, ...] = tuple(t.model_fields["event"].default for t in (
    Preparing, Phase, FittedToHardware, Start, Log, Eval, Samples, Checkpoint, OomAdjusted, Stopped, Finished, Failed, Pushed,
    PushFailed, CheckpointPulled, SyncFailed, RemoteSubmitted, RemoteReattached))
_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent)


def is_number(value: Any) -> TypeGuard[float]:
    """An int or a float, finite, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def to_dict(record: RunEvent) -> dict[str, Any]:
    """A record as JSON-ready data, `event` first. Non-finite numbers (a NaN loss) become null: JSON has no NaN."""
    data = _finite(record.model_dump(mode="json"))
    return {"event": data.pop("event"), **data}


def to_json(record: RunEvent) -> str:
    """One line of events.jsonl."""
    return json.dumps(to_dict(record), ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def parse_event(raw: Any) -> Optional[RunEvent]:
    """The typed record of one decoded line; None for a line of an unknown kind or one that does not fit its kind."""
    if not isinstance(raw, dict) or raw.get("event") not in EVENT_KINDS:
        return None
    try:
        return _ADAPTER.validate_python(raw)  # type: ignore[no-any-return]
    except ValidationError:
        return None


def parse_line(line: bytes | str) -> Optional[RunEvent]:
    try:
        return parse_event(json.loads(line))
    except ValueError:  # a line being written right now, or cut by a crash mid-write
        return None


def events_in_range(path: str | Path, start: int = 0) -> list[RunEvent]:
    """Every complete event at or after byte `start` of an events file (once per run end; not for polling)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        return []
    return [e for e in map(parse_line, data.split(b"\n")) if e is not None]


def read_events(job_dir: str | Path) -> list[RunEvent]:
    """Every event of a job folder."""
    return events_in_range(Path(job_dir) / EVENTS_FILE)



@dataclass
class EventTail:
    """Follows one events.jsonl from a byte offset, returning only the new complete records each time (a file
    replaced or cut short, as an HF Jobs mirror may, is read again from its start). Readers that poll: a sweep's
    driver (its trials), an agent following a job (jobs/follow.py). `max_bytes` caps one read (the rest waits for the
    next call)."""
    path: Path
    offset: int = 0
    inode: Optional[int] = None
    seen: list[RunEvent] = field(default_factory=list)

    @classmethod
    def of(cls, job_dir: str | Path, offset: int = 0) -> "EventTail":
        return cls(Path(job_dir) / EVENTS_FILE, offset)

    def new_events(self, max_bytes: Optional[int] = None) -> list[RunEvent]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if (self.inode is not None and st.st_ino != self.inode) or st.st_size < self.offset:
            self.offset, self.seen = 0, []
        self.inode = st.st_ino
        if st.st_size <= self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(max_bytes) if max_bytes else fh.read()
            if max_bytes and len(data) >= max_bytes and b"\n" not in data:  # one record longer than the cap
                data += fh.readline()
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        fresh = [e for e in map(parse_line, data[:complete].split(b"\n")) if e is not None]
        self.seen.extend(fresh)
        return fresh

    @property
    def pending(self) -> bool:
        """More bytes are in the file than were read (a capped read left some)."""
        try:
            return os.stat(self.path).st_size > self.offset
        except FileNotFoundError:
            return False
