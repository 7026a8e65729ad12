"""An export's record (<job>/export/export.json) and the background process that makes it.

An export runs in its own process, started detached (a new session), so closing the browser tab, a dropped
connection or an app restart does not stop it; it rewrites export.json atomically after every step, and whoever
asks (the Jobs tab, /export_status, the CLI) reads that file. A record that says running while its process is gone
is reported as interrupted; the files it finished stay.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from ..background import pid_alive, start_detached, wait_until_settled
from ..job_files import EXPORT_DIR, EXPORT_FILE, EXPORT_LOG

ExportState = Literal["running", "succeeded", "failed", "interrupted"]


@dataclass
class FileEntry:
    name: str
    format: str                        # merged, f16, bf16, q8_0, q4_K_M, lora_gguf, base_f16, modelfile
    bytes: int = 0
    seconds: float = 0.0               # how long making it took
    check: Optional[dict[str, Any]] = None  # roundtrip.FileCheck.to_dict() once checked


@dataclass
class ExportRecord:
    state: ExportState = "running"
    fraction: float = 0.0
    message: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    runtime: Optional[str] = None      # llama-cpp-python version the files were made and checked with
    pid: Optional[int] = None
    started: float = field(default_factory=time.time)
    finished: Optional[float] = None
    files: list[FileEntry] = field(default_factory=list)
    modelfile: Optional[dict[str, Any]] = None
    reference: Optional[dict[str, Any]] = None
    notes: list[str] = field(default_factory=list)
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ExportRecord":
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        known["files"] = [FileEntry(**{k: v for k, v in f.items() if k in FileEntry.__dataclass_fields__})
                          for f in raw.get("files") or []]
        return cls(**known)


def export_dir(job_dir: str | Path) -> Path:
    return Path(job_dir) / EXPORT_DIR


def write_record(out: Path, record: ExportRecord) -> None:
    record.pid = record.pid or os.getpid()
    tmp = out / f".{EXPORT_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record.to_dict(), indent=1), encoding="utf-8")
    os.replace(tmp, out / EXPORT_FILE)


def read_record(job_dir: str | Path) -> Optional[ExportRecord]:
    """The job's export record, or None when it was never exported; `running` with a dead process -> interrupted."""
    path = export_dir(job_dir) / EXPORT_FILE
    try:
        record = ExportRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if record.state == "running" and not pid_alive(record.pid):
        record.state = "interrupted"
        record.message = "the export process ended before finishing (a restart?); export again to finish it"
    return record


def is_running(job_dir: str | Path) -> bool:
    record = read_record(job_dir)
    return bool(record and record.state == "running")


def start_export(job_dir: str | Path, spec_json: str, token: "str | bool | None") -> int:
    """Start the export of a finished job in a detached process; returns its pid. `token`: the caller's Hub token
    (str), False for none at all, None for this machine's own login (the CLI off a Space)."""
    job_dir = Path(job_dir)
    if is_running(job_dir):
        raise RuntimeError("an export of this job is already running: wait for it (its progress is shown)")
    out = export_dir(job_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Until the process writes its own record (with its pid), this one says "starting" under the app's pid.
    write_record(out, ExportRecord(state="running", message="starting the export", spec=json.loads(spec_json)))
    return start_detached("trainer_backend.export.run", [str(job_dir), "--spec", spec_json], job_dir,
                          out / EXPORT_LOG, token, on_exit=lambda code: _exited(job_dir, code))


def _exited(job_dir: Path, code: int) -> None:
    """The export process ended: if it died before writing its own record, say so."""
    record = read_record(job_dir)
    if record and record.state == "running" and record.pid == os.getpid():
        record.state, record.finished = "failed", time.time()
        record.error = f"the export process exited with code {code} before it started; see {EXPORT_LOG}"
        record.message = record.error
        write_record(export_dir(job_dir), record)


def wait_for_export(job_dir: str | Path, timeout: float, interval: float = 1.0) -> Optional[ExportRecord]:
    return wait_until_settled(lambda: read_record(job_dir), timeout, interval)
