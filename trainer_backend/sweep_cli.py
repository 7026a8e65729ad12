"""`python -m trainer_backend sweep spec.yaml`: start a sweep (a spec with a `sweep:` section) and follow its trials.

It runs as a job of the job store, so closing the terminal changes nothing (`--detach` returns at once); `jobs stop`
and `jobs resume` stop and continue it; `sweep --status ID` prints its trials; `sweep --promote ID` starts the best
trial's settings as a full run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .job_status import EXIT_CODE_OF_STATUS, ExitCode, JobStatus

FOLLOW_SECONDS = 1.0


def add_sweep_command(subparsers: Any) -> None:
    sp = subparsers.add_parser("sweep", help="search good settings: trials as jobs, hopeless ones stopped early "
                                             "(a spec with a sweep: section)")
    sp.add_argument("spec", nargs="?", help="job spec YAML with a sweep: section")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a spec value, e.g. --set sweep.trials=20 (repeatable)")
    sp.add_argument("--detach", action="store_true", help="queue the sweep and return (prints its job id)")
    sp.add_argument("--status", metavar="JOB", help="print a sweep's trials and best trial")
    sp.add_argument("--promote", metavar="JOB", help="start the best trial's settings as a full run")
    sp.add_argument("--continue-epochs", type=float, help="with --promote: train the best trial this many epochs "
                                                          "more instead")
    sp.add_argument("--json", action="store_true", help="machine-readable --status")
    sp.add_argument("--data-dir", help="job store folder (default: $LORA_STUDIO_DATA_DIR, ...)")


def cmd_sweep(args: argparse.Namespace) -> int:
    from .jobs.store import JobNotFound, JobStateError

    try:
        return _sweep(args)
    except (JobNotFound, JobStateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INVALID


def _sweep(args: argparse.Namespace) -> int:
    from .jobs.manager import JobManager
    from .spec import load_spec
    from .sweep import actions

    manager = JobManager(args.data_dir)
    if args.status:
        return _print_status(actions.status(manager, args.status), args.json)
    if args.promote:
        job = actions.promote(manager, args.promote, continue_epochs=args.continue_epochs)
        print(f"promoted: job {job.id} ({job.name}) {job.status}")
        print(job.id)
        return ExitCode.OK if job.status != JobStatus.FAILED else ExitCode.INVALID
    if not args.spec:
        print("error: give a spec (sweep spec.yaml), --status JOB or --promote JOB", file=sys.stderr)
        return ExitCode.INVALID
    spec, warnings = load_spec(args.spec, args.set)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    job = actions.start(manager, spec)
    if job.status == JobStatus.FAILED:
        print(f"error: {job.error}", file=sys.stderr)
        return ExitCode.INVALID
    print(f"sweep {job.id} queued: {spec.sweep.trials if spec.sweep else 0} trials; "
          f"`python -m trainer_backend jobs stop {job.id}` stops it, `jobs resume` continues it")
    if args.detach:
        print(job.id)
        return ExitCode.OK
    return _follow(manager, job.id)


def _follow(manager: Any, job_id: str) -> int:
    from .sweep import actions

    shown: dict[int, str] = {}
    while True:
        data = actions.status(manager, job_id)
        for t in data["trials"]:
            line = _trial_line(t, data)
            if shown.get(t["number"]) != line:
                shown[t["number"]] = line
                print(line, flush=True)
        job = manager.get(job_id)
        if job.is_terminal:
            print(f"sweep {job.status}: {data['message'] or job.error or ''}")
            return int(EXIT_CODE_OF_STATUS.get(JobStatus(job.status), ExitCode.FAILED))
        time.sleep(FOLLOW_SECONDS)


def _trial_line(t: dict[str, Any], data: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={_num(v)}" for k, v in t["params"].items())
    value = f" {data['objective_label']} {_num(t['value'])}" if t["value"] is not None else ""
    note = f" — {t['note']}" if t["note"] and t["state"] in ("pruned", "failed", "stopped") else ""
    return f"trial {t['number'] + 1} [{t['state']}] {params}{value}{note}"


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_status(data: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return ExitCode.OK
    print(f"sweep {data['id']} ({data['name']}): {data['status']}; objective {data['objective_label']} "
          f"({data['direction']}); {len(data['trials'])} of {data['trials_planned']} trials")
    for t in data["trials"]:
        print("  " + _trial_line(t, data))
    if data["message"]:
        print(data["message"])
    return ExitCode.OK
