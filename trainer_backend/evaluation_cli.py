"""`python -m trainer_backend evaluate JOB --report [--tasks arc_easy sciq ...] [--judge MODEL]`: the evaluation
report of a finished job (evaluation/), in this process or in the background.

The flags are made from the spec's evaluation section (spec_evaluation.EvaluationSpec), so the CLI, the Jobs tab,
the API and a spec's `evaluation:` block take the same values; a job's own section is the default.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from .job_files import EVAL_FILE, SPEC_FILE
from .job_status import ExitCode
from .spec_evaluation import EvaluationSpec

FLAGS = {"general_tasks": "--tasks"}  # spec name -> flag, where the flag reads better than the key
SKIPPED = ("auto", "max_examples")   # auto: after training only; max_examples: evaluate's own --max-examples


def add_report_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--report", action="store_true",
                    help="the whole report: held-out metrics, general tasks (lm-evaluation-harness), the verdict, "
                         "the judge when named; implied by --tasks and --judge")
    for name, field in EvaluationSpec.model_fields.items():
        if name in SKIPPED:
            continue
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        help_text = (field.description or "").replace("%", "%%")
        if name == "general_tasks":
            sp.add_argument(flag, dest=name, nargs="*", default=None,
                            help=f"{help_text} (default: the job's evaluation.general_tasks, else "
                                 f"{' '.join(field.default)}; none: --tasks with no name)")
        elif field.annotation is int:
            sp.add_argument(flag, dest=name, type=int, default=None, help=f"{help_text} (default: {field.default})")
        else:
            sp.add_argument(flag, dest=name, default=None, help=help_text)
    sp.add_argument("--background", action="store_true",
                    help="with --report: start it as a background process and return (its progress: "
                         f"{EVAL_FILE} in the job)")
    sp.add_argument("--data-dir", help="job store folder (for job ids)")


def wants_report(args: argparse.Namespace) -> bool:
    return bool(args.report or args.general_tasks is not None or args.judge)


def cmd_evaluate(args: argparse.Namespace, generation_settings: Callable[[argparse.Namespace], Any]) -> int:
    """The report (--report, --tasks, --judge), or the held-out comparison alone (on --data or the split)."""
    if wants_report(args):
        return cmd_report(args)
    settings = generation_settings(args)
    from .evaluation.heldout import evaluate
    from .evaluation.metrics import metrics_table

    report = evaluate(args.adapter, args.data, args.max_examples, settings)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return ExitCode.OK
    print(f"{report.rows} held-out rows")
    for r in metrics_table(report):  # rounded, percentages for shares, n per metric, which side is better
        print(f"{r['metric']:<22} base {r['base']:>9}  fine-tuned {r['fine-tuned']:>9}  {r['better']:<28} n {r['n']}"
              f"  change {r['change']}")
    return ExitCode.OK


def report_settings(job_dir: Path, args: argparse.Namespace) -> EvaluationSpec:
    """The job's own evaluation section (its spec.yaml), with the flags given on top."""
    from .spec import load_job_spec

    base = load_job_spec(job_dir / SPEC_FILE)[0].evaluation if (job_dir / SPEC_FILE).is_file() \
        else EvaluationSpec()
    given = {name: getattr(args, name) for name in EvaluationSpec.model_fields
             if name not in SKIPPED and getattr(args, name, None) is not None}
    given["max_examples"] = args.max_examples
    return EvaluationSpec.model_validate({**base.model_dump(), **given})


def cmd_report(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .evaluation.run import EvaluationRefused, run_report, start_evaluation
    from .export_cli import finished_job_dir

    try:
        job_dir = finished_job_dir(args.adapter, args.data_dir)
        settings = report_settings(job_dir, args)
        parts = ("held_out", "general", "judge") if not args.data else ("general", "judge")
        if args.background:
            pid = start_evaluation(job_dir, settings, None, parts)
            print(f"evaluation started (process {pid}); progress: {job_dir / EVAL_FILE}")
            return ExitCode.OK

        def progress(record: Any) -> None:
            print(f"[{record.fraction:4.0%}] {record.message}", file=sys.stderr, flush=True)

        record = run_report(job_dir, settings, None, parts, on_progress=progress)
    except (ValidationError, ValueError, KeyError, EvaluationRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INVALID
    if args.json:
        print(json.dumps(record.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_report(record)
    if record.state != "succeeded":
        print(f"error: {record.error}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK


def print_report(record: Any) -> None:
    from .evaluation.forgetting import general_change

    if record.verdict:
        print(record.verdict["text"])
    held = record.held_out_report
    if held:
        from .evaluation.metrics import metrics_table

        print(f"\nheld-out: {held.rows} rows")
        for r in metrics_table(held):
            print(f"  {r['metric']:<26} base {r['base']:>9}  fine-tuned {r['fine-tuned']:>9}  change {r['change']}"
                  f"  n {r['n']}")
    if record.general:
        print("\ngeneral tasks (lm-evaluation-harness, base vs fine-tuned):")
        for score in record.general_scores:
            change = general_change(score)
            flag = "  DROP BEYOND NOISE" if change.worse else ""
            print(f"  {change.task:<48} {score.metric:<16} base {score.base:<10.4g} fine-tuned "
                  f"{score.fine_tuned:<10.4g} {change.text}{flag}")
    if record.judge:
        from .evaluation.judge import JudgeResult

        print("\n" + JudgeResult.from_dict(record.judge).summary())
    for note in record.notes:
        print(f"note: {note}")
