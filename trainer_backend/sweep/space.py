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


def trial_spec(spec: JobSpec, params: dict[str, Any], number: int, objective: Objective) -> dict[str, Any]:
    """The raw spec of trial `number` (0-based) with `params`: submitted as a job of its own."""
    assert spec.sweep is not None
    raw = spec.to_public_dict()
    raw.pop("sweep", None)
    raw.pop("output_dir", None)
    raw["project_name"] = trial_name(spec, number)
    for key, value in params.items():
        set_value(raw, key, value)
    if spec.sweep.max_rows:
        rows = spec.data.max_rows
        raw["data"]["max_rows"] = min(rows, spec.sweep.max_rows) if rows else spec.sweep.max_rows
    raw["hub"]["push_to_hub"] = False
    if spec.synced:
        raw["hub"]["sync_every"] = min(spec.hub.sync_every, TRIAL_SYNC_EVERY)
    raw["export"]["formats"] = []
    evaluation = raw["evaluation"]
    if objective.heldout_metric is not None:
        evaluation.update(auto=True, general_tasks=[])
        evaluation.pop("judge", None)
    else:
        evaluation["auto"] = False
    return raw


def promoted_spec(spec: JobSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A full run with the best trial's settings: the sweep's spec (all its data, its Hub push, export and report)
    without the `sweep` section."""
    raw = spec.to_public_dict()
    raw.pop("sweep", None)
    raw.pop("output_dir", None)
    suffix = "-best"
    raw["project_name"] = spec.project_name[: 96 - len(suffix)] + suffix
    for key, value in params.items():
        set_value(raw, key, value)
    return raw
