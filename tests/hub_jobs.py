"""Hugging Face Jobs on the loopback Hub: the routes huggingface_hub 2.4's `run_job`, `inspect_job`, `list_jobs`,
`fetch_job_logs`, `fetch_job_metrics`, `cancel_job` and `list_jobs_hardware` call, and a Job that really runs.

  GET  /api/jobs/hardware                     -> flavors with prices (the Hub's field names)
  POST /api/jobs/{ns}                         -> start a Job: its command runs in a local subprocess
  GET  /api/jobs/{ns}                         -> the namespace's Jobs
  GET  /api/jobs/{ns}/{id}                    -> one Job (stage SCHEDULING | RUNNING | COMPLETED | ERROR | CANCELED)
  GET  /api/jobs/{ns}/{id}/logs               -> server-sent events `data: {"data": line, "timestamp": ...}`
  GET  /api/jobs/{ns}/{id}/metrics            -> server-sent events (none: no accelerator here)
  POST /api/jobs/{ns}/{id}/cancel             -> the Job's process group is killed, stage CANCELED

The image is ignored: the command runs with this checkout on PYTHONPATH, `python` = the test's interpreter, the
Job's `environment` plus its `secrets`, HF_ENDPOINT = this server, in its own empty working folder — as a container
would start. Secrets are never returned (the Hub answers with their names only). A Job in a `network` group gets
HF_NETWORK_GROUP_PREFIX / HF_NETWORK_GROUP_HOSTNAME, and its aliases resolve to 127.0.0.1 (see `alias_host`).
"""
from __future__ import annotations

import json
import os
import secrets as pysecrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from hub_state import HubError

REPO_ROOT = Path(__file__).resolve().parents[1]
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
HARDWARE = [  # name, pretty name, cpu, ram, accelerator (model, count, vram) or None, USD per minute
    ("cpu-basic", "CPU Basic", "2 vCPU", "16 GB", None, 0.0001667),
    ("cpu-upgrade", "CPU Upgrade", "8 vCPU", "32 GB", None, 0.0005),
    ("t4-small", "Nvidia T4 - small", "4 vCPU", "15 GB", ("T4", 1, "16 GB"), 0.0066667),
    ("a10g-small", "Nvidia A10G - small", "4 vCPU", "15 GB", ("A10G", 1, "24 GB"), 0.0166667),
    ("a10g-largex2", "2x Nvidia A10G - large", "24 vCPU", "92 GB", ("A10G", 2, "48 GB"), 0.05),
    ("h100", "Nvidia H100", "23 vCPU", "240 GB", ("H100", 1, "80 GB"), 0.075),
]


def _iso(t: Optional[float]) -> Optional[str]:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if t else None


@dataclass
class LoopbackJob:
    id: str
    owner: str
    spec: dict[str, Any]
    created: float
    workdir: Path
    stage: str = "SCHEDULING"
    message: Optional[str] = None
    started: Optional[float] = None
    finished: Optional[float] = None
    proc: Optional[subprocess.Popen] = None
    lines: list[tuple[float, str]] = field(default_factory=list)
    cancel_requested: bool = False

    def info(self, base_url: str) -> dict[str, Any]:
        spec = self.spec
        out = {"id": self.id, "createdAt": _iso(self.created), "startedAt": _iso(self.started),
               "finishedAt": _iso(self.finished), "dockerImage": spec.get("dockerImage"),
               "spaceId": spec.get("spaceId"), "command": spec.get("command"), "arguments": spec.get("arguments"),
               "environment": spec.get("environment") or {},
               "secrets": {k: "***" for k in (spec.get("secrets") or {})},  # names only, as the Hub answers
               "flavor": spec.get("flavor"), "labels": spec.get("labels"),
               "status": {"stage": self.stage, "message": self.message},
               "owner": {"id": f"id-{self.owner}", "name": self.owner, "type": "user"},
               "initiator": {"type": "user", "id": f"id-{self.owner}", "name": self.owner}}
        if spec.get("network"):
            out["network"] = spec["network"]
        if spec.get("timeoutSeconds"):
            out["timeoutSeconds"] = spec["timeoutSeconds"]
        return out


class LoopbackJobs:
    """The Jobs of one loopback Hub. `python` for Job commands is `python_executable` (default: this one)."""

    def __init__(self, hub_url: str, python_executable: str = sys.executable):
        self.hub_url = hub_url
        self.python = python_executable
        self.jobs: dict[str, LoopbackJob] = {}
        self.lock = threading.RLock()
        self.root = Path(tempfile.mkdtemp(prefix="loopback-jobs-"))
        self.extra_env: dict[str, str] = {}  # tests add e.g. thread caps for the Job processes

    # ---- routes -----------------------------------------------------------------------------------
    def route(self, method: str, path: str, body: bytes, user: Optional[str]) -> Optional[tuple[int, dict, Any]]:
        parts = path.strip("/").split("/")  # api, jobs, ...
        if parts[:2] != ["api", "jobs"]:
            return None
        if parts[2:] == ["hardware"] and method == "GET":
            return 200, {}, [self._flavor(*h) for h in HARDWARE]
        if user is None:
            raise HubError(401, "You must be authenticated to use Jobs")
        if len(parts) < 3:
            raise HubError(404, "no such route")
        ns = parts[2]
        if ns != user:
            raise HubError(403, f"You don't have the rights to run Jobs in {ns}")
        if len(parts) == 3 and method == "POST":
            return 200, {}, self.start(ns, json.loads(body or b"{}"))
        if len(parts) == 3 and method == "GET":
            with self.lock:
                return 200, {}, [j.info(self.hub_url) for j in self.jobs.values() if j.owner == ns]
        job = self.jobs.get(parts[3]) if len(parts) > 3 else None
        if job is None or job.owner != ns:
            raise HubError(404, "Job not found")
        rest = parts[4:]
        if not rest and method == "GET":
            return 200, {}, job.info(self.hub_url)
        if rest == ["logs"] and method == "GET":
            events = [f'data: {json.dumps({"data": line, "timestamp": _iso(t)})}\n\n' for t, line in list(job.lines)]
            return 200, {"Content-Type": "text/event-stream"}, "".join(events).encode()
        if rest == ["metrics"] and method == "GET":
            return 200, {"Content-Type": "text/event-stream"}, b""
        if rest == ["cancel"] and method == "POST":
            self.cancel(job)
            return 200, {}, {}
        raise HubError(404, f"no route for {method} {path}")

    @staticmethod
    def _flavor(name: str, pretty: str, cpu: str, ram: str, acc: Optional[tuple], per_minute: float) -> dict:
        out: dict[str, Any] = {"name": name, "prettyName": pretty, "cpu": cpu, "ram": ram, "ephemeralStorage": "50 GB",
                               "unitCostMicroUSD": int(round(per_minute * 1e6)), "unitCostUSD": per_minute,
                               "unitLabel": "minute", "accelerator": None}
        if acc:
            out["accelerator"] = {"type": "gpu", "model": acc[0], "quantity": str(acc[1]), "vram": acc[2],
                                  "manufacturer": "Nvidia"}
        return out

    # ---- running --------------------------------------------------------------------------------
    def start(self, owner: str, spec: dict[str, Any]) -> dict[str, Any]:
        if spec.get("flavor") not in {h[0] for h in HARDWARE}:
            raise HubError(400, f"Unknown flavor {spec.get('flavor')!r}")
        if not spec.get("command"):
            raise HubError(400, "command is required")
        job_id = pysecrets.token_hex(12)
        job = LoopbackJob(job_id, owner, spec, time.time(), self.root / job_id)
        job.workdir.mkdir(parents=True)
        with self.lock:
            self.jobs[job_id] = job
        threading.Thread(target=self._run, args=(job,), name=f"loopback-job-{job_id}", daemon=True).start()
        return job.info(self.hub_url)

    def _env(self, job: LoopbackJob) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if k in ("LANG", "LC_ALL", "TMPDIR", "PIP_CONFIG_FILE") or k.startswith("OMP_")}
        env = {**keep, "PATH": f"{Path(self.python).parent}{os.pathsep}/usr/bin:/bin", "HOME": str(job.workdir),
               "HF_HOME": str(job.workdir / ".hf"), "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "CUDA_VISIBLE_DEVICES": "", **self.extra_env}
        env.update({k: str(v) for k, v in (job.spec.get("environment") or {}).items()})
        env.update({k: str(v) for k, v in (job.spec.get("secrets") or {}).items()})
        network = job.spec.get("network")
        if network:  # every member and alias of the group is this machine
            env["HF_NETWORK_GROUP_PREFIX"] = ""
            env["HF_NETWORK_GROUP_HOSTNAME"] = "127.0.0.1"
        env["HF_ENDPOINT"] = self.hub_url  # a Job talks to the Hub that started it
        return env

    def _run(self, job: LoopbackJob) -> None:
        command = [self.python if c == "python" else c for c in job.spec["command"]] + list(job.spec.get("arguments")
                                                                                            or [])
        job.lines.append((time.time(), "===== Job started ====="))
        try:
            proc = subprocess.Popen(command, cwd=job.workdir, env=self._env(job), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            job.stage, job.message, job.finished = "ERROR", f"could not start: {exc}", time.time()
            return
        with self.lock:
            job.proc, job.stage, job.started = proc, "RUNNING", time.time()
            if job.cancel_requested:
                self._kill(job)
        timeout = job.spec.get("timeoutSeconds")
        if timeout:
            threading.Timer(timeout, self._time_out, args=(job,)).start()
        assert proc.stdout is not None
        for raw in proc.stdout:
            job.lines.append((time.time(), raw.decode("utf-8", "replace").rstrip("\n")))
        code = proc.wait()
        with self.lock:
            job.finished = time.time()
            if job.stage == "RUNNING":
                job.stage = "COMPLETED" if code == 0 else "ERROR"
                job.message = None if code == 0 else f"exit code {code}"

    def _kill(self, job: LoopbackJob) -> None:
        if job.proc is not None and job.proc.poll() is None:
            try:
                os.killpg(job.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _time_out(self, job: LoopbackJob) -> None:
        with self.lock:
            if job.stage in TERMINAL:
                return
            job.stage, job.message = "ERROR", "Job timeout"
            self._kill(job)

    def cancel(self, job: LoopbackJob) -> None:
        with self.lock:
            job.cancel_requested = True
            if job.stage not in TERMINAL:
                job.stage, job.message = "CANCELED", "canceled by the user"
            self._kill(job)

    def stop_all(self) -> None:
        """Kill every Job still running (the server is going away; nothing may outlive a test)."""
        with self.lock:
            for job in self.jobs.values():
                self._kill(job)

    def all_text(self) -> list[tuple[str, str]]:
        """(where, text) of everything a Job exposes: its public info and its log lines (for secret greps)."""
        out = []
        with self.lock:
            for job in self.jobs.values():
                out.append((f"job {job.id} info", json.dumps(job.info(self.hub_url))))
                out.append((f"job {job.id} logs", "\n".join(line for _, line in job.lines)))
        return out
