"""SQLite job store: one row per job, shared by the UI process, the CLI and the supervisor.

Every process opens its own connection (WAL mode, so readers never block the single writer); every
read-modify-write that can race between processes is a single conditional UPDATE, so no process ever
needs to hold a transaction open while it does anything slow.
"""
from __future__ import annotations

import builtins
import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from ..job_files import DEBUG_LOG_FILE, EVENTS_FILE, LOG_FILE, SPEC_FILE
from ..job_status import ACTIVE, RESUMABLE, TERMINAL, JobStatus  # noqa: F401  (ACTIVE.. re-exported to jobs/)
from ..spec import JobSpec

# Statuses live in job_status.py; stored as plain TEXT. Short names for this package's many uses:
QUEUED, RUNNING, STOPPING = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.STOPPING
STOPPED, FAILED, SUCCEEDED = JobStatus.STOPPED, JobStatus.FAILED, JobStatus.SUCCEEDED
INTERRUPTED, NOT_PUSHED, PRUNED = JobStatus.INTERRUPTED, JobStatus.NOT_PUSHED, JobStatus.PRUNED

DB_FILE = "jobs.db"
JSON_COLUMNS = ("spec", "progress", "metrics", "error_details", "artifacts", "env")

# Schema history. Index i holds the script that takes the database from version i to i + 1
# (tracked in PRAGMA user_version). Later issues append scripts; existing ones never change.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,              -- submission order, breaks ties in the queue
        name TEXT NOT NULL,
        owner TEXT,
        status TEXT NOT NULL,
        spec TEXT,                         -- JSON, secrets removed
        job_dir TEXT NOT NULL,
        cwd TEXT,                          -- where the job was submitted (relative paths in the spec)
        env TEXT,                          -- JSON: extra environment for the training process
        parent_id TEXT,                    -- "continue training" jobs point at the job they extend
        attempt INTEGER NOT NULL DEFAULT 0,-- how many times a training process was launched
        created_at REAL NOT NULL,
        queued_at REAL,
        started_at REAL,
        finished_at REAL,
        pid INTEGER,                       -- training process (also its process group id)
        pid_start REAL,                    -- its start time: tells our process from a reused pid
        supervisor_pid INTEGER,
        events_offset INTEGER NOT NULL DEFAULT 0, -- events.jsonl bytes that belong to older runs of the dir
        run_events_offset INTEGER NOT NULL DEFAULT 0, -- where the current attempt's events begin
        stop_requested_at REAL,
        stop_deadline REAL,                -- after this the whole process group gets SIGKILL
        term_sent INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        progress TEXT,                     -- JSON: last progress summary (no loss series)
        metrics TEXT,                      -- JSON: final metrics
        error TEXT,                        -- one line: what went wrong
        error_details TEXT,                -- JSON: ErrorDetails
        artifacts TEXT                     -- JSON: adapter, checkpoints, log, events, ...
    );
    CREATE INDEX jobs_status ON jobs(status, queued_at, seq);
    """,
    # whose Hub identity the job acts with, in words: shown beside the job; the token itself never is in the store
    "ALTER TABLE jobs ADD COLUMN hub_identity TEXT;",
]
SCHEMA_VERSION = len(MIGRATIONS)


class ErrorDetails(BaseModel):
    """What went wrong with a job beyond its one-line `error` (or what its spec warned about at submit)."""
    model_config = ConfigDict(extra="ignore")  # a row written by another version keeps what this one knows
    kind: Optional[str] = None  # validation | data | spec | exception | hub | remote | push | killed | exit | interrupted
    issues: list[str] = []      # one per problem: file, row, column and the fix
    truncated: bool = False     # there were more issues than were kept
    traceback: Optional[str] = None
    log_tail: list[str] = []    # the training log's last lines, when there was no better record
    message: Optional[str] = None  # a refused spec's whole message
    warnings: list[str] = []    # settings a queued job's spec warned about

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_defaults=True)


@dataclass
class Job:
    id: str
    name: str
    status: str
    job_dir: str
    created_at: float
    seq: int = 0
    owner: Optional[str] = None
    spec: Optional[dict] = None
    cwd: Optional[str] = None
    env: Optional[dict] = None
    parent_id: Optional[str] = None
    attempt: int = 0
    queued_at: Optional[float] = None
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    pid: Optional[int] = None
    pid_start: Optional[float] = None
    supervisor_pid: Optional[int] = None
    events_offset: int = 0
    run_events_offset: int = 0
    stop_requested_at: Optional[float] = None
    stop_deadline: Optional[float] = None
    term_sent: int = 0
    exit_code: Optional[int] = None
    progress: Optional[dict] = None
    metrics: Optional[dict] = None
    error: Optional[str] = None
    error_details: Optional[ErrorDetails] = None
    artifacts: Optional[dict] = field(default=None)
    hub_identity: Optional[str] = None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def job_spec(self) -> Optional[JobSpec]:
        """The spec as the typed model (stored_spec)."""
        return stored_spec(self.spec)

    @property
    def spec_path(self) -> Path:
        return Path(self.job_dir) / SPEC_FILE

    @property
    def log_path(self) -> Path:
        return Path(self.job_dir) / LOG_FILE

    @property
    def debug_log_path(self) -> Path:
        return Path(self.job_dir) / DEBUG_LOG_FILE

    @property
    def events_path(self) -> Path:
        return Path(self.job_dir) / EVENTS_FILE


def stored_spec(raw: Optional[dict]) -> Optional[JobSpec]:
    """A job row's spec (JSON, secrets removed) as the typed model; None for a spec refused before it was
    complete (the row keeps what was sent, for the person to fix). Read spec values from this, never the dict."""
    if not raw:
        return None
    try:
        return JobSpec.model_validate(raw)
    except ValidationError:
        return None


_JOB_FIELDS = [f.name for f in fields(Job)]


def new_job_id() -> str:
    """8 hex digits: short enough to type, random enough to never collide in one store."""
    return secrets.token_hex(4)


class JobNotFound(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"


class JobStateError(ValueError):
    """The job is not in a state that allows this action; the message says what would."""


class JobStore:
    """Typed access to the jobs table. Safe to share between threads (one connection per thread)."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_FILE
        self._local = threading.local()
        self._migrate()

    # ---- connection & schema -----------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():  # never reuse across fork
            # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE) where needed.
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            # WAL lets the UI poll while the supervisor writes. Filesystems without shared-memory support
            # (some network mounts) refuse it; SQLite then keeps its rollback journal, which still works.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _migrate(self) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")  # serialises concurrent first-time creators
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema version {version}, newer than this LoRA Studio "
                                   f"({SCHEMA_VERSION}); upgrade LoRA Studio")
            for script in MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- rows <-> Job ------------------------------------------------------------------------------
    @staticmethod
    def _to_job(row: sqlite3.Row) -> Job:
        data: dict[str, Any] = dict(row)
        for col in JSON_COLUMNS:
            if data.get(col) is not None:
                data[col] = json.loads(data[col])
        if isinstance(data.get("error_details"), dict):
            data["error_details"] = ErrorDetails.model_validate(data["error_details"])
        values: dict[str, Any] = {k: data[k] for k in _JOB_FIELDS if k in data}
        return Job(**values)

    @staticmethod
    def _encode(values: dict[str, Any]) -> dict[str, Any]:
        unknown = set(values) - set(_JOB_FIELDS)
        if unknown:
            raise ValueError(f"unknown job field(s): {sorted(unknown)}")
        return {k: json.dumps(v.to_dict() if isinstance(v, ErrorDetails) else v, ensure_ascii=False)
                if k in JSON_COLUMNS and v is not None else v for k, v in values.items()}

    # ---- writes ------------------------------------------------------------------------------------
    def create(self, job_id: Optional[str] = None, **values: Any) -> Job:
        """Insert a job (with `job_id`, or a fresh short random id). `seq` keeps submission order."""
        conn = self._conn()
        values.setdefault("created_at", time.time())
        for _ in range(20):
            row = self._encode({**values, "id": job_id or new_job_id()})
            cols = ", ".join(row)
            marks = ", ".join(f":{c}" for c in row)
            conn.execute("BEGIN IMMEDIATE")
            try:
                seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
                conn.execute(f"INSERT INTO jobs ({cols}, seq) VALUES ({marks}, :seq)", {**row, "seq": seq})
                conn.execute("COMMIT")
                return self.get(row["id"])
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK")
                if job_id:  # the caller's id is taken: that is the caller's problem to report
                    raise
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        raise RuntimeError("could not allocate a job id")

    def exists(self, job_id: str) -> bool:
        return self._conn().execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None

    def update(self, job_id: str, *, only_if_status: Optional[Iterable[str]] = None, **values: Any) -> bool:
        """Set fields; with `only_if_status`, only when the job is still in one of those states.

        The conditional form is the store's compare-and-swap: it is how the supervisor claims a queued job,
        and how a stop request and a finishing process avoid overwriting each other.
        """
        if not values:
            return True
        row = self._encode(values)
        sets = ", ".join(f"{c} = :{c}" for c in row)
        sql = f"UPDATE jobs SET {sets} WHERE id = :_id"
        params = {**row, "_id": job_id}
        if only_if_status is not None:
            states = list(only_if_status)
            sql += f" AND status IN ({', '.join(f':_s{i}' for i in range(len(states)))})"
            params.update({f"_s{i}": s for i, s in enumerate(states)})
        return self._conn().execute(sql, params).rowcount == 1

    def claim_term(self, job_id: str) -> bool:
        """Exactly one caller wins the right to send the graceful SIGTERM (a second one would hard-stop)."""
        cur = self._conn().execute("UPDATE jobs SET term_sent = 1 WHERE id = ? AND term_sent = 0", (job_id,))
        return cur.rowcount == 1

    def delete(self, job_id: str) -> None:
        self._conn().execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    # ---- reads -------------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        """Look a job up by id or by an unambiguous id prefix (like git / docker)."""
        conn = self._conn()
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None and job_id and all(c in "0123456789abcdef" for c in job_id):
            rows = conn.execute("SELECT * FROM jobs WHERE id LIKE ? LIMIT 2", (job_id + "%",)).fetchall()
            if len(rows) > 1:
                raise JobNotFound(f"job id prefix '{job_id}' is ambiguous")
            row = rows[0] if rows else None
        if row is None:
            raise JobNotFound(f"no job '{job_id}'")  # no server path: this text reaches API clients
        return self._to_job(row)

    def status_of(self, job_id: str) -> Optional[str]:
        row = self._conn().execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else None

    def list(self, statuses: Optional[Iterable[str]] = None, owner: Optional[str] = None,
             limit: Optional[int] = None, oldest_first: bool = False) -> list[Job]:
        sql, params = "SELECT * FROM jobs WHERE 1 = 1", []
        if statuses is not None:
            states = list(statuses)
            sql += f" AND status IN ({', '.join('?' * len(states))})"
            params += states
        if owner is not None:
            sql += " AND owner = ?"
            params.append(owner)
        sql += " ORDER BY seq" + ("" if oldest_first else " DESC")
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._to_job(r) for r in self._conn().execute(sql, params).fetchall()]

    def queue(self) -> builtins.list[Job]:
        """Queued jobs in the order they will start (a resumed job goes to the back of the line)."""
        rows = self._conn().execute(
            "SELECT * FROM jobs WHERE status = ? ORDER BY queued_at, seq", (QUEUED,)).fetchall()
        return [self._to_job(r) for r in rows]

    def active(self) -> builtins.list[Job]:
        return self.list(ACTIVE, oldest_first=True)

    def count(self, statuses: Iterable[str]) -> int:
        states = list(statuses)
        sql = f"SELECT COUNT(*) FROM jobs WHERE status IN ({', '.join('?' * len(states))})"
        return int(self._conn().execute(sql, states).fetchone()[0])
