"""A job's Hub token, from the app that accepted the job to the training process that acts with it.

Never in the job store, the job folder, its logs or its events: one file per job, readable by this user only, in a
folder of the machine's memory (/dev/shm where there is one, else the temp folder) named after the data dir. The
supervisor hands it to the job's training process as that process's HF_TOKEN and deletes it once the job has
ended (sweep); a restart of the machine forgets every one of them. A job that finds its token gone runs without
one: its Hub steps fail with a clear message and nothing it made is lost (the push can be retried from Jobs).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterable, Optional

SPACE_KEY = "space"  # the Space's own token (its owner's), for the supervisor's housekeeping (pausing the Space)
_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def token_dir(data_dir: str | Path) -> Path:
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    return base / f"lora-studio-tokens-{os.getuid()}-{digest}"


def _path(data_dir: str | Path, key: str) -> Path:
    if not _KEY.fullmatch(key):
        raise ValueError(f"bad token key {key!r}")
    return token_dir(data_dir) / key


def keep(data_dir: str | Path, key: str, token: str) -> None:
    """Write atomically, mode 0600 from the start (never readable by others, not even for a moment)."""
    folder = token_dir(data_dir)
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    tmp = folder / f".{key}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token)
    os.replace(tmp, _path(data_dir, key))


def read(data_dir: str | Path, key: str) -> Optional[str]:
    try:
        return _path(data_dir, key).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def forget(data_dir: str | Path, key: str) -> None:
    try:
        _path(data_dir, key).unlink()
    except FileNotFoundError:
        pass


def held(data_dir: str | Path) -> list[str]:
    """Keys of the tokens held now (job ids and SPACE_KEY)."""
    try:
        return sorted(p.name for p in token_dir(data_dir).iterdir() if not p.name.startswith("."))
    except OSError:
        return []


def sweep(data_dir: str | Path, live_job_ids: Iterable[str], grace_seconds: float = 60.0) -> list[str]:
    """Forget the token of every job that is no longer queued or running (the supervisor forgets a job's token
    as it records the end; this catches the rest). `grace_seconds`: a token is kept before its job's row is
    written, so a young file without a live job is left alone. Returns the keys forgotten."""
    live = set(live_job_ids) | {SPACE_KEY}
    now = time.time()
    gone = []
    for key in held(data_dir):
        try:
            young = now - _path(data_dir, key).stat().st_mtime < grace_seconds
        except (OSError, ValueError):
            continue
        if key not in live and not young:
            gone.append(key)
    for key in gone:
        forget(data_dir, key)
    return gone
