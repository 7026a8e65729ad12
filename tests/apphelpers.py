"""Start the real app (python app.py) on 127.0.0.1 for tests, and stop it and everything it started."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

import psutil

# A short training run of the offline tiny model, a few steps: `QUICK.format(name=..., steps=...)`; the dataset comes
# from the call (an upload) or from `data.path`.
QUICK = """
project_name: {name}
model: {{base_model: tiny-demo}}
data: {{chat_template: chatml, max_rows: 30}}
lengths: {{block_size: 128}}
training: {{max_steps: {steps}, batch_size: 2, gradient_accumulation: 1, logging_steps: 1, save_strategy: steps,
           save_steps: 2, eval_strategy: "no"}}
"""

REPO = Path(__file__).resolve().parents[1]


WAIT = 240  # seconds a test waits for a job by default; generous because CI machines are slow and shared


def wait_for(cond: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    """Poll `cond` every 0.1 s until it gives something true, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_mentioning(text: str) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            blob = " ".join(proc.info["cmdline"] or []) + " " + " ".join(
                f"{k}={v}" for k, v in (proc.info.get("environ") or {}).items() if k == "LORA_STUDIO_DATA_DIR")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if text in blob and proc.pid != os.getpid():
            out.append(proc)
    return out


class AppServer:
    """The app in a subprocess with its own data dir; `stop()` kills it, its job supervisor and trainers."""

    def __init__(self, data_dir: Path, env: Optional[dict] = None, startup_timeout: float = 90):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        full_env = {**os.environ, "LORA_STUDIO_DATA_DIR": str(data_dir), "GRADIO_SERVER_NAME": "127.0.0.1",
                    "GRADIO_SERVER_PORT": str(self.port), "GRADIO_ANALYTICS_ENABLED": "False",
                    "PYTHONPATH": str(REPO), **(env or {})}
        self.log = open(data_dir.parent / f"app-{self.port}.log", "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=REPO, env=full_env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() - t0 > startup_timeout:
                self.stop()
                raise RuntimeError(f"app did not start: {(data_dir.parent / f'app-{self.port}.log').read_text()[-3000:]}")
            time.sleep(0.3)
        self.cold_start_seconds = time.monotonic() - t0

    def stop(self) -> list[int]:
        """Stop the app and every process that works on its data dir; returns pids that had to be killed."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        leftovers = processes_mentioning(str(self.data_dir))
        for proc in leftovers:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=10)
        self.log.close()
        return [p.pid for p in leftovers]
