"""Compare runs, beyond the overlaid loss curves (without Gradio): the picked jobs' evaluation reports side by side
(which adapter to push?) and the settings in which their specs differ (what made the difference?)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, Optional

from ..evaluation.record import EvaluationRecord, read_record
from ..job_files import SPEC_FILE
from .evaluation_service import general_rows

SKIPPED_KEYS = ("output_dir", "project_name")  # differ between any two jobs and say nothing of the run
MISSING = "—"
VERDICT_WORDS = {"ok": "✔ no drop beyond noise", "drop": "⚠️ drop beyond noise", "no_general": "no general tasks",
                 "no_task": "no held-out metric"}


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested spec as dotted keys: {"lora": {"r": 8}} -> {"lora.r": 8}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _shown(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()  # as YAML writes it
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def settings_diff(specs: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(columns, rows): one row per dotted spec key whose value differs between the jobs (a key one spec lacks
    counts as differing: "—"), a column per job; `specs` maps a job's label to its spec as plain data."""
    flat = {label: {k: v for k, v in flatten(spec).items() if k not in SKIPPED_KEYS} for label, spec in specs.items()}
    keys = sorted({k for values in flat.values() for k in values})
    rows = []
    for key in keys:
        cells = [_shown(values.get(key)) for values in flat.values()]
        if len(set(cells)) > 1:
            rows.append([key, *cells])
    return ["Setting", *flat], rows


def job_spec_data(job_dir: str | Path) -> dict[str, Any]:
    """A job's spec.yaml as plain data without secrets (empty when it cannot be read)."""
    from ..spec import load_job_spec

    try:
        return load_job_spec(Path(job_dir) / SPEC_FILE)[0].to_public_dict()
    except (ValueError, OSError):
        return {}


def evaluation_side_by_side(reports: dict[str, Optional[EvaluationRecord]]) -> tuple[list[str], list[list[str]]]:
    """(columns, rows): a row per job (label -> its report, None when never evaluated): the verdict, the held-out
    metric that speaks for the task and its change, then per general task the fine-tuned value and the change."""
    per_job = {label: general_rows(r) if r else [] for label, r in reports.items()}
    tasks: dict[str, str] = {}  # task as shown -> its column
    for rows in per_job.values():
        for row in rows:
            tasks.setdefault(row["task"], f"{row['task']}: {row['metric'].replace('_', ' ')} "
                                          f"({'higher' if row['higher_is_better'] else 'lower'} is better)")
    columns = ["Job", "Verdict", "Your task (held-out)", *tasks.values()]
    out = []
    for label, record in reports.items():
        verdict = (record.verdict or {}) if record else {}
        level = verdict.get("level")
        state = record.state if record else "none"
        said = VERDICT_WORDS.get(str(level), MISSING) if level else ("not evaluated" if state == "none" else state)
        if record and state == "running":
            said += " (evaluating…)"
        by_task = {row["task"]: row for row in per_job[label]}
        cells = [f"{by_task[t]['fine_tuned_text']} (change {_change_only(by_task[t])})" if t in by_task else MISSING
                 for t in tasks]
        task = str(verdict.get("task") or MISSING).replace(" on your task", "")  # the column says whose task
        out.append([label, said, task, *cells])
    return columns, out


def _change_only(row: dict[str, Any]) -> str:
    """general_change's text without the metric's name the column already says."""
    return str(row["change"]).removeprefix(row["metric"].replace("_", " ") + " ")


class Table(NamedTuple):
    columns: list[str]
    rows: list[list[Any]]


def compare_details(studio: Any, job_ids: list[str]) -> tuple[Table, Table]:
    """The picked jobs' evaluation reports side by side and their settings diff, server paths replaced by names."""
    labels, dirs = [], []
    for job_id in job_ids:
        try:
            job = studio.jobs.get(job_id)
        except (KeyError, ValueError):
            continue
        labels.append(f"{job.name} · {job.id}")
        dirs.append(job.job_dir)
    evaluation = evaluation_side_by_side({label: read_record(d) for label, d in zip(labels, dirs)})
    settings = settings_diff({label: job_spec_data(d) for label, d in zip(labels, dirs)})
    calm = studio.calm([[list(evaluation[0]), evaluation[1]], [list(settings[0]), settings[1]]])
    return Table(*calm[0]), Table(*calm[1])
