"""Restart recovery without training: what becomes of a job whose process ended while nobody watched it.

Rows are written straight into a job store; the processes are tiny Pythons and sleeps, so this runs in
the fast subset. Real restarts (a killed app and supervisor) are in test_jobs.py and test_hf_jobs.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from trainer_backend.jobs import JobManager
from trainer_backend.jobs.supervisor import Supervisor

HF_JOBS_SPEC = {"model": {"base_model": "org/base"}, "data": {"path": "train.jsonl"},
                "compute": {"backend": "hf_jobs", "flavor": "a10g-small", "timeout": "2h"}}


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def _row(jm: JobManager, tmp_path: Path, name: str, status: str, pid: int, start: float, **kw: Any) -> str:
    job_dir = tmp_path / name
    job_dir.mkdir(parents=True, exist_ok=True)
    return jm.store.create(name=name, status=status, job_dir=str(job_dir), pid=pid, pid_start=start, **kw).id


def test_recovery_detects_dead_and_reused_pids(tmp_path: Path) -> None:
    jm = JobManager(tmp_path / "store", autostart=False)
    me = psutil.Process()
    gone = _row(jm, tmp_path, "gone", "running", _dead_pid(), 1.0)
    reused = _row(jm, tmp_path, "reused", "running", me.pid, me.create_time() - 100)  # a live pid, not ours
    stopping = _row(jm, tmp_path, "stopping", "stopping", _dead_pid(), 1.0, stop_requested_at=time.time())
    queued = jm.store.create(name="q", status="queued", job_dir=str(tmp_path / "q")).id
    jm.reconcile()
    assert jm.get(gone).status == jm.get(reused).status == "interrupted" and "resume" in jm.get(gone).error
    assert jm.get(stopping).status == "stopped"  # it was being stopped: that is what the user asked for
    assert jm.get(queued).status == "queued" and jm.stop(queued).status == "stopped"  # a queued job just stops


def test_an_hf_jobs_run_whose_runner_died_is_queued_to_reattach_unless_it_had_ended(tmp_path: Path) -> None:
    """The HF Job runs on without its local runner: queued again (the new runner re-attaches), never
    'interrupted' -- at a restart, and when a runner the supervisor adopted dies later. A runner that recorded
    its outcome before dying is finalized from it, not sent back to a finished Job."""
    jm = JobManager(tmp_path / "store", autostart=False)
    lost = _row(jm, tmp_path, "lost", "running", _dead_pid(), 1.0, spec=HF_JOBS_SPEC)
    ended = _row(jm, tmp_path, "ended", "running", _dead_pid(), 1.0, spec=HF_JOBS_SPEC)
    (tmp_path / "ended" / "events.jsonl").write_text(json.dumps({"event": "finished", "metrics": {}}) + "\n")
    jm.reconcile()
    assert jm.get(lost).status == "queued" and jm.get(lost).pid is None
    assert jm.get(ended).status == "succeeded"

    runner = subprocess.Popen(["sleep", "30"])  # a runner that was alive at the restart, so it was adopted
    try:
        adopted = _row(jm, tmp_path, "adopted", "running", runner.pid, psutil.Process(runner.pid).create_time(),
                       spec=HF_JOBS_SPEC)
        supervisor = Supervisor(tmp_path / "store")
        assert not supervisor._ended(jm.get(adopted)), "alive: still watched"
        runner.kill()
        runner.wait()
        assert supervisor._ended(jm.get(adopted))
        assert jm.get(adopted).status == "queued", "its HF Job runs on: queued so that a runner re-attaches"
    finally:
        runner.kill()
