"""`python -m trainer_backend validate|doctor|train|schema SPEC.yaml` — friendly output, meaningful exit codes."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Optional

from .job_files import ADAPTER_DIR, SPEC_FILE
from .job_status import ExitCode, JobStatus
from .ml_stack import leave_out_bitsandbytes, needs_bitsandbytes
from .cache_cli import add_cache_command, cmd_cache
from .evaluation_cli import add_report_flags
from .export_cli import add_export_command
from .sweep_cli import add_sweep_command
from .jobs.cli import JOB_COMMANDS, add_job_commands, run_job_command
from .run_events import (Checkpoint, Eval, Failed, Finished, FittedToHardware, Log, OomAdjusted, Preparing, RunEvent,
                         Samples, Start, Stopped)

EXIT_OK, EXIT_FAILED, EXIT_INVALID = ExitCode.OK, ExitCode.FAILED, ExitCode.INVALID
EXIT_STOPPED, EXIT_NOT_PUSHED = ExitCode.STOPPED, ExitCode.NOT_PUSHED


def _load(args: argparse.Namespace) -> Any:
    from .spec import load_spec

    overrides = list(args.set or [])
    if getattr(args, "output_dir", None):
        overrides.append(f"output_dir={args.output_dir}")
    spec, warnings = load_spec(args.spec, overrides, expand=not getattr(args, "as_written", False))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return spec


def cmd_validate(args: argparse.Namespace, report_only: bool = False) -> int:
    from .data import DataError
    from .training.run import prepare_job
    from .training.trainers import TrainerNotAvailable

    spec = _load(args)
    try:
        _, prepared = prepare_job(spec, PreparationBar())
    except (DataError, TrainerNotAvailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    report = prepared.dataset_report(sample_row=getattr(args, "row", 0) or 0)
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(report.text_lines()))
        print("\nOK: the data is valid for this spec." if not report_only else "")
    return EXIT_OK


class PreparationBar:
    """A progress bar on stderr for preparations that take more than a second: rewritten in place on a terminal,
    a line every 10 s otherwise (logs)."""

    def __init__(self) -> None:
        self.t0, self.printed, self.shown = time.monotonic(), 0.0, False
        self.tty = sys.stderr.isatty()

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        done = p.phase in ("done", "cached")
        if not self.shown and (now - self.t0 < 1.0 or p.phase == "cached"):
            return  # quick (or from the cache): no bar at all
        if not done and not self.tty and now - self.printed < 10.0:
            return
        self.shown, self.printed = True, now
        bar = "#" * int(20 * p.fraction)
        text = f"[{bar:<20}] {p.line()}"
        end = "\n" if done or not self.tty else ""
        print(("\r" if self.tty else "") + text.ljust(78), end=end, file=sys.stderr, flush=True)

    def event(self, record: Preparing) -> None:
        """A `preparing` event of a training run."""
        from .data.progress import PreparationProgress

        self(PreparationProgress(record.phase, record.rows, record.total_rows, record.progress,
                                 record.rows_per_second, record.eta_seconds, 0.0))


_preparing = PreparationBar()


def _console(record: RunEvent) -> None:
    """One run event as a line a person reads (or the preparation bar redrawn)."""
    if isinstance(record, Preparing):
        _preparing.event(record)
    elif isinstance(record, Log):
        progress = record.progress or 0
        eta = record.eta_seconds
        eta_s = f"{int(eta // 60)}:{int(eta % 60):02d}" if eta is not None else "?"
        # GRPO's loss says little (it is ~0 by construction); its reward is what a person follows
        reward = record.metric("reward")
        score = f"reward {reward:.3f}" if reward is not None else f"loss {record.loss or 0:.4f}"
        print(f"[{'#' * int(20 * progress):<20}] {100 * progress:5.1f}% step {record.step}/{record.max_steps} {score} "
              f"lr {record.learning_rate or 0:.2e} {record.tokens_per_second or 0:.0f} tok/s ETA {eta_s}", flush=True)
    elif isinstance(record, Samples):
        best = max(record.samples, key=lambda x: x.total or 0, default=None)
        if best is not None:
            print(f"sample at step {record.step} (reward {best.total}): {best.completion[:160]!r}", flush=True)
    elif isinstance(record, Eval):
        eval_reward = record.metric("eval_reward")
        said = f", reward {eval_reward:.3f}" if eval_reward is not None else ""
        print(f"eval at step {record.step}: loss {record.eval_loss}{said}", flush=True)
    elif isinstance(record, Start):
        print(f"training: {record.max_steps} steps on {record.device}, "
              f"{record.train_rows} train / {record.valid_rows} valid rows", flush=True)
    elif isinstance(record, Checkpoint):
        print(f"checkpoint saved: {record.path}", flush=True)
    elif isinstance(record, FittedToHardware):  # the job keeps what was asked; this run does what this machine can
        for change in record.changes:
            print(f"this machine: {change}", flush=True)
    elif isinstance(record, OomAdjusted):
        where = f"continuing from {record.resume_from}" if record.resume_from else "starting over"
        print(f"out of memory at step {record.step}: micro-batch {record.previous_batch_size} -> "
              f"{record.batch_size}, gradient accumulation {record.previous_gradient_accumulation} -> "
              f"{record.gradient_accumulation} (same effective batch); {where}", flush=True)
    elif isinstance(record, (Finished, Stopped)):
        print(f"{record.event} at step {record.step}", flush=True)
    elif isinstance(record, Failed):
        print(f"FAILED: {record.error}", file=sys.stderr, flush=True)
        for issue in record.issues:
            print(f"  - {issue}", file=sys.stderr)
        if record.traceback:  # a real failure: the person (and the Jobs tab) sees where it happened
            print(record.traceback.rstrip(), file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    from .data import DataError
    from .hub.publish import train_and_push
    from .training.trainers import TrainerNotAvailable

    spec = _load(args)
    if not needs_bitsandbytes(spec.training.quantization, spec.training.optimizer, spec.model.base_model):
        leave_out_bitsandbytes()
    failures: list[Failed] = []

    def echo(record: RunEvent) -> None:
        if isinstance(record, Failed):
            failures.append(record)
        _console(record)

    try:
        result = train_and_push(spec, echo=echo)
    except (DataError, TrainerNotAvailable):
        return EXIT_INVALID
    except KeyboardInterrupt:
        return EXIT_STOPPED
    except Exception as exc:  # recorded and printed as a "failed" event; anything else is said here, never lost
        if not failures:
            print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # each rank says where it ended: they must agree
        print(f"rank {os.environ.get('RANK', '0')} of {os.environ['WORLD_SIZE']}: {result.status} at step {result.step}")
    if result.status == JobStatus.STOPPED:
        print(f"stopped; resume with --set training.resume_from_checkpoint=latest ({result.checkpoint})")
        return EXIT_STOPPED
    print(f"adapter saved to {result.adapter_dir}")
    if result.status == JobStatus.NOT_PUSHED:
        print(f"trained, not pushed (see events.jsonl); push again with: python -m trainer_backend push "
              f"{result.job_dir}", file=sys.stderr)
        return EXIT_NOT_PUSHED
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    """Push a job (id from the job store, or a job folder) to the Hub; the token comes from HF_TOKEN only."""
    from pathlib import Path

    from .hub import HubError, push_adapter

    target = Path(args.job).expanduser()
    if (target / ADAPTER_DIR).is_dir():
        try:
            result = push_adapter(target, repo_id=args.repo, private=not args.public, merged=args.merged,
                                  gguf=args.gguf)
        except HubError as exc:
            print(f"error: not pushed: {exc}", file=sys.stderr)
            return EXIT_NOT_PUSHED
        print(result.url)
        return EXIT_OK
    from .jobs import JobManager

    job = JobManager(args.data_dir, autostart=False).push(args.job, args.repo, args.merged,
                                                          private=False if args.public else None, gguf=args.gguf)
    if job.status != "succeeded":
        print(f"error: not pushed: {job.error}", file=sys.stderr)
        return EXIT_NOT_PUSHED
    print(job.artifacts.get("hub_url"))
    return EXIT_OK


def _settings(args: argparse.Namespace) -> Any:
    from .generation import GenerationSettings

    try:
        return GenerationSettings.checked(temperature=args.temperature, top_p=args.top_p,
                                          max_new_tokens=args.max_new_tokens,
                                          repetition_penalty=args.repetition_penalty)
    except ValueError as exc:  # before any model is loaded
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID) from None


def cmd_chat(args: argparse.Namespace) -> int:
    """One prompt (--prompt) or an interactive session; answers stream as they are generated."""
    settings = _settings(args)  # refused before anything is loaded or typed
    from .inference import chat_stream, compare

    history: list[dict] = []
    prompts = [args.prompt] if args.prompt else None
    while True:
        if prompts is not None:
            if not prompts:
                return EXIT_OK
            text = prompts.pop()
        else:
            try:
                text = input("you> ")
            except EOFError:
                return EXIT_OK
        history.append({"role": "user", "content": text})
        if args.compare:
            answers = compare(args.adapter, history, settings, args.system)
            print(f"base:       {answers['base']}\nfine-tuned: {answers['fine_tuned']}")
            history.append({"role": "assistant", "content": answers["fine_tuned"]})
            continue
        shown = ""
        for shown_now in chat_stream(args.adapter, history, settings, args.system):
            print(shown_now[len(shown):], end="", flush=True)
            shown = shown_now
        print()
        history.append({"role": "assistant", "content": shown.strip()})


def cmd_plan(args: argparse.Namespace) -> int:
    """Parameters, peak memory by part, tokens, steps, time and cost before anything is trained."""
    from .data import DataError
    from .training.plan import plan_job
    from .training.trainers import TrainerNotAvailable

    from .data.progress import preparation_progress

    spec = _load(args)
    try:
        with preparation_progress(PreparationBar()):
            plan = plan_job(spec, hardware=args.hardware, probe_steps=args.probe_steps)
    except (DataError, TrainerNotAvailable, OSError) as exc:  # OSError: the model or data could not be read
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(plan.to_dict(), indent=2), encoding="utf-8")
    print(json.dumps(plan.to_dict(), indent=2) if args.json else plan.markdown().replace("**", ""))
    return EXIT_OK


def cmd_launch(args: argparse.Namespace) -> int:
    """Foreground training with the job's process layout (torchrun on CPU, accelerate on GPUs)."""
    import subprocess

    from .training.launch import training_command

    spec = _load(args)
    path = spec.save(spec.job_dir / SPEC_FILE)
    return subprocess.call(training_command(path))


def cmd_schema(args: argparse.Namespace) -> int:
    from .spec import JobSpec

    print(json.dumps(JobSpec.model_json_schema(), indent=2))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer_backend", description="LoRA Studio command line")
    sub = p.add_subparsers(dest="command", required=True)

    def with_spec(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("spec", help="job spec YAML (LoRA Studio or AutoTrain Advanced LLM config)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a spec value, e.g. --set training.learning_rate=1e-4 (repeatable)")
        sp.add_argument("--output-dir", help="job directory (default: ./<project_name>)")
        sp.add_argument("--as-written", action="store_true",
                        help="expand no ${VAR} in the spec (how the job supervisor runs a job's saved spec)")
        return sp

    with_spec("validate", "check the spec and every data row; print the dataset report; exit 2 on errors")
    doctor = with_spec("doctor", "dataset report: format, lengths, truncation, a rendered training sample")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument("--row", type=int, default=0, help="which training row to render (0-based)")
    with_spec("train", "train in the foreground (Ctrl-C stops gracefully and saves a checkpoint)")
    plan = with_spec("plan", "before training: parameters, peak memory by part, tokens, steps, time and cost")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.add_argument("--out", help="also write the plan as JSON to this file")
    plan.add_argument("--probe-steps", type=int, default=0,
                      help="time this many real optimizer steps on this machine (loads the model) instead of "
                           "estimating the time from the hardware table")
    plan.add_argument("--hardware", help="price and speed for this hardware (e.g. l4x1, a10g-large, h100); "
                                         "default: this machine's")
    with_spec("launch", "train in the foreground with training.num_processes / distributed applied "
                        "(torchrun on CPU, accelerate launch on GPUs)")
    sub.add_parser("schema", help="print the job spec's JSON schema")
    from .generation import DEFAULTS, EVALUATION, GenerationSettings, setting_range

    def with_adapter(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("adapter", help="job folder, adapter folder or Hub repo id")
        defaults = EVALUATION if name == "evaluate" else DEFAULTS
        for field, kind in (("temperature", float), ("top_p", float), ("max_new_tokens", int),
                            ("repetition_penalty", float)):
            low, high = setting_range(field)
            sp.add_argument("--" + field.replace("_", "-"), type=kind, default=getattr(defaults, field),
                            help=f"{GenerationSettings.model_fields[field].description}; {low:g} to {high:g} "
                                 "(default: %(default)s)")
        return sp

    chat = with_adapter("chat", "chat with a trained adapter (same template as training, streams)")
    chat.add_argument("--prompt", help="answer one prompt and exit (default: interactive)")
    chat.add_argument("--system", help="system prompt")
    chat.add_argument("--compare", action="store_true", help="answer with the base model and the fine-tuned one")
    ev = with_adapter("evaluate", "base vs fine-tuned: held-out loss, exact match, ROUGE-L, tool-call accuracy, "
                                  "rewards; with --report also general tasks (did it forget?) and a judge")
    ev.add_argument("--data", help="evaluate on this file instead of the job's validation split")
    ev.add_argument("--max-examples", type=int, default=50)
    ev.add_argument("--json", action="store_true")
    add_report_flags(ev)
    add_job_commands(sub)
    push = sub.add_parser("push", help="push a finished job's adapter (and optionally the merged model) to the Hub")
    push.add_argument("job", help="job id (from the job store) or a job folder")
    push.add_argument("--repo", help="target repo user/name (default: <you>/<project_name>)")
    push.add_argument("--merged", action="store_true", help="also push the merged model to <repo>-merged")
    push.add_argument("--public", action="store_true", help="create the repo public (default: private)")
    push.add_argument("--gguf", action="store_true", help="also push the job's export (GGUF files, Modelfile) to "
                                                          "<repo>-GGUF or the adapter's repo (export's gguf_repo)")
    push.add_argument("--data-dir", help="job store folder (for job ids)")
    add_cache_command(sub)
    add_export_command(sub)
    add_sweep_command(sub)
    tiny = sub.add_parser("tiny-model", help="build a tiny random-init model + tokenizer for offline demos")
    tiny.add_argument("out_dir")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    from .spec import SpecError

    args = build_parser().parse_args(argv)
    if args.command in JOB_COMMANDS:
        return run_job_command(args)
    try:
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "doctor":
            return cmd_validate(args, report_only=True)
        if args.command == "train":
            from .training import run_log

            run_log.install()  # before torch/transformers are imported: see run_log.py
            return cmd_train(args)
        if args.command == "plan":
            return cmd_plan(args)
        if args.command == "launch":
            return cmd_launch(args)
        if args.command == "push":
            return cmd_push(args)
        if args.command == "chat":
            return cmd_chat(args)
        if args.command == "evaluate":
            from .evaluation_cli import cmd_evaluate

            return cmd_evaluate(args, _settings)
        if args.command == "cache":
            return cmd_cache(args)
        if args.command == "export":
            from .export_cli import cmd_export

            return cmd_export(args)
        if args.command == "sweep":
            from .sweep_cli import cmd_sweep

            return cmd_sweep(args)
        if args.command == "tiny-model":
            from .tiny_model import build_tiny_model

            print(build_tiny_model(args.out_dir))
            return EXIT_OK
        return cmd_schema(args)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
