"""The supervisor: a small detached process that runs queued jobs in order, one (or N) at a time.

`python -m trainer_backend.jobs.supervisor --data-dir D`. Started on demand by `ensure_supervisor` (from
`submit`, the UI, any `jobs` command) in its own session, so it keeps going after the CLI or the UI
exits. An exclusive flock on D/supervisor.lock makes it a singleton per data dir; it exits once nothing
is queued or running. It never imports torch: the training itself runs in a child process group.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Optional

from ..job_files import DATA_DIR_ENV, JOB_ID_ENV, JOB_OWNER_ENV, LOG_FILE_ENV, PREPARED_DATA_DIR
from ..access import HF_TOKEN_ENV, NO_HUB_TOKEN, on_space
from ..settings import settings
from . import lifecycle, tokens
from .paths import default_data_dir, default_max_concurrent
from ..training.launch import trains_here, training_command
from .procs import is_alive, launch, process_start_time, signal_group, train_niceness
from .progress import EventsReader, file_size
from .store import ACTIVE, FAILED, QUEUED, RUNNING, STOPPED, STOPPING, Job, JobStore

LOCK_FILE = "supervisor.lock"
LOG_FILE = "supervisor.log"
POLL_SECONDS = 0.2         # how quickly exits, stop requests and new submissions are noticed
PROGRESS_EVERY_SECONDS = 2.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # so children import this very checkout


class SupervisorLock:
    """flock-based singleton. The kernel drops the lock when its holder dies, even by SIGKILL."""

    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / LOCK_FILE
        self._fh: Optional[IO[str]] = None

    def acquire(self) -> bool:
        if self._fh is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def is_held_elsewhere(self) -> bool:
        if self._fh is not None:
            return False
        if self.acquire():
            self.release()
            return False
        return True


def child_env(extra: Optional[dict] = None) -> dict[str, str]:
    env = {**os.environ, **{k: str(v) for k, v in (extra or {}).items()}, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    return env


def _prepared_cache_env(data_dir: Path) -> dict[str, str]:
    """Training processes reuse the data the app prepared (Check data, then Start): the cache of this data dir,
    whatever their working directory."""
    from ..data.prepared_cache import CACHE_ENV

    return {} if settings().prepared_cache else {CACHE_ENV: str(data_dir.resolve() / PREPARED_DATA_DIR)}


def ensure_supervisor(data_dir: str | Path, max_concurrent: Optional[int] = None) -> Optional[int]:
    """Start a supervisor for `data_dir` unless one is running. Returns the new pid, or None.

    A supervisor that is exiting re-checks the queue after dropping its lock, so a job inserted before
    this call is never stranded: either that re-check sees it, or we see the lock free and start one.
    """
    data_dir = Path(data_dir)
    if SupervisorLock(data_dir).is_held_elsewhere():
        return None
    cmd = [sys.executable, "-m", "trainer_backend.jobs.supervisor", "--data-dir", str(data_dir)]
    if max_concurrent:
        cmd += ["--max-concurrent", str(max_concurrent)]
    with open(data_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=str(data_dir), env=child_env(_prepared_cache_env(data_dir)),
                                start_new_session=True, close_fds=True)
    # Reap it when it exits so a long-lived caller (the UI) does not collect zombies; daemon: never blocks exit.
    threading.Thread(target=proc.wait, name=f"reap-supervisor-{proc.pid}", daemon=True).start()
    return proc.pid


class Supervisor:
    def __init__(self, data_dir: str | Path, max_concurrent: Optional[int] = None,
                 poll_seconds: float = POLL_SECONDS):
        self.data_dir = Path(data_dir)
        self.store = JobStore(self.data_dir)
        self.lock = SupervisorLock(self.data_dir)
        self.max_concurrent = max_concurrent or default_max_concurrent()
        self.poll_seconds = poll_seconds
        self.children: dict[str, subprocess.Popen] = {}
        self.readers: dict[str, EventsReader] = {}
        self.progress_at: dict[str, float] = {}
        self.hard_killed: set[str] = set()
        self.slot_kind: dict[str, bool] = {}  # job id -> does it train on this machine

    def log(self, message: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [supervisor {os.getpid()}] {message}", flush=True)

    # ---- main loop ---------------------------------------------------------------------------------
    def run(self) -> int:
        if not self.lock.acquire():
            self.log("another supervisor owns this data dir; exiting")
            return 0
        self.log(f"started (data dir {self.data_dir}, max concurrent {self.max_concurrent})")
        try:
            self._recover()
            while True:
                try:
                    self.tick()
                except Exception:  # e.g. a database locked for too long: log it, keep supervising
                    self.log("error in the supervision loop (continuing):\n" + traceback.format_exc())
                    time.sleep(1.0)
                    continue
                if self.children or self.store.count((*ACTIVE, QUEUED)):
                    time.sleep(self.poll_seconds)
                    continue
                # Idle: drop the lock, then look once more (see ensure_supervisor for why this order).
                self.lock.release()
                if not self.store.count((*ACTIVE, QUEUED)) or not self.lock.acquire():
                    self.log("queue empty; exiting")
                    self._pause_space_if_asked()
                    return 0
                self._recover()
        finally:
            self.lock.release()

    def _pause_space_if_asked(self) -> None:
        """On a paid-GPU Space, pause it once the queue is empty when the last job asked for that (off by
        default): an idle GPU costs money. Needs HF_TOKEN with write access to the Space."""
        space = os.environ.get("SPACE_ID")
        last = next(iter(self.store.list(limit=1)), None)
        spec = last.job_spec if last else None
        if not (space and spec and spec.hub.pause_space_when_idle):
            return
        try:
            from huggingface_hub import HfApi

            HfApi(token=tokens.read(self.data_dir, tokens.SPACE_KEY)).pause_space(space)
            self.log(f"paused Space {space} (hub.pause_space_when_idle)")
        except Exception as exc:  # never fatal; the message carries no token
            self.log(f"could not pause Space {space}: {type(exc).__name__}")

    def _recover(self) -> None:
        for job in lifecycle.recover(self.store):
            if job.id not in self.children:
                self.store.update(job.id, supervisor_pid=os.getpid())
                self.log(f"re-attached job {job.id} (pid {job.pid} still training)")

    def tick(self) -> None:
        now = time.time()
        for job in self.store.active():
            if self._ended(job):
                continue
            if job.status == STOPPING:
                self._enforce_stop(job, now)
            if now - self.progress_at.get(job.id, 0.0) >= PROGRESS_EVERY_SECONDS:
                self._store_progress(job, now)
        tokens.sweep(self.data_dir, [j.id for j in self.store.list((*ACTIVE, QUEUED))])  # ended: forgotten
        while (claimed := self._claim_next()) is not None:
            self._start(claimed)

    # ---- one job -----------------------------------------------------------------------------------
    def _ended(self, job: Job) -> bool:
        """Finalize `job` if its process is gone. Children give an exit code; adopted ones only events."""
        proc = self.children.get(job.id)
        if proc is not None:
            if not _exited(proc):
                return False
            lifecycle.kill_leftovers(job)  # the exited leader still holds its pid, so its group is ours
            code: Optional[int] = proc.wait()
        elif job.pid and is_alive(job.pid, job.pid_start):
            return False  # re-attached process, still training
        elif job.pid is None and job.supervisor_pid == os.getpid():
            return False  # claimed by us a moment ago; _start is about to record the pid
        else:  # adopted at a restart, now gone: no exit code, only its events (an HF Jobs run re-attaches)
            code = None
        final = lifecycle.finalize(self.store, job, code) if proc is not None else \
            lifecycle.ended_unwatched(self.store, job)
        if final is not None and final.is_terminal:
            tokens.forget(self.data_dir, job.id)  # the job has ended: its Hub token is gone with it
        self.children.pop(job.id, None)
        self.readers.pop(job.id, None)
        if final is None and self.store.status_of(job.id) == QUEUED:
            self.log(f"job {job.id}: its runner is gone while its HF Job runs on; queued to re-attach")
        if final is not None:
            took = f" in {final.finished_at - final.started_at:.1f}s" if final.started_at and final.finished_at else ""
            self.log(f"job {job.id} {final.status} (exit code {code}){took}"
                     + (f": {final.error}" if final.error else ""))
        return True

    def _hand_token(self, job: Job, env: dict[str, str]) -> None:
        """The training process acts with the job's own Hub token (tokens.py) as its HF_TOKEN. On a Space
        without one it has none at all: never the Space's, never an implicit login."""
        token = tokens.read(self.data_dir, job.id)
        if token:
            env[HF_TOKEN_ENV] = token
            return
        if not on_space():
            return  # one person's machine: their HF_TOKEN / login, as for every CLI run
        env.pop(HF_TOKEN_ENV, None)
        env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
        if job.hub_identity and job.hub_identity != NO_HUB_TOKEN:
            with open(job.log_path, "a", encoding="utf-8") as log:
                log.write(f"The Hub token of {job.hub_identity} is gone (the app restarted since the job was "
                          "queued; tokens are never written to disk): Hub steps run without one. Resume the job "
                          "or push it from the Jobs tab while signed in.\n")

    def _enforce_stop(self, job: Job, now: float) -> None:
        if job.pid and not job.term_sent and is_alive(job.pid, job.pid_start) and self.store.claim_term(job.id):
            signal_group(job.pid, signal.SIGTERM)
            self.log(f"job {job.id}: SIGTERM sent to process group {job.pid}")
        if job.pid and job.stop_deadline and now >= job.stop_deadline and job.id not in self.hard_killed:
            self.hard_killed.add(job.id)
            if is_alive(job.pid, job.pid_start):
                signal_group(job.pid, signal.SIGKILL)
                self.log(f"job {job.id}: still running at the stop deadline; SIGKILL to group {job.pid}")

    def _store_progress(self, job: Job, now: float) -> None:
        reader = self.readers.get(job.id)
        if reader is None:
            reader = self.readers[job.id] = EventsReader(job.events_path, job.events_offset)
        if reader.poll() or job.id not in self.progress_at:
            self.store.update(job.id, progress=reader.snapshot().summary())
        self.progress_at[job.id] = now

    def _trains_here(self, job: Job) -> bool:
        """Does the job take a slot of this machine (training.launch.trains_here)? Remembered per job: its spec
        does not change while it is queued or running."""
        if job.id not in self.slot_kind:
            spec = job.job_spec
            self.slot_kind[job.id] = spec is None or trains_here(spec)
        return self.slot_kind[job.id]

    def _claim_next(self) -> Optional[Job]:
        """The next queued job that may start now: one that trains here waits for a free slot (max_concurrent);
        a sweep's driver and an HF Jobs runner never wait for one (they train nothing here)."""
        busy = sum(1 for j in self.store.active() if self._trains_here(j))
        for job in self.store.queue():
            if busy >= self.max_concurrent and self._trains_here(job):
                continue
            claimed = self.store.update(
                job.id, only_if_status=(QUEUED,), status=RUNNING, started_at=time.time(), finished_at=None,
                supervisor_pid=os.getpid(), attempt=job.attempt + 1, pid=None, pid_start=None, exit_code=None,
                term_sent=0, stop_requested_at=None, stop_deadline=None, error=None, error_details=None,
                run_events_offset=max(file_size(job.events_path), job.events_offset))
            if claimed:  # else a stop (or another writer) got to it first: try the next one
                return self.store.get(job.id)
        return None

    def _start(self, job: Job) -> None:
        if self.store.update(job.id, only_if_status=(STOPPING,), status=STOPPED, finished_at=time.time()):
            self.log(f"job {job.id}: stop requested before it started; not launched")
            return
        try:
            cmd = training_command(job.spec_path)
            cwd = job.cwd if job.cwd and Path(job.cwd).is_dir() else job.job_dir
            Path(job.job_dir).mkdir(parents=True, exist_ok=True)
            header = f"\n===== attempt {job.attempt} at {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n"
            with open(job.log_path, "a", encoding="utf-8") as log:
                log.write(header)
            # Raw stdout/stderr (library chatter, progress bars) go to debug.log; the process writes the
            # person's log itself, through the filter of training/run_log.py.
            with open(job.debug_log_path, "ab") as debug:
                debug.write(header.encode())
                debug.flush()
                env = child_env({**(job.env or {}), JOB_ID_ENV: job.id, JOB_OWNER_ENV: job.owner or "",
                                 LOG_FILE_ENV: str(job.log_path), DATA_DIR_ENV: str(self.data_dir)})
                self._hand_token(job, env)
                proc = launch(cmd, debug, cwd, env, niceness=train_niceness(env))
        except Exception as exc:  # the row must not stay "running" without a process
            self.store.update(job.id, only_if_status=ACTIVE, status=FAILED, finished_at=time.time(),
                              error=f"could not start the training process: {exc}")
            self.log(f"job {job.id}: launch failed: {exc}")
            return
        self.children[job.id] = proc
        started = process_start_time(proc.pid)
        # -1: the process was already gone, so recovery must never mistake a reused pid for it.
        self.store.update(job.id, pid=proc.pid, pid_start=started if started is not None else -1.0)
        self.log(f"job {job.id}: started pid {proc.pid} ({cmd[2]}), attempt {job.attempt}")


def _exited(proc: subprocess.Popen) -> bool:
    """Has the child exited? Checked without reaping it, so its pid (= its process group id) cannot be
    reused until we have cleaned the group up."""
    if hasattr(os, "waitid"):
        try:
            return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True
    return proc.poll() is not None


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer_backend.jobs.supervisor")
    p.add_argument("--data-dir", help="job store folder (default: $LORA_STUDIO_DATA_DIR, /data/lora-studio, "
                                      "./lora-studio-data)")
    p.add_argument("--max-concurrent", type=int, help="training jobs run at once (default 1)")
    args = p.parse_args(argv)
    return Supervisor(default_data_dir(args.data_dir), args.max_concurrent).run()


if __name__ == "__main__":
    sys.exit(main())
