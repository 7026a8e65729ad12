"""The evaluation report of a finished job (held-out metrics, general tasks, the verdict, the judge) for the Jobs
tab and the named API, without Gradio: check a client's settings, start the report in its own process
(evaluation/run.py), read its record, follow it until it ends.

The report's process rewrites <job>/evaluation.json after every part, so everything here reads that file: a closed
browser tab, a dropped client or a second app worker sees the same report. Settings a client leaves out come from
the job's own spec (its `evaluation:` section); every value is checked by spec_evaluation.EvaluationSpec, the one
description of these settings. Access checks happen in ui/api.py and the Jobs tab (members who may train); the Hub
token the report acts with is the caller's own (access.hub_token). Two rules protect a Space: a judge endpoint
(a URL, sent the API key of a server variable) is for the Space's owner alone, and local task or judge folders a
client names must lie inside their own roots (StudioService.client_path).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

from pydantic import ValidationError

from ..access import AccessDenied, current_caller, hub_token, is_owner, on_space, space_owner
from ..errors import SpecError
from ..evaluation.forgetting import general_change
from ..evaluation.harness import LOCAL_TASKS, RATE_METRICS, STAND_INS, TaskScore, folder_tasks
from ..evaluation.judge import JudgeResult, is_endpoint
from ..evaluation.metrics import metrics_table
from ..evaluation.record import EvaluationRecord, read_record
from ..job_files import SPEC_FILE
from ..jobs.store import JobStateError
from ..spec_evaluation import GENERAL_TASKS, EvaluationSpec
from ..uploads import check_client_path
from .finished_jobs import finished_job, start_lock
from .streams import follow_changes
from .form_fields import _message

EVALUATION_STREAM_MAX_SECONDS = 3600.0  # an /evaluate_job stream ends after this; /evaluation_report goes on
# What a client may set (the rest: the job's own spec): the Jobs tab's form and /evaluate_job's parameters.
OPTION_FIELDS = ("general_tasks", "task_limit", "max_examples", "time_budget", "judge", "judge_model",
                 "judge_prompts")
NOT_EVALUATED = "not evaluated yet"
NO_JUDGE = "none"  # /evaluate_job's judge="none": no judge, whatever the job's spec names ("" takes the spec's)
HELD_OUT_COLUMNS = ["Metric", "Base", "Fine-tuned", "Better", "Change (95 % CI)", "n", "What it means"]
GENERAL_COLUMNS = ["Task", "Metric", "Base", "Fine-tuned", "Change (95 % CI)", "n", "Beyond noise?"]
DROP_MARK = "⚠️ drop beyond noise"


def task_choices() -> list[str]:
    """The general tasks a person can tick: the defaults (lm-evaluation-harness names), then LoRA Studio's local
    tasks (the offline stand-ins first, then any other task file in evaluation/tasks/)."""
    local = [stand_in for stand_in, _, _ in STAND_INS.values()]
    local += sorted(p.stem for p in LOCAL_TASKS.glob("*.yaml") if p.stem not in local)
    return list(dict.fromkeys([*GENERAL_TASKS, *local]))


def field_label(name: str) -> str:
    """What the form calls an EvaluationSpec field (its `label` in the spec)."""
    extra = EvaluationSpec.model_fields[name].json_schema_extra
    label = extra.get("label") if isinstance(extra, dict) else None
    return str(label or name.replace("_", " ").capitalize())


def settings_errors(raw: dict[str, Any]) -> dict[str, str]:
    """EvaluationSpec field name -> what is wrong with the value, in words (empty: the settings are valid)."""
    try:
        EvaluationSpec.model_validate(raw)
    except ValidationError as exc:
        problems: dict[str, list[str]] = {}
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "general_tasks"
            problems.setdefault(name, []).append(f"{_message(err)} (got {err['input']!r})")
        return {name: "; ".join(dict.fromkeys(texts)) for name, texts in problems.items()}
    return {}


def whole(value: Any) -> Any:
    """A number box's 5.0 is 5 (5.5 stays 5.5: the spec refuses it by the field's name)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def given_settings(tasks: Any = None, task_limit: Any = None, max_examples: Any = None, time_budget: Any = None,
                   judge: Any = "", judge_model: Any = "", judge_prompts: Any = None) -> dict[str, Any]:
    """/evaluate_job's values as EvaluationSpec fields, only those given: None (and "" for the judge fields) leave a
    field to the job's spec; tasks=[] is no general task at all, judge="none" no judge. Tasks may be a list or one
    comma-separated string."""
    out: dict[str, Any] = {}
    if tasks is not None:
        out["general_tasks"] = [t.strip() for t in tasks.split(",") if t.strip()] if isinstance(tasks, str) \
            else [str(t).strip() for t in tasks if str(t).strip()]
    for name, value in (("task_limit", task_limit), ("max_examples", max_examples), ("time_budget", time_budget),
                        ("judge_prompts", judge_prompts)):
        if value is not None and value != "":
            out[name] = whole(value)
    for name, value in (("judge", judge), ("judge_model", judge_model)):
        if isinstance(value, str) and value.strip():
            out[name] = None if value.strip().lower() == NO_JUDGE else value.strip()
    return out


def parse_settings(base: EvaluationSpec, given: dict[str, Any]) -> EvaluationSpec:
    """`base` (the job's section) with the client's values on top, or a SpecError naming each wrong field by its
    label and key."""
    raw = {**base.model_dump(), **given}
    errors = settings_errors(raw)
    if errors:
        raise SpecError("cannot evaluate: " + "; ".join(f"{field_label(k)} ({k}): {v}" for k, v in errors.items()))
    return EvaluationSpec.model_validate(raw)


def judge_refusal(judge: Optional[str]) -> Optional[str]:
    """Why the caller may not use this judge, or None. A judge endpoint (a URL) is sent the API key of a server
    variable (judge_key_env): on a Space only its owner may name one, else a member could send the owner's key to
    a URL of their choosing. A judge model (a Hub id or a local folder) is fine for members."""
    if not judge or not is_endpoint(judge) or not on_space() or is_owner(current_caller()):
        return None
    return (f"a judge endpoint (URL) is sent the API key this Space keeps in its environment, so only the Space's "
            f"owner ({space_owner()}) may use one; name a judge model instead (a Hub id), or no judge "
            f"(judge='{NO_JUDGE}' over the API, an empty judge box in the Jobs tab)")


def confine(settings: EvaluationSpec, studio: Any) -> EvaluationSpec:
    """The settings with every local folder a client may name checked (task folders: the caller's roots or own
    uploads; a judge folder: also the app's models folder) and resolved; a judge endpoint only for the Space's
    owner. Raises AccessDenied, UnsafePath or SpecError with a message for people."""
    refusal = judge_refusal(settings.judge)
    if refusal:
        raise AccessDenied(refusal)
    tasks = []
    for name in settings.general_tasks:
        checked = studio.client_path(name, "task folder")
        if checked != name or Path(checked).expanduser().is_dir():
            folder = Path(checked).expanduser()
            if not folder.is_dir() or not folder_tasks(folder):
                raise SpecError(f"cannot evaluate: {field_label('general_tasks')} (general_tasks): '{name}' is not a "
                                "folder of task YAML files with a `task:` name (give a harness task name or such a "
                                "folder)")
        tasks.append(checked)
    judge = settings.judge
    if judge and not is_endpoint(judge):
        judge = check_client_path(judge, [*studio.client_roots(), studio.data_dir / "models"], "judge",
                                  hint="a local judge model must be inside the app's models folder; or use a Hub id")
    return settings.model_copy(update={"general_tasks": tasks, "judge": judge})


def _format(value: float, share: bool) -> str:
    if share:
        return f"{100 * value:.1f} %"
    return f"{value:.4g}"


def _is_share(score: TaskScore) -> bool:
    return score.metric not in RATE_METRICS and 0.0 <= score.base <= 1.0 and 0.0 <= score.fine_tuned <= 1.0


def general_rows(record: EvaluationRecord) -> list[dict[str, Any]]:
    """Each general task as the report shows it: its name (with what a stand-in stands in for), its headline
    metric and which way is better, both sides, the change with its 95 % interval in words, n, beyond noise."""
    rows = []
    for score in record.general_scores:
        change = general_change(score)
        share = _is_share(score)
        rows.append({"task": change.task, "metric": score.metric, "higher_is_better": score.higher_is_better,
                     "base": score.base, "fine_tuned": score.fine_tuned, "base_text": _format(score.base, share),
                     "fine_tuned_text": _format(score.fine_tuned, share), "change": change.text,
                     "low": change.low, "high": change.high, "n": score.n, "drop_beyond_noise": change.worse,
                     "better_beyond_noise": change.better, "stand_in_for": score.stand_in_for,
                     "source": score.source})
    return rows


def general_table(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """general_rows as the table's cells (GENERAL_COLUMNS)."""
    return [[r["task"], f"{r['metric'].replace('_', ' ')} ({'higher' if r['higher_is_better'] else 'lower'} is "
             "better)", r["base_text"], r["fine_tuned_text"], r["change"], r["n"],
             DROP_MARK if r["drop_beyond_noise"] else "better" if r["better_beyond_noise"] else "within noise"]
            for r in rows]


def held_out_table(rows: list[dict[str, str]]) -> list[list[str]]:
    """metrics_table's rows as the table's cells (HELD_OUT_COLUMNS)."""
    return [[r["metric"], r["base"], r["fine-tuned"], r["better"], r["change"], r["n"], r["meaning"]] for r in rows]


def report_view(job_id: str, record: Optional[EvaluationRecord]) -> dict[str, Any]:
    """The report as JSON: state (none | running | succeeded | failed | interrupted), fraction, message, verdict
    {level, text, task, general, flagged}, held_out (metrics_table rows) and held_out_rows, general (general_rows),
    judge {judge, summary, template, win_rate, ci, prompts, wins, losses, ties}, notes, error, settings, times."""
    if record is None:
        return {"job_id": job_id, "state": "none", "fraction": 0.0, "message": NOT_EVALUATED, "verdict": None,
                "held_out": [], "held_out_rows": 0, "general": [], "judge": None, "notes": [], "error": None,
                "settings": None, "started": None, "finished": None, "seconds": {}}
    held = record.held_out_report
    verdict = {k: record.verdict.get(k) for k in ("level", "text", "task", "general", "flagged")} \
        if record.verdict else None
    judge = None
    if record.judge:
        result = JudgeResult.from_dict(record.judge)
        judge = {"judge": result.judge, "summary": result.summary(), "template": result.template,
                 "win_rate": result.win_rate, "ci": result.ci, "prompts": result.prompts, "wins": result.wins,
                 "losses": result.losses, "ties": result.ties}
    return {"job_id": job_id, "state": record.state, "fraction": round(record.fraction, 4),
            "message": record.message, "verdict": verdict, "held_out": metrics_table(held) if held else [],
            "held_out_rows": held.rows if held else 0, "general": general_rows(record), "judge": judge,
            "notes": list(record.notes), "error": record.error, "settings": record.settings or None,
            "started": record.started or None, "finished": record.finished, "seconds": dict(record.seconds)}


class EvaluationService:
    """The report actions of one app (`studio`: its job store, path rules and path scrubbing: a StudioService)."""

    def __init__(self, studio: Any):
        self.studio = studio

    def job_settings(self, job_id: str) -> EvaluationSpec:
        """The job's own evaluation section (its spec.yaml), the defaults when it has none."""
        from ..spec import load_job_spec

        spec_file = Path(self.studio.jobs.get(job_id).job_dir) / SPEC_FILE
        try:
            return load_job_spec(spec_file)[0].evaluation if spec_file.is_file() else EvaluationSpec()
        except (ValueError, OSError):  # a spec this version cannot read: the defaults, the form shows them
            return EvaluationSpec()

    def settings_for(self, job_id: str, given: dict[str, Any]) -> EvaluationSpec:
        """The settings a report of `job_id` runs with: the client's values (checked first: a wrong value or a
        judge endpoint they may not use is refused before the job is even looked up) over the job's section."""
        confine(parse_settings(EvaluationSpec(), given), self.studio)
        return confine(parse_settings(self.job_settings(job_id), given), self.studio)

    def _finished_job(self, job_id: str) -> Any:
        return finished_job(self.studio, job_id, "evaluate", "the report compares a trained adapter with its base")

    def start(self, job_id: str, settings: EvaluationSpec) -> dict[str, Any]:
        """Start the report of a finished job in its own process with the caller's own Hub token (False: none at
        all). Refused while a report of the same job runs."""
        from ..evaluation.run import preflight, start_evaluation

        job = self._finished_job(job_id)
        preflight(job.job_dir)  # EvaluationRefused (a ValueError): said before a process starts
        with start_lock(str(job.job_dir)):
            running = read_record(job.job_dir)
            if running and running.state == "running":  # also one just started by this app (its own pid)
                raise JobStateError(f"an evaluation of job {job.id} is already running ({running.fraction:.0%}, "
                                    f"{running.message}); wait for it to end (/evaluation_report shows it)")
            start_evaluation(job.job_dir, settings, hub_token())
        return self.status(job_id)

    def evaluate(self, job_id: str, settings: EvaluationSpec, interval: float = 1.0,
                 timeout: Optional[float] = None) -> Iterator[dict[str, Any]]:
        """/evaluate_job: start the report and yield its status at every change until it ends (the last item holds
        the whole report)."""
        self.start(job_id, settings)
        yield from self.follow(job_id, interval, timeout)

    def follow(self, job_id: str, interval: float = 1.0, timeout: Optional[float] = None) -> Iterator[dict[str, Any]]:
        yield from follow_changes(lambda: self.status(job_id), lambda s: (
            s["state"], s["fraction"], s["message"], len(s["held_out"]), len(s["general"]), bool(s["judge"]),
            s["finished"]), interval, EVALUATION_STREAM_MAX_SECONDS if timeout is None else timeout)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's report now (report_view), server paths replaced by names."""
        job = self.studio.jobs.get(job_id)
        return self.studio.calm(report_view(job.id, read_record(job.job_dir)))
