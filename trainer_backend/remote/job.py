"""Inside an HF Job: `python -m trainer_backend.remote.job --repo <ns>/lora-studio-job-<id>`.

Reads the spec and the staging record the runner wrote to the job repo, downloads staged data, and trains with the
same command as a local job (training/launch.py: one process, or accelerate/torchrun over every GPU; with several
nodes, torchrun's multi-node rendezvous at rank 0's alias). The trainer keeps the job folder in sync with the repo
(hub/sync.py). A stop request in the repo (control/stop.json) becomes SIGTERM to the training process group: it
saves a checkpoint and exits, as a local job does. The token comes only from the Job's HF_TOKEN secret.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import yaml

from ..hub import sync as hubsync
from ..hub.client import HubError, resolve_token
from ..job_files import JOB_ID_ENV, JOB_OWNER_ENV, LOG_FILE, LOG_FILE_ENV, write_stop_request
from ..settings import settings
from ..spec import parse_spec
from ..training.launch import plan, training_command
from . import hf_jobs
from .stage import unstage

def multi_node_command(spec_path: Path, n_procs: int, on_gpu: bool) -> list[str]:
    rank, nodes, host, port = hf_jobs.node_rank()
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--node_rank", str(rank),
            "--nproc_per_node", str(n_procs), "--master_addr", str(host), "--master_port", str(port),
            "-m", "trainer_backend", "train", str(spec_path)]


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer_backend.remote.job")
    p.add_argument("--repo", required=True, help="the job repo the runner prepared")
    args = p.parse_args(argv)
    token = resolve_token()
    workdir = Path.cwd() / "lora-studio-job"
    raw = yaml.safe_load(hubsync.read_file(args.repo, hubsync.REMOTE_SPEC_FILE, token) or b"{}")
    info = hubsync.read_json(args.repo, hubsync.REMOTE_FILE, token) or {}
    remote, _ = parse_spec(raw, f"{args.repo}/{hubsync.REMOTE_SPEC_FILE}")
    spec = unstage(remote, info.get("staged") or {}, workdir, token)
    spec.output_dir = str(workdir / "job")
    spec.job_dir.mkdir(parents=True, exist_ok=True)
    spec_path = spec.save(workdir / "job-spec.yaml")
    rank, nodes, _, _ = hf_jobs.node_rank()
    n_procs, on_gpu = plan(spec.training)
    cmd = multi_node_command(spec_path, n_procs, on_gpu) if nodes > 1 else training_command(spec_path)
    env = {**os.environ, LOG_FILE_ENV: str(workdir / "job" / LOG_FILE), JOB_ID_ENV: str(info.get("job_id") or ""),
           JOB_OWNER_ENV: str(info.get("owner") or "")}
    print(f"[lora-studio] node {rank + 1}/{nodes}: {' '.join(cmd)}", flush=True)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    signal.signal(signal.SIGTERM, lambda *_: os.killpg(proc.pid, signal.SIGTERM))  # the platform stopping us
    stop_sent = False
    while proc.poll() is None:
        poll = settings().stop_poll
        time.sleep(min(poll, 1.0) if stop_sent else poll)
        if not stop_sent:
            try:
                request = hf_jobs.stop_request(args.repo, token)
            except HubError as exc:  # the Hub away for a moment: training goes on
                print(f"[lora-studio] could not read the stop request: {exc}", flush=True)
                request = None
            stop_sent = request is not None
            if request is not None:  # why (a sweep's pruning) goes to the run, which records it in its events
                write_stop_request(spec.job_dir, request.get("reason"), request.get("note"))
                print("[lora-studio] stop requested: saving a checkpoint", flush=True)
                os.killpg(proc.pid, signal.SIGTERM)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
