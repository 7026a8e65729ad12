"""The local side of a job on Hugging Face Jobs, run by the job supervisor in place of the training process:

    python -m trainer_backend.remote.runner <job folder>/spec.yaml

1. Submit: stage local data/model (remote/stage.py), write the Job's spec to the job repo, start the Job(s) with
   the token as a secret only. Or re-attach: a Job recorded in the folder's remote.json that is still running is
   watched again, never started twice (a restarted app, a killed supervisor).
2. Mirror, every few seconds: the job repo's events.jsonl and train.log into the local job folder (so progress,
   charts, job_status and job_events read them as for a local job), the Job's own output into debug.log.
3. Stop (SIGTERM from the supervisor): ask the trainer to checkpoint (control/stop.json in the repo), give it
   LORA_STUDIO_REMOTE_STOP_GRACE seconds (40), then cancel the Job(s).
4. End: the adapter downloaded into the folder (Chat and Evaluate use it as any other), the exit code the trainer's.
Hub errors are retried with backoff; a Hub that stays away only delays the mirror, the Job goes on regardless.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any, Optional

from ..hub import sync as hubsync
from ..hub.client import HubError, resolve_token
from ..job_files import (ADAPTER_DIR, DEBUG_LOG_FILE, EVAL_FILE, EVENTS_FILE, JOB_ID_ENV, JOB_OWNER_ENV, LOG_FILE,
                         has_trained_model, read_stop_request)
from ..job_status import ExitCode
from ..settings import settings
from ..spec import JobSpec, load_job_spec
from ..run_events import OUTCOME_TYPES, Failed, RemoteReattached, RemoteSubmitted, Stopped, parse_line
from ..training.events import EventLog
from .state import RemoteState
from . import hf_jobs as nodes

OUTCOMES = {"finished": ExitCode.OK, "stopped": ExitCode.STOPPED, "push_failed": ExitCode.NOT_PUSHED,
            "failed": ExitCode.FAILED}


class RemoteRun:
    def __init__(self, spec: JobSpec, token: str):
        self.spec, self.token = spec, token
        self.job_dir = spec.job_dir
        self.events = EventLog(self.job_dir)
        self.state = RemoteState.read(self.job_dir)
        self.stop = threading.Event()

    # ---- bookkeeping -----------------------------------------------------------------------------------
    def save_state(self) -> None:
        self.state.save(self.job_dir)

    def say(self, line: str) -> None:
        with open(self.job_dir / LOG_FILE, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} [hf jobs] {line}\n")

    # ---- 1. submit or re-attach ----------------------------------------------------------------------
    def live_jobs(self) -> list[str]:
        """The recorded Jobs of the current attempt that are still scheduling or running."""
        ns, live = self.state.namespace, []
        for job_id in self.state.job_ids:
            if not nodes.job_state(self.token, ns, job_id).terminal:
                live.append(job_id)
        return live

    def submit(self) -> None:
        from .stage import stage

        spec, compute = self.spec, self.spec.compute
        ns = compute.namespace or nodes.whoami(self.token)
        nodes.check_flavor(self.token, compute.flavor)
        image = nodes.image_for(compute)
        job_id = os.environ.get(JOB_ID_ENV) or spec.project_name
        repo = spec.hub.sync_repo or hubsync.default_sync_repo(ns, job_id)
        hubsync.ensure_repo(repo, self.token)
        remote_spec, staged = stage(spec, ns, repo, self.token)
        if staged.uploaded:
            self.say("staged " + ", ".join(staged.uploaded) + " (private)")
        if spec.training.resume_from_checkpoint:
            remote_spec.training.resume_from_checkpoint = "latest"  # the repo's latest (hub/sync.py pulls it)
        info: dict[str, Any] = {"job_id": job_id, "owner": os.environ.get(JOB_OWNER_ENV) or None,
                                "staged": staged.to_dict(), "nodes": compute.nodes, "namespace": ns,
                                "spec": spec.to_public_dict()}
        hubsync.put_file(repo, hubsync.REMOTE_SPEC_FILE, remote_spec.to_yaml().encode(), self.token, "job spec")
        hubsync.put_file(repo, hubsync.REMOTE_FILE, json.dumps(info, indent=1).encode(), self.token, "job info")
        nodes.clear_stop(repo, self.token)  # a stop of an earlier attempt must not stop this one
        started = nodes.start(self.token, ns, image, compute, repo, job_id)
        # The repo's events.jsonl and train.log only grow across attempts (the Job continues them: hub/sync.py), so
        # the mirror goes on from where the last attempt left it.
        mirrored = self.state.mirrored if self.state.sync_repo == repo else {}
        self.state = RemoteState(namespace=ns, sync_repo=repo, flavor=compute.flavor,
                                 job_ids=[s.job_id for s in started], urls=[s.url for s in started], mirrored=mirrored)
        self.save_state()
        info["job_ids"] = self.state.job_ids  # what a restore from the Hub re-attaches to (remote/restore.py)
        hubsync.put_file(repo, hubsync.REMOTE_FILE, json.dumps(info, indent=1).encode(), self.token, "job ids")
        self.events.write(RemoteSubmitted(backend="hf_jobs", flavor=compute.flavor, nodes=compute.nodes,
                                          job_ids=self.state.job_ids, url=started[0].url, repo_id=repo))
        self.say(f"started HF Job {started[0].job_id} on {compute.flavor}" +
                 (f" (+{len(started) - 1} more nodes)" if len(started) > 1 else "") + f": {started[0].url}")

    # ---- 2. mirror -----------------------------------------------------------------------------------
    def mirror(self) -> None:
        (ns, repo), mirrored = self.state.placed(), self.state.mirrored
        for name in (EVENTS_FILE, LOG_FILE):
            data = hubsync.read_file(repo, name, self.token)
            done = int(mirrored.get(name, 0))
            if data is None or len(data) <= done:
                continue
            fresh = data[done:]
            fresh = fresh[:fresh.rfind(b"\n") + 1]  # whole lines only: the rest comes with the next sync
            if fresh and name == EVENTS_FILE:
                for line in fresh.decode("utf-8", "replace").splitlines():
                    record = parse_line(line)
                    if isinstance(record, OUTCOME_TYPES):
                        self.state.outcome = record.event
            if fresh:
                with open(self.job_dir / name, "ab") as fh:
                    fh.write(fresh)
                mirrored[name] = done + len(fresh)
        seen = self.state.job_log_lines
        for job_id in self.state.job_ids:
            lines = nodes.job_logs(self.token, ns, job_id)
            fresh_lines = lines[int(seen.get(job_id, 0)):]
            if fresh_lines:
                with open(self.job_dir / DEBUG_LOG_FILE, "a", encoding="utf-8") as fh:
                    fh.write("".join(f"[{job_id[:8]}] {line}\n" for line in fresh_lines))
                seen[job_id] = len(lines)
        self.save_state()

    # ---- 3 + 4. watch, stop, end ---------------------------------------------------------------------
    def watch(self) -> int:
        (ns, repo), ids = self.state.placed(), self.state.job_ids
        stop_sent: Optional[float] = None
        while True:
            try:
                states = [nodes.job_state(self.token, ns, j) for j in ids]
                self.mirror()
            except HubError as exc:  # the Job runs on regardless; try again at the next poll
                self.say(f"Hub not reachable, retrying: {exc}")
                states = []
            if states and all(s.terminal for s in states):
                break
            if states and any(s.terminal and s.stage != "COMPLETED" for s in states):
                failed = [s for s in states if s.terminal and s.stage != "COMPLETED"]
                self.say("a node ended early (" + "; ".join(f"{s.job_id}: {s.stage} {s.message or ''}"
                                                              for s in failed) + "): stopping every node")
                nodes.cancel_all(self.token, ns, ids)
                continue
            if self.stop.is_set() and stop_sent is None:
                stop_sent = time.time()
                if any(s.stage == "SCHEDULING" for s in states):
                    nodes.cancel_all(self.token, ns, ids)
                else:
                    self.say("stop requested: the trainer saves a checkpoint, then the Job ends")
                    reason, note = read_stop_request(self.job_dir)  # a sweep's pruning says why
                    hubsync.put_file(repo, hubsync.STOP_FILE,
                                     json.dumps({"time": time.time(), "reason": reason, "note": note}).encode(),
                                     self.token, "stop requested")
            grace = settings().remote_stop_grace  # default 40 s: under the supervisor's 60 s stop timeout
            if stop_sent is not None and time.time() - stop_sent > grace:
                self.say(f"the Job did not end within {grace:.0f}s of the stop request: cancelling it")
                nodes.cancel_all(self.token, ns, ids)
                stop_sent = float("inf")
            self.stop.wait(settings().remote_poll)
        return self.finish(states)

    def finish(self, states: list[Any]) -> int:
        _, repo = self.state.placed()
        if all(s.stage == "COMPLETED" for s in states):
            try:
                hubsync.download_folder(repo, ADAPTER_DIR, self.job_dir, self.token)
            except HubError as exc:
                self.say(f"could not download the adapter: {exc}")
            report = hubsync.read_file(repo, EVAL_FILE, self.token)  # the evaluation report the Job wrote
            if report:
                (self.job_dir / EVAL_FILE).write_bytes(report)
        self.mirror()
        outcome = self.state.outcome
        if outcome is None:  # the Job ended without the trainer recording why: timeout, killed, image failed
            detail = "; ".join(f"{s.job_id}: {s.stage}" + (f" ({s.message})" if s.message else "") for s in states)
            stopped = self.stop.is_set() or any(s.stage == "CANCELED" for s in states)
            if stopped:
                reason, note = read_stop_request(self.job_dir) if self.stop.is_set() else (None, None)
                self.events.write(Stopped(note=note or f"HF Job ended: {detail}",
                                          reason=reason if reason in ("pruned", "budget") else None))
                return ExitCode.STOPPED
            tail = (self.job_dir / DEBUG_LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()[-40:] \
                if (self.job_dir / DEBUG_LOG_FILE).is_file() else []
            self.events.write(Failed(error=f"the HF Job ended without a result: {detail}", kind="remote",
                                     traceback="\n".join(tail)))
            return ExitCode.FAILED
        code = OUTCOMES[outcome]
        if code == ExitCode.OK and not has_trained_model(self.job_dir):
            self.events.write(Failed(error=f"the HF Job finished but its adapter could not be downloaded from {repo}",
                                     kind="remote"))
            return ExitCode.FAILED
        return code


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec, _ = load_job_spec(argv[0])
    run: Optional[RemoteRun] = None
    try:
        token = resolve_token(spec.hub.token)
        run = RemoteRun(spec, token)
        signal.signal(signal.SIGTERM, lambda *_: run.stop.set() if run else None)
        signal.signal(signal.SIGINT, lambda *_: run.stop.set() if run else None)
        if run.state.job_ids and run.live_jobs():
            run.say(f"re-attached to HF Job {run.state.job_ids[0]} (still running)")
            run.events.write(RemoteReattached(job_ids=run.state.job_ids))
        else:
            run.submit()
        return run.watch()
    except (HubError, ValueError) as exc:
        EventLog(spec.job_dir).write(Failed(error=f"HF Jobs: {exc}", kind="remote"))
        return ExitCode.FAILED


if __name__ == "__main__":
    sys.exit(main())
