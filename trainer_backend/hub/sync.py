"""A job kept on the Hub: its folder copied to a private repo while it trains, and read back from there.

The repo uses the job folder's own names (job_files.py): spec.yaml, events.jsonl, train.log, data_report.json,
checkpoints/checkpoint-N/ (the latest complete one; older ones are deleted in the same commit), adapter/ (at the
end), plus MANIFEST_FILE (who the job is: id, name, owner, backend) and, for HF Jobs, REMOTE_FILE (the Job ids the
app re-attaches to) and STOP_FILE (a stop request the Job's wrapper reads).

Used by local jobs with `hub.sync: true` (a Space that restarts with an empty disk lists them again and resumes
them) and always by jobs on HF Jobs. A sync failure never stops training: it is logged and tried again at the
next sync; the last sync (when training ends) retries with backoff.
"""
from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from ..job_files import (ADAPTER_DIR, CHECKPOINT_PREFIX, CHECKPOINTS_DIR, EVAL_FILE, EVENTS_FILE, LOG_FILE,
                         REPORT_FILE, SPEC_FILE, STOP_REQUEST_FILE, SWEEP_FILE, SWEEP_STUDY_FILE, SYNC_REPO_PREFIX,
                         latest_checkpoint)
from ..run_events import STEP_EVENTS, CheckpointPulled, Failed, SyncFailed, parse_line
from .client import DEFAULT_RETRY, HubError, RetryPolicy, call_with_retries, redact

log = logging.getLogger(__name__)

MANIFEST_FILE = "lora_studio_job.json"
REMOTE_FILE = "remote/job.json"
REMOTE_SPEC_FILE = "remote/spec.yaml"
STOP_FILE = STOP_REQUEST_FILE  # the same path in the job repo
# copied whenever they change; a sweep's record and its Optuna study too (a resume on an empty disk reloads them)
TEXT_FILES = (SPEC_FILE, EVENTS_FILE, LOG_FILE, REPORT_FILE, EVAL_FILE, SWEEP_FILE, SWEEP_STUDY_FILE)


def default_sync_repo(namespace: str, job_id: str) -> str:
    return f"{namespace}/{SYNC_REPO_PREFIX}{job_id}"


def _api(token: Optional[str]) -> Any:
    from huggingface_hub import HfApi

    return HfApi(token=token)


def ensure_repo(repo_id: str, token: str, retry: RetryPolicy = DEFAULT_RETRY) -> None:
    call_with_retries(lambda: _api(token).create_repo(repo_id, private=True, exist_ok=True),
                      f"creating {repo_id}", token, retry)


def put_file(repo_id: str, path_in_repo: str, data: bytes, token: str, message: str,
             retry: RetryPolicy = DEFAULT_RETRY, repo_type: Optional[str] = None) -> None:
    call_with_retries(lambda: _api(token).upload_file(path_or_fileobj=data, path_in_repo=path_in_repo,
                                                      repo_id=repo_id, repo_type=repo_type, commit_message=message),
                      f"writing {path_in_repo} to {repo_id}", token, retry)


def read_file(repo_id: str, path_in_repo: str, token: str, retry: RetryPolicy = DEFAULT_RETRY) -> Optional[bytes]:
    """The file's bytes, or None when the repo has no such file (yet)."""
    from ..hub.client import HubNotFoundError

    try:
        local = call_with_retries(lambda: _api(token).hf_hub_download(repo_id, path_in_repo, token=token),
                                  f"reading {path_in_repo} of {repo_id}", token, retry)
    except HubNotFoundError:
        return None
    return Path(local).read_bytes()


def read_json(repo_id: str, path_in_repo: str, token: str, retry: RetryPolicy = DEFAULT_RETRY) -> Optional[dict]:
    data = read_file(repo_id, path_in_repo, token, retry)
    return json.loads(data) if data else None


def repo_files(repo_id: str, token: str, retry: RetryPolicy = DEFAULT_RETRY) -> list[str]:
    return list(call_with_retries(lambda: _api(token).list_repo_files(repo_id, token=token),
                                  f"listing {repo_id}", token, retry))


def synced_repos(namespace: str, token: str, retry: RetryPolicy = DEFAULT_RETRY) -> list[str]:
    """The namespace's job repos (`<ns>/lora-studio-job-*`), the private ones included (the token's own)."""
    models = call_with_retries(lambda: list(_api(token).list_models(author=namespace, search=SYNC_REPO_PREFIX,
                                                                    token=token)),
                               f"listing {namespace}'s synced jobs", token, retry)
    return [m.id for m in models if m.id.split("/", 1)[-1].startswith(SYNC_REPO_PREFIX)]


def _checkpoint_step(name: str) -> int:
    tail = name.removeprefix(CHECKPOINT_PREFIX)
    return int(tail) if tail.isdigit() else -1


def download_latest_checkpoint(repo_id: str, job_dir: Path, token: str,
                               retry: RetryPolicy = DEFAULT_RETRY) -> Optional[Path]:
    """Bring the repo's latest checkpoint into job_dir/checkpoints/ (what `resume` then finds); None if it has none."""
    names = {p.split("/")[1] for p in repo_files(repo_id, token, retry)
             if p.startswith(CHECKPOINTS_DIR + "/") and p.count("/") >= 2}
    names = {n for n in names if _checkpoint_step(n) >= 0}
    if not names:
        return None
    name = max(names, key=_checkpoint_step)
    download_folder(repo_id, f"{CHECKPOINTS_DIR}/{name}", job_dir, token, retry)
    return job_dir / CHECKPOINTS_DIR / name


def download_folder(repo_id: str, folder: str, dest_root: Path, token: str, retry: RetryPolicy = DEFAULT_RETRY,
                    repo_type: Optional[str] = None) -> Path:
    """repo's `folder`/ -> dest_root/`folder`/ (the repo's layout kept)."""
    call_with_retries(lambda: _api(token).snapshot_download(repo_id, repo_type=repo_type, local_dir=str(dest_root),
                                                            allow_patterns=[f"{folder}/*"] if folder else None,
                                                            token=token),
                      f"downloading {folder or 'everything'} from {repo_id}", token, retry)
    return dest_root / folder


class JobSync:
    """Copies what changed in a job folder to its repo, one commit per sync; `start()` runs it every `every` s."""

    def __init__(self, job_dir: str | Path, repo_id: str, token: str, every: float = 60.0,
                 retry: RetryPolicy = DEFAULT_RETRY):
        self.job_dir, self.repo_id, self.token, self.every, self.retry = Path(job_dir), repo_id, token, every, retry
        self._sent: dict[str, tuple[int, int]] = {}  # path in repo -> (size, mtime_ns) of what was sent
        self._checkpoint: Optional[str] = None        # name of the checkpoint the repo holds
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self.last_error: Optional[str] = None

    def start(self) -> "JobSync":
        self._thread = threading.Thread(target=self._loop, name=f"hub-sync:{self.repo_id}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sync(retry=RetryPolicy(attempts=1))
            except HubError as exc:  # training goes on; the next sync tries again
                self.last_error = str(exc)
                log.warning("hub sync to %s failed (next try in %.0fs): %s", self.repo_id, self.every, exc)

    def close(self, final: bool = True) -> None:
        """Stop the thread; then one last sync with everything (adapter included), retried with backoff."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=600)
        if final:
            self.sync(final=True, retry=self.retry)

    def _changed(self, path: Path, name: str) -> bool:
        st = path.stat()
        return self._sent.get(name) != (st.st_size, st.st_mtime_ns)

    def sync(self, final: bool = False, retry: Optional[RetryPolicy] = None) -> bool:
        """Send what changed since the last sync. True when a commit was made."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        with self._lock:
            ops: list[Any] = []
            sent: dict[str, tuple[int, int]] = {}
            for name in TEXT_FILES:
                path = self.job_dir / name
                if path.is_file() and self._changed(path, name):
                    st = path.stat()
                    text = path.read_text(encoding="utf-8", errors="replace")
                    ops.append(CommitOperationAdd(name, redact(text, self.token).encode("utf-8")))
                    sent[name] = (st.st_size, st.st_mtime_ns)
            latest = latest_checkpoint(self.job_dir)
            if latest is not None and latest.name != self._checkpoint:
                held = {p.split("/")[1] for p in repo_files(self.repo_id, self.token, retry or self.retry)
                        if p.startswith(CHECKPOINTS_DIR + "/") and p.count("/") >= 2}
                if latest.name not in held:  # (a resumed run starts from the one it pulled: nothing to send)
                    ops += [CommitOperationAdd(f"{CHECKPOINTS_DIR}/{latest.name}/{p.relative_to(latest).as_posix()}",
                                               str(p)) for p in sorted(latest.rglob("*")) if p.is_file()]
                ops += [CommitOperationDelete(f"{CHECKPOINTS_DIR}/{name}/", is_folder=True)
                        for name in sorted(held - {latest.name})]
            adapter = self.job_dir / ADAPTER_DIR
            if final and adapter.is_dir():
                for p in sorted(adapter.rglob("*")):
                    name = f"{ADAPTER_DIR}/{p.relative_to(adapter).as_posix()}"
                    if p.is_file() and self._changed(p, name):
                        ops.append(CommitOperationAdd(name, str(p)))
                        st = p.stat()
                        sent[name] = (st.st_size, st.st_mtime_ns)
            if not ops:
                if latest is not None:
                    self._checkpoint = latest.name
                return False
            step = self._last_step()
            message = f"sync{' (final)' if final else ''}: step {step}" if step is not None else "sync"
            call_with_retries(lambda: _api(self.token).create_commit(self.repo_id, ops, commit_message=message),
                              f"syncing the job to {self.repo_id}", self.token, retry or self.retry)
            self._sent.update(sent)
            if latest is not None:
                self._checkpoint = latest.name
            self.last_error = None
            return True

    def _last_step(self) -> Optional[int]:
        events = self.job_dir / EVENTS_FILE
        if not events.is_file():
            return None
        step = None
        for line in events.read_text(encoding="utf-8", errors="replace").splitlines()[-50:]:
            record = parse_line(line)
            step = getattr(record, "step", None) if isinstance(record, STEP_EVENTS) else step
        return step


def _is_rank_zero() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def synced_job(spec: Any, events: Any = None) -> Iterator[Optional[JobSync]]:
    """Keep `spec`'s job on the Hub while the block trains (no-op unless spec.synced; rank 0 only).

    Before training: the repo exists (private), the manifest says whose job it is, and a resume with no checkpoint
    on this disk (a Space restarted empty, a new HF Job) gets the repo's latest one. After: a last full sync."""
    import os

    from ..job_files import JOB_ID_ENV, JOB_OWNER_ENV
    from .client import resolve_token
    from .jobs_api import whoami

    if not spec.synced or not _is_rank_zero():
        yield None
        return
    job_id = os.environ.get(JOB_ID_ENV) or spec.project_name
    job_dir = spec.job_dir
    try:
        token = resolve_token(spec.hub.token)
        repo_id = spec.hub.sync_repo or default_sync_repo(spec.compute.namespace or whoami(token), job_id)
        ensure_repo(repo_id, token)
        manifest = {"job_id": job_id, "name": spec.project_name, "owner": os.environ.get(JOB_OWNER_ENV) or None,
                    "backend": spec.compute.backend}
        if read_json(repo_id, MANIFEST_FILE, token) != manifest:
            put_file(repo_id, MANIFEST_FILE, json.dumps(manifest, indent=1).encode(), token, "job manifest")
        # a fresh folder (a new HF Job, an emptied disk) continues the history (a sweep: its study and record)
        for name in (EVENTS_FILE, LOG_FILE, SWEEP_FILE, SWEEP_STUDY_FILE):
            if not (job_dir / name).exists() and (held := read_file(repo_id, name, token)) is not None:
                job_dir.mkdir(parents=True, exist_ok=True)
                (job_dir / name).write_bytes(held)
        if spec.training.resume_from_checkpoint and latest_checkpoint(job_dir) is None:
            pulled = download_latest_checkpoint(repo_id, job_dir, token)
            if pulled is None and spec.training.resume_from_checkpoint == "latest":
                spec.training.resume_from_checkpoint = None  # nothing saved yet anywhere: start over
            if events is not None:
                events.write(CheckpointPulled(repo_id=repo_id, checkpoint=pulled.name if pulled else None))
    except HubError as exc:  # before any GPU time: the job asked to be kept on the Hub and cannot be
        if events is not None:
            events.write(Failed(error=f"hub.sync: {exc}", kind="hub"))
        raise
    sync = JobSync(job_dir, repo_id, token, every=spec.hub.sync_every).start()
    try:
        yield sync
    finally:
        try:
            sync.close(final=True)
        except HubError as exc:  # the run's outcome stands; the folder is still on disk
            log.warning("last hub sync to %s failed: %s", repo_id, exc)
            if events is not None:
                events.write(SyncFailed(repo_id=repo_id, error=str(exc)))
