"""Work on a finished job that outlives the request that started it (an export, an evaluation report).

Each runs as `python -m <module> <job dir> ...` in its own session, so closing the browser tab, a dropped
connection or an app restart does not stop it; it writes its own progress file, which is what everyone reads.
The caller's Hub token goes to the process in its environment only: never on its command line, never in a file.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

R = TypeVar("R")

from .access import HF_TOKEN_ENV


def pid_alive(pid: Optional[int]) -> bool:
    """Is process `pid` running (a zombie, ended but not yet reaped, is not)?"""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def token_env(token: "str | bool | None") -> dict[str, str]:
    """This process's environment for a child acting with `token`: the caller's own (str), none at all (False:
    never someone else's token, nor an implicit login), or this machine's login (None: the CLI off a Space)."""
    env = dict(os.environ)
    if isinstance(token, str):
        env[HF_TOKEN_ENV] = token
    elif token is False:
        env.pop(HF_TOKEN_ENV, None)
        env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def start_detached(module: str, args: Sequence[str], job_dir: Path, log: Path, token: "str | bool | None",
                   on_exit: Optional[Callable[[int], None]] = None) -> int:
    """Start `python -m module args...` in a new session with its output appended to `log`; returns its pid.
    `on_exit(code)` runs in a thread once it ends (the process is reaped: no zombie)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=token_env(token), start_new_session=True,
                                cwd=str(job_dir))

    def reap() -> None:
        code = proc.wait()
        if on_exit:
            on_exit(code)

    threading.Thread(target=reap, daemon=True).start()
    return proc.pid


def wait_until_settled(read: Callable[[], Optional[R]], timeout: float, interval: float = 1.0) -> Optional[R]:
    """Poll `read` (a record with a `state`) until it is no longer running, or `timeout` seconds; the last read."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        record: Any = read()
        if record is not None and record.state != "running":
            return record
        time.sleep(interval)
    return read()
