"""Process plumbing: launching a training process in its own process group, telling our process from a
reused pid, signalling whole groups, and choosing `python` vs `accelerate launch`."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import IO, Optional, Sequence

import psutil  # a dependency of accelerate, so always installed with the training stack

from ..settings import read, settings

# Two processes started this close together cannot share a pid, so this tolerance only absorbs float noise.
_START_TOLERANCE = 0.05


def process_start_time(pid: Optional[int]) -> Optional[float]:
    """Start time of a live (non-zombie) process, or None when there is no such process."""
    if not pid or pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:  # exited, just not reaped yet
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def is_alive(pid: Optional[int], start_time: Optional[float] = None) -> bool:
    """Is `pid` running, and (given its recorded start time) still the same process, not a reused pid?"""
    started = process_start_time(pid)
    if started is None:
        return False
    return start_time is None or abs(started - start_time) < _START_TOLERANCE


def signal_group(pgid: Optional[int], sig: int) -> bool:
    """Send `sig` to a whole process group (launcher, every rank, any helper). False if none was there."""
    if not pgid or pgid <= 1:  # never signal our own group by accident (0) or init's (1)
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def group_members(pgid: int) -> list[int]:
    """Live processes in a process group (used to prove nothing is left behind)."""
    out = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.info["pid"]) == pgid:
                out.append(proc.info["pid"])
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return out


# Training runs (default 10) "nicer" than the web server and the supervisor (POSIX niceness, 0..19), so a
# status request is answered promptly while a job keeps the CPU busy. LORA_STUDIO_TRAIN_NICE sets it;
# 0 turns it off. On a GPU box it costs nothing: the GPU does the work, the CPU mostly waits.
def train_niceness(env: Optional[dict[str, str]] = None) -> int:
    """How much to lower the training process's CPU priority (LORA_STUDIO_TRAIN_NICE, default 10), as set in
    `env` (a job's own environment) else in ours."""
    return int(read("train_nice", env)) if env is not None else settings().train_nice


def launch(cmd: Sequence[str], log: IO[bytes], cwd: str | Path, env: dict[str, str],
           niceness: int = 0) -> subprocess.Popen:
    """Start `cmd` as the leader of a new session/process group (so one killpg reaches every rank, and a
    Ctrl-C or hang-up in the launching terminal never reaches training), `niceness` steps below our priority
    (inherited by every process it starts: launcher, ranks, data workers)."""
    def lower_priority() -> None:  # runs in the child between fork and exec: nothing but the syscall
        os.nice(niceness)

    return subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            cwd=str(cwd), env=env, start_new_session=True, close_fds=True,
                            preexec_fn=lower_priority if niceness > 0 and hasattr(os, "nice") else None)


def signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"
