"""The search space of a sweep as Optuna distributions, and the spec of each trial.

A trial's spec is the sweep's own spec without its `sweep` section, with the trial's values set, and with what a
trial must not do switched off: no Hub push and no export (Promote does those for the winner), the evaluation report
only when the objective is measured by it (held-out part only), and the first `sweep.max_rows` rows when asked.
"""
from __future__ import annotations

from typing import Any

from ..spec import JobSpec
from ..spec_sweep import field_info, get_value, set_value, value_kind
from .objective import Objective

TRIAL_SYNC_EVERY = 15  # seconds between a synced trial's event uploads: its pruner reads them (HF Jobs)


def distributions(spec: JobSpec) -> dict[str, Any]:
    """Optuna distributions of the searched fields, by dotted key, in the spec's order."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    assert spec.sweep is not None
    out: dict[str, Any] = {}
    for key, rng in spec.sweep.parameters.items():
        kind = value_kind(field_info(JobSpec, key))
        if rng.choices is not None:
            out[key] = CategoricalDistribution(tuple(int(c) if kind == "int" and isinstance(c, float) else c
                                                     for c in rng.choices))
        elif kind == "int":
            assert rng.low is not None and rng.high is not None
            out[key] = IntDistribution(int(rng.low), int(rng.high), log=rng.log, step=int(rng.step or 1))
        else:
            out[key] = FloatDistribution(rng.low, rng.high, log=rng.log, step=rng.step)  # type: ignore[arg-type]
    return out


def base_values(spec: JobSpec) -> dict[str, Any]:
    """The sweep spec's own value of each searched field that its range or choices contain (the baseline trial)."""
    raw = spec.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key, dist in distributions(spec).items():
        value = get_value(raw, key)
        if value is None:
            continue
        choices = getattr(dist, "choices", None)
        if choices is not None:
            if value in choices:
                out[key] = value
        elif dist.low <= value <= dist.high:
            out[key] = value
    return out


def trial_name(spec: JobSpec, number: int) -> str:
    suffix = f"-t{number + 1}"
    return spec.project_name[: 96 - len(suffix)] + suffix


def _with_values(spec: JobSpec, params: dict[str, Any], name: str) -> JobSpec:
    """`spec` without its sweep section, named `name`, with `params` (dotted keys) set and checked."""
    raw = spec.model_dump(mode="json", exclude_none=True)
    if spec.hub.token is not None:  # model_dump writes '**********' for a secret: the real one goes on
        set_value(raw, "hub.token", spec.hub.token.get_secret_value())
    for key in ("sweep", "output_dir"):
        raw.pop(key, None)
    for key, value in params.items():
        set_value(raw, key, value)
    out = JobSpec.model_validate(raw)
    out.project_name = name
    return out


def trial_spec(spec: JobSpec, params: dict[str, Any], number: int, objective: Objective) -> dict[str, Any]:
    """The raw spec of trial `number` (0-based) with `params`: submitted as a job of its own."""
    assert spec.sweep is not None
    trial = _with_values(spec, params, trial_name(spec, number))
    if spec.sweep.max_rows:
        rows = trial.data.max_rows
        trial.data.max_rows = min(rows, spec.sweep.max_rows) if rows else spec.sweep.max_rows
    trial.hub.push_to_hub = False
    if trial.synced:
        trial.hub.sync_every = min(trial.hub.sync_every, TRIAL_SYNC_EVERY)
    trial.export.formats = []
    if objective.heldout_metric is not None:  # the report's held-out part alone: it is what the trial is judged by
        trial.evaluation.auto, trial.evaluation.general_tasks, trial.evaluation.judge = True, [], None
    else:
        trial.evaluation.auto = False
    return trial.to_public_dict()


def promoted_spec(spec: JobSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A full run with the best trial's settings: the sweep's spec (all its data, its Hub push, export and report)
    without the `sweep` section."""
    suffix = "-best"
    return _with_values(spec, params, spec.project_name[: 96 - len(suffix)] + suffix).to_public_dict()
