"""What people do with a sweep, for the CLI, the API and the Jobs tab: start one, read it, promote its best trial.

Stop and Resume are the job's own (JobManager.stop / resume): the driver pauses and picks up its trials."""
from __future__ import annotations

from typing import Any, Optional

from ..errors import SpecError
from ..jobs.manager import JobManager
from ..jobs.store import Job, JobStateError
from ..spec import JobSpec
from .objective import objective_problem, resolve
from .record import SweepRecord, read_record, write_record
from .space import promoted_spec


def check(spec: JobSpec) -> None:
    """Refuse a spec that is no sweep, or whose objective the report cannot measure (SpecError, with the fix)."""
    if spec.sweep is None:
        raise SpecError("this spec has no sweep section: add `sweep:` with the parameters to search (e.g. "
                        "training.learning_rate: {low: 1e-5, high: 1e-3, log: true}), or start it as a job")
    problem = objective_problem(resolve(spec.sweep))
    if problem:
        raise SpecError(problem)


def over_budget(spec: JobSpec, token: Optional[str]) -> Optional[str]:
    """The refusal of a sweep on HF Jobs whose estimate is above its `max_cost` (budget.py), or None. The Hub's
    price list unreachable: None here; the sweep's driver checks again before its first trial."""
    from ..hub.client import HubError
    from . import budget

    assert spec.sweep is not None
    if spec.sweep.max_cost is None or spec.compute.backend != "hf_jobs":
        return None
    try:
        price = budget.trial_price(spec, token)
    except HubError:
        return None
    return budget.over_budget(spec, budget.estimate(spec, price))


def start(manager: JobManager, spec: JobSpec, **submit: Any) -> Job:
    """Queue the sweep (a job of its own: its driver starts at once, its trials queue like any job); refused
    (SpecError) when it is no sweep, its objective cannot be measured or its estimate is above its cost budget."""
    check(spec)
    refusal = over_budget(spec, submit.get("hub_token") or (spec.hub.token.get_secret_value()
                                                            if spec.hub.token else None))
    if refusal:
        raise SpecError(refusal)
    return manager.submit(spec, **submit)


def sweep_of(manager: JobManager, job_id: str) -> tuple[Job, JobSpec]:
    job = manager.get(job_id)
    spec = job.job_spec
    if spec is None or spec.sweep is None:
        raise JobStateError(f"job {job.id} is not a sweep")
    return job, spec


def status(manager: JobManager, job_id: str) -> dict[str, Any]:
    """The sweep job (status, times) with its record: trials, best trial, importances, cost."""
    job, _ = sweep_of(manager, job_id)
    record = read_record(job.job_dir) or SweepRecord(state="running", message="waiting for its first trial")
    data = record.to_dict()
    data.update(id=job.id, name=job.name, status=job.status, error=job.error,
                best_trial=record.best + 1 if record.best is not None else None)
    return data


def promote(manager: JobManager, job_id: str, *, continue_epochs: Optional[float] = None,
            owner: Optional[str] = None, hub_token: Optional[str] = None,
            hub_identity: Optional[str] = None) -> Job:
    """The best trial as a full run: a new job with its settings on all the data, with the sweep spec's own Hub push,
    export and report; or, with `continue_epochs`, the best trial itself trained that many epochs more."""
    sweep_job, spec = sweep_of(manager, job_id)
    record = read_record(sweep_job.job_dir)
    best = record.best_trial if record else None
    if record is None or best is None or best.job_id is None:
        raise JobStateError(f"sweep {sweep_job.id} has no finished trial yet: promote it when one has a result")
    if continue_epochs:
        job = manager.continue_training(best.job_id, continue_epochs, owner=owner, hub_token=hub_token,
                                        hub_identity=hub_identity)
    else:
        job = manager.submit(promoted_spec(spec, best.params), owner=owner or sweep_job.owner, env=sweep_job.env,
                             parent_id=best.job_id, hub_token=hub_token, hub_identity=hub_identity)
    record = read_record(sweep_job.job_dir) or record
    record.promoted = job.id
    write_record(sweep_job.job_dir, record)
    return job
