"""`submit` and `jobs list|show|logs|stop|resume|continue|wait` for the main CLI (and standalone:
`python -m trainer_backend.jobs ...`). Human text goes to stderr where stdout must stay machine-readable:
`submit` prints the job id alone on its last stdout line, `jobs show --json` one JSON object."""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import Any, Optional

from ..job_status import EXIT_CODE_OF_STATUS, UNFINISHED, ExitCode, exit_code_help

JOB_COMMANDS = ("submit", "jobs")


def add_job_commands(subparsers: Any) -> None:
    """Add `submit` and `jobs` to an argparse subparsers object (the main CLI's)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="job store folder (default: $LORA_STUDIO_DATA_DIR, else "
                                           "/data/lora-studio when /data is writable, else ./lora-studio-data)")
    sp = subparsers.add_parser("submit", parents=[common], help="queue a training job and return at once; "
                               "prints the job id on the last line")
    sp.add_argument("spec", help="job spec YAML")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec value (repeatable)")
    sp.add_argument("--output-dir", help="job directory (default: <data dir>/jobs/<id>)")
    sp.add_argument("--name", help="job name (default: project_name)")
    sp.add_argument("--owner", help="job owner (default: the current user)")
    sp.add_argument("--env", action="append", metavar="KEY=VALUE",
                    help="extra environment variable for the training process (stored; not for secrets)")
    sp.add_argument("--no-validate-data", action="store_true",
                    help="skip the tokenizer + data check before queueing (faster; errors then show at start)")
    sp.add_argument("--max-concurrent", type=int, help="jobs trained at once if this starts the supervisor")

    jp = subparsers.add_parser("jobs", help="list, inspect, stop and resume background jobs")
    jsub = jp.add_subparsers(dest="jobs_command", required=True)
    ls = jsub.add_parser("list", parents=[common], help="jobs, newest first")
    ls.add_argument("--status", action="append", help="only jobs in this status (repeatable)")
    ls.add_argument("--owner")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="one JSON array")
    show = jsub.add_parser("show", parents=[common], help="one job: status, progress, times, metrics, paths")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="print the job as one JSON object")
    show.add_argument("--series", action="store_true", help="include the loss series (with --json)")
    logs = jsub.add_parser("logs", parents=[common], help="the training process's output")
    logs.add_argument("id")
    logs.add_argument("--tail", type=int, default=100, help="last N lines (0: all)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    stop = jsub.add_parser("stop", parents=[common], help="graceful stop (checkpoint), hard kill after a timeout")
    stop.add_argument("id")
    stop.add_argument("--timeout", type=float, default=60.0, help="seconds before SIGKILL (default 60)")
    stop.add_argument("--no-wait", action="store_true", help="return without waiting for the process to end")
    res = jsub.add_parser("resume", parents=[common], help="resume a stopped/failed/interrupted job in place")
    res.add_argument("id")
    res.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a spec value for the resume")
    cont = jsub.add_parser("continue", parents=[common], help="new job: train a finished job N more epochs")
    cont.add_argument("id")
    cont.add_argument("--epochs", type=float, required=True)
    cont.add_argument("--name")
    jsub.add_parser("restore", parents=[common], help="list again the jobs kept on the Hub (hub.sync, HF Jobs) "
                                                      "that this data dir lost; token from HF_TOKEN")
    wait = jsub.add_parser("wait", parents=[common], help=f"wait for a job to end; exit {exit_code_help()}")
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float)


def run_job_command(args: argparse.Namespace) -> int:
    """Run a parsed `submit` / `jobs ...` command; returns the exit code."""
    from ..spec import SpecError
    from .manager import JobManager
    from .store import JobStateError
    from .store import JobNotFound

    try:
        manager = JobManager(args.data_dir, max_concurrent=getattr(args, "max_concurrent", None))
        if args.command == "submit":
            return _submit(manager, args)
        handler = {"list": _list, "show": _show, "logs": _logs, "stop": _stop, "resume": _resume,
                   "continue": _continue, "wait": _wait, "restore": _restore}[args.jobs_command]
        return handler(manager, args)
    except (JobNotFound, JobStateError, SpecError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.FAILED


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _submit(manager: Any, args: argparse.Namespace) -> int:
    overrides = list(args.set or []) + ([f"output_dir={args.output_dir}"] if args.output_dir else [])
    env = dict(item.split("=", 1) for item in (args.env or []) if "=" in item)
    job = manager.submit(args.spec, overrides=overrides, name=args.name, owner=args.owner,
                         validate_data=not args.no_validate_data, env=env or None)
    from .store import ErrorDetails

    details = job.error_details or ErrorDetails()
    for w in details.warnings:
        _err(f"warning: {w}")
    if job.status == "failed":
        _err(f"error: job {job.id} failed validation and will not run: {job.error}")
        for issue in details.issues:
            _err(f"  - {issue}")
        print(job.id, flush=True)
        return ExitCode.INVALID
    ahead = len([j for j in manager.list(list(UNFINISHED)) if j.seq < job.seq])
    _err(f"queued job {job.id} ({job.name}); {ahead} job(s) ahead. Folder: {job.job_dir}\n"
         f"follow it with: python -m trainer_backend jobs show {job.id}   (or: jobs logs {job.id} -f)")
    print(job.id, flush=True)
    return 0


def _progress_text(p: dict) -> str:
    if not p or not p.get("total_steps"):
        return "-"
    return f"{p.get('step', 0)}/{p['total_steps']} ({p.get('percent') or 0:.0f}%)"


def _when(ts: Optional[float]) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _dur(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _list(manager: Any, args: argparse.Namespace) -> int:
    jobs = manager.list(args.status, owner=args.owner, limit=args.limit)
    rows = []
    for job in jobs:
        progress = manager.snapshot(job.id).summary() if job.is_active else (job.progress or {})
        rows.append((job, progress))
    if args.json:
        print(json.dumps([{"id": j.id, "name": j.name, "owner": j.owner, "status": j.status,
                           "progress": p, "created_at": j.created_at, "error": j.error} for j, p in rows]))
        return 0
    if not rows:
        _err(f"no jobs in {manager.data_dir}")
        return 0
    print(f"{'ID':<9} {'NAME':<24} {'STATUS':<12} {'PROGRESS':<18} {'LOSS':>8}  {'CREATED':<19}  ERROR")
    for job, p in rows:
        loss = f"{p['loss']:.4f}" if p.get("loss") is not None else "-"
        err = (job.error or "")[:60]
        print(f"{job.id:<9} {job.name[:24]:<24} {job.status:<12} {_progress_text(p):<18} {loss:>8}  "
              f"{_when(job.created_at):<19}  {err}")
    return 0


def _show(manager: Any, args: argparse.Namespace) -> int:
    info = manager.describe(args.id, series=args.series)
    if args.json:
        print(json.dumps(info, ensure_ascii=False, default=str))
        return 0
    p, t = info["progress"], info["times"]
    print(f"job {info['id']}  {info['name']}  [{info['status']}]  owner {info['owner']}"
          + (f"  continues {info['parent_id']}" if info["parent_id"] else ""))
    print(f"progress: step {_progress_text(p)}  epoch {p.get('epoch') or 0:.2f}  elapsed "
          f"{_dur(p.get('elapsed_seconds'))}  ETA {_dur(p.get('eta_seconds'))}")
    fmt = lambda v, f: format(v, f) if v is not None else "-"  # noqa: E731
    print(f"loss {fmt(p.get('loss'), '.4f')}  lr {fmt(p.get('learning_rate'), '.2e')}  "
          f"tok/s {fmt(p.get('tokens_per_second'), '.0f')}  eval loss {fmt(p.get('eval_loss'), '.4f')}")
    print(f"pid {info['pid'] or '-'}{' (alive)' if info['alive'] else ''}  attempt {info['attempt']}  "
          f"exit code {info['exit_code'] if info['exit_code'] is not None else '-'}")
    print(f"created {_when(t['created_at'])}  started {_when(t['started_at'])}  finished {_when(t['finished_at'])}")
    if info["error"]:
        print(f"error: {info['error']}")
        for issue in (info["error_details"] or {}).get("issues", [])[:20]:
            print(f"  - {issue}")
    if info["metrics"]:
        print("metrics: " + ", ".join(f"{k}={v}" for k, v in info["metrics"].items()))
    paths = info["paths"]
    print(f"folder: {paths['job_dir']}\nlog: {paths['log']}")
    if paths.get("last_checkpoint"):
        print(f"last checkpoint: {paths['last_checkpoint']}")
    if paths.get("adapter"):
        print(f"adapter: {paths['adapter']}")
    return 0


def _logs(manager: Any, args: argparse.Namespace) -> int:
    job = manager.get(args.id)
    if not args.follow:
        print(manager.logs(job.id, tail=args.tail or None))
        return 0
    text = manager.logs(job.id, tail=args.tail or None)
    if text:
        print(text, flush=True)
    offset = job.log_path.stat().st_size if job.log_path.exists() else 0
    while True:  # print new output until the job ends (then once more, for the last lines)
        done = manager.get(job.id).is_terminal
        if job.log_path.exists() and job.log_path.stat().st_size > offset:
            with open(job.log_path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            offset += len(chunk)
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
        if done:
            return 0
        time.sleep(0.5)


def _stop(manager: Any, args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    job = manager.stop(args.id, timeout=args.timeout, wait=not args.no_wait)
    if args.no_wait:
        _err(f"stop requested for job {job.id} (status {job.status})")
        return 0
    ckpt = (job.artifacts or {}).get("last_checkpoint")
    _err(f"job {job.id} {job.status} after {time.monotonic() - t0:.1f}s"
         + (f"; checkpoint {ckpt}; resume with: jobs resume {job.id}" if ckpt else ""))
    return 0


def _resume(manager: Any, args: argparse.Namespace) -> int:
    job = manager.resume(args.id, overrides=args.set)
    _err(f"job {job.id} queued again (resume_from_checkpoint={job.job_spec.training.resume_from_checkpoint})")
    print(job.id)
    return 0


def _continue(manager: Any, args: argparse.Namespace) -> int:
    job = manager.continue_training(args.id, args.epochs, name=args.name)
    if job.status == "failed":
        _err(f"error: {job.error}")
        print(job.id)
        return ExitCode.INVALID
    _err(f"queued job {job.id}: continues {args.id} for {args.epochs:g} more epoch(s)")
    print(job.id)
    return 0


def _restore(manager: Any, args: argparse.Namespace) -> int:
    from ..hub.client import HubError

    try:
        restored = manager.restore_from_hub()
    except HubError as exc:
        _err(f"error: {exc}")
        return ExitCode.FAILED
    for job_id in restored:
        job = manager.get(job_id)
        print(f"{job.id}  {job.status:<12} {job.name}")
    _err(f"{len(restored)} job(s) restored from the Hub")
    return 0


def _wait(manager: Any, args: argparse.Namespace) -> int:
    job = manager.wait(args.id, timeout=args.timeout)
    _err(f"job {job.id} {job.status}" + (f": {job.error}" if job.error else ""))
    return EXIT_CODE_OF_STATUS.get(job.status, ExitCode.FAILED)


def main(argv: Optional[list[str]] = None) -> int:
    """Standalone entry point: `python -m trainer_backend.jobs submit|jobs ...`."""
    parser = argparse.ArgumentParser(prog="python -m trainer_backend.jobs", description="LoRA Studio jobs")
    add_job_commands(parser.add_subparsers(dest="command", required=True))
    return run_job_command(parser.parse_args(argv))
