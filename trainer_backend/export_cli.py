"""`python -m trainer_backend export JOB --formats f16 q4_K_M modelfile ...`: export a finished job (export/).

The flags are made from the spec's export section (spec_export.ExportSpec): its fields, choices, bounds and help
text, so the CLI, the Jobs tab, the API and a spec's `export:` block take the same values.
"""
from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path
from typing import Any, Optional

from .job_files import ADAPTER_DIR, EXPORT_DIR
from .job_status import ExitCode
from .spec_export import ExportSpec


def _choices(annotation: Any) -> Optional[list[str]]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in args]
    for arg in args:  # list[Literal[...]] / Optional[Literal[...]]
        found = _choices(arg)
        if found:
            return found
    return None


def add_export_command(subparsers: Any) -> None:
    sp = subparsers.add_parser("export", help="export a finished job: merged weights, GGUF (f16/bf16/q8_0/q4_K_M), "
                                              "a LoRA GGUF, an Ollama Modelfile — each checked against the adapter")
    sp.add_argument("job", help="job id (from the job store) or a job folder")
    for name, field in ExportSpec.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = (field.description or "").replace("%", "%%")
        choices = _choices(field.annotation)
        if typing.get_origin(field.annotation) is list:
            sp.add_argument(flag, nargs="+", choices=choices, default=None, required=name == "formats",
                            help=help_text)
        elif field.annotation is int:
            sp.add_argument(flag, type=int, default=None, help=f"{help_text} (default: {field.default})")
        else:
            sp.add_argument(flag, choices=choices, default=None, help=f"{help_text} (default: {field.default})")
    sp.add_argument("--background", action="store_true",
                    help="start it as a background process and return (its progress: export.json in the job)")
    sp.add_argument("--json", action="store_true", help="print the export record as JSON")
    sp.add_argument("--data-dir", help="job store folder (for job ids)")


def finished_job_dir(job: str, data_dir: Optional[str]) -> Path:
    """A job folder, or the folder of a finished job of the store; ValueError/KeyError otherwise."""
    folder = Path(job).expanduser()
    if (folder / ADAPTER_DIR).is_dir():
        return folder
    from .jobs import JobManager
    from .jobs.store import TERMINAL

    found = JobManager(data_dir, autostart=False).store.get(job)
    if found.status not in TERMINAL:
        raise ValueError(f"job {found.id} is {found.status}: only a finished job can be exported or evaluated")
    return Path(found.job_dir)


def cmd_export(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .export.report import CHECK_COLUMNS, check_rows, failed_files

    values = {name: getattr(args, name) for name in ExportSpec.model_fields if getattr(args, name) is not None}
    try:
        spec = ExportSpec.model_validate(values)
        job_dir = finished_job_dir(args.job, args.data_dir)
        if not (job_dir / ADAPTER_DIR).is_dir():
            raise ValueError(f"{job_dir} has no trained adapter to export")
    except (ValidationError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INVALID
    if args.background:
        from .export.state import start_export

        pid = start_export(job_dir, spec.model_dump_json(), None)
        print(f"export started (process {pid}); progress: {job_dir / EXPORT_DIR}")
        return ExitCode.OK
    from .export.run import export_job

    def progress(record: Any) -> None:
        print(f"[{record.fraction:4.0%}] {record.message}", file=sys.stderr, flush=True)

    record = export_job(job_dir, spec, on_progress=progress)
    if args.json:
        print(json.dumps(record.to_dict(), indent=2))
    else:
        rows = check_rows(record)
        widths = [max(len(str(c)) for c in col) for col in zip(CHECK_COLUMNS, *rows)]
        for row in [CHECK_COLUMNS, *rows]:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        for note in record.notes:
            print(f"note: {note}")
    if record.state != "succeeded":
        print(f"error: {record.error}", file=sys.stderr)
        return ExitCode.FAILED
    failed = failed_files(record)
    if failed:
        print(f"error: {', '.join(f.name for f in failed)} failed the round-trip check (see the table)",
              file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK
