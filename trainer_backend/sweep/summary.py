"""From the study and the trials' jobs to sweep.json: one row per trial, the best trial, the cost, the importances."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..job_status import JobStatus
from ..jobs.store import Job
from ..spec import JobSpec
from . import budget
from .objective import Objective
from .record import SweepRecord, TrialRow, read_record

# What the driver notes on each Optuna trial (its user attributes; kept in the study, so a resumed driver has them).
ATTR_JOB = "job_id"              # the trial's job
ATTR_BASELINE = "baseline"       # the sweep spec's own settings
ATTR_PAUSED = "paused"           # stopped by the sweep's Stop: Resume continues it
ATTR_PRIOR = "prior_seconds"     # running time of its earlier runs (before a resume)
ATTR_NOTE = "note"               # why it was pruned, failed or stopped
ATTR_PRUNE = "prune_step"        # the evaluation step its pruner stopped it at
ATTR_STOP_REASON = "stop_reason"  # "budget": the sweep's time or cost budget stopped it


def run_seconds(job: Job) -> float:
    """Running time of the job's current (or last) run."""
    if not job.started_at:
        return 0.0
    return max((job.finished_at or time.time()) - job.started_at, 0.0)


def trial_row(trial: Any, job: Optional[Job], objective: Objective, price: Optional[budget.Price]) -> TrialRow:
    """One row of the trials table: the Optuna trial, its job's status and time, and its cost."""
    attrs = trial.user_attrs
    row = TrialRow(number=trial.number, job_id=attrs.get(ATTR_JOB), params=dict(trial.params),
                   intermediate=[[s, v] for s, v in sorted(trial.intermediate_values.items())],
                   pruned_at_step=attrs.get(ATTR_PRUNE), note=attrs.get(ATTR_NOTE),
                   baseline=bool(attrs.get(ATTR_BASELINE)))
    state = trial.state.name
    if state == "COMPLETE":
        row.state, row.value = "complete", trial.value
    elif state == "PRUNED":
        row.state = "stopped" if attrs.get(ATTR_STOP_REASON) == "budget" else "pruned"
    elif state == "FAIL":
        row.state = "failed"
    elif job is None or job.status == JobStatus.QUEUED:
        row.state = "queued"
    else:
        row.state = "stopped" if job.status == JobStatus.STOPPED else "running"
    if row.value is None and row.intermediate:  # the last value it reported (a held-out objective: its eval loss)
        row.value = abs(row.intermediate[-1][1]) if objective.heldout_metric else row.intermediate[-1][1]
    if job is not None:
        row.seconds = round(float(attrs.get(ATTR_PRIOR, 0.0)) + run_seconds(job), 1)
        row.cost_usd = budget.trial_cost(price, row.seconds)
    return row


def build_record(spec: JobSpec, study: Any, job_of: Callable[[Any], Optional[Job]], objective: Objective,
                 price: Optional[budget.Price], previous: SweepRecord, state: str, elapsed: float,
                 job_dir: Path) -> SweepRecord:
    sweep = spec.sweep
    assert sweep is not None
    rows = [trial_row(t, job_of(t), objective, price) for t in study.get_trials(deepcopy=False)]
    complete = [r for r in rows if r.state == "complete" and r.value is not None]
    pick = min if objective.direction == "minimize" else max
    best = pick(complete, key=lambda r: r.value).number if complete else None  # type: ignore[arg-type,return-value]
    on_disk = read_record(job_dir)  # Promote (another process) records the job it made there
    return SweepRecord(
        state=state, objective=objective.name, objective_label=objective.label, direction=objective.direction,  # type: ignore[arg-type]
        parameters={k: r.describe() for k, r in sweep.parameters.items()}, trials_planned=sweep.trials,
        parallel=sweep.parallel, pruner=sweep.pruner, trials=rows, best=best, importances=previous.importances,
        elapsed_seconds=round(elapsed, 1),
        cost_usd=round(sum(r.cost_usd or 0.0 for r in rows), 6) if price is not None else None,
        estimate=previous.estimate, promoted=on_disk.promoted if on_disk else previous.promoted,
        message=previous.message, notes=previous.notes)


def importances(study: Any) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) over the complete trials: {} until two trials differ in result."""
    from optuna.importance import get_param_importances
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if len(complete) < 2 or len({t.value for t in complete}) < 2:
        return {}
    try:
        return {k: round(float(v), 4) for k, v in get_param_importances(study).items()}
    except (RuntimeError, ValueError):  # e.g. every complete trial had the same settings
        return {}
