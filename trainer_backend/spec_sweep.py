"""A sweep: a search for good settings, as a job of its own (`sweep:` in a job spec).

The rest of the spec is the base every trial starts from; `sweep.parameters` names the spec fields to search (any
number, true/false or fixed-choice field, by its dotted key) with a range or a list of choices. Optuna samples the
trials (trainer_backend/sweep/), each trial is an ordinary job, and a pruner stops a hopeless one at an evaluation.

Objectives, in the order a run measures them:
  eval_loss, eval_<metric>   what the trainer logs at each evaluation (eval_rewards/accuracies, eval_accuracy, ...)
  reward                     GRPO's mean reward, logged every `training.logging_steps`
  heldout.<metric>           the evaluation report's held-out part after training (exact_match, rouge_l, reward,
                             preference_accuracy, ...); pruning then follows the eval loss of the evaluations
"""
from __future__ import annotations

import copy
import typing
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ValidationError, field_validator, model_validator

from .spec_base import _f, _Section
from .spec_compute import timeout_seconds

SweepSampler = Literal["tpe", "random"]
SweepPruner = Literal["hyperband", "successive_halving", "median", "none"]
Direction = Literal["auto", "minimize", "maximize"]
HELDOUT_PREFIX = "heldout."
# Keys a sweep may not search: where the job lives, what it trains on, and the sweep itself.
NOT_SEARCHABLE = ("project_name", "output_dir", "sweep", "model.base_model", "data.path", "hub.", "compute.",
                  "training.resume_from_checkpoint", "training.trainer")
_SWEEP = "sweep"  # the form group of these fields: the Train tab's "Find good settings" box


class ParamRange(_Section):
    """One searched field: a range (`low`..`high`, optionally on a log scale or in steps) or a list of choices."""
    low: Optional[float] = _f(None, "Smallest value tried.")
    high: Optional[float] = _f(None, "Largest value tried.")
    log: bool = _f(False, "Sample on a log scale (learning rates).")
    step: Optional[float] = _f(None, "Try only multiples of this step above low (e.g. 8 for lora.alpha).", gt=0)
    choices: Optional[list[Union[bool, int, float, str]]] = _f(None, "The values tried (instead of a range).")

    @model_validator(mode="after")
    def _range_or_choices(self) -> "ParamRange":
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices is empty: list at least one value")
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high (a range), or choices")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (it is {self.low:g})")
        if self.log and self.step is not None:
            raise ValueError("a range is either on a log scale or in steps, not both")
        return self

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        scale = " (log scale)" if self.log else f" in steps of {self.step:g}" if self.step else ""
        return f"{self.low:g} to {self.high:g}{scale}"


class SweepSpec(_Section):
    parameters: dict[str, ParamRange] = _f(
        {}, "The spec fields searched, by dotted key, each with a range or choices, e.g. training.learning_rate: "
            "{low: 1e-5, high: 1e-3, log: true}; lora.r: {choices: [8, 16, 32]}.")
    objective: str = _f("eval_loss", "What a trial is judged by: eval_loss, another eval_<metric> the trainer logs, "
                                     "reward (GRPO), or heldout.<metric> of the evaluation report (heldout.exact_match, "
                                     "heldout.reward, ...).", "basic", label="Objective", group=_SWEEP)
    direction: Direction = _f("auto", "Lower or higher objective is better; auto: lower for losses and perplexity, "
                                      "higher for everything else.", label="Better is", group=_SWEEP)
    trials: int = _f(12, "Trials at most (each is a training job of its own).", "basic", ge=1, le=500,
                     label="Trials", group=_SWEEP)
    parallel: int = _f(1, "Trials at once. On this machine they queue for its training slots (one, unless "
                          "LORA_STUDIO_MAX_CONCURRENT_JOBS says more); on HF Jobs each runs on its own hardware.", "basic",
                       ge=1, le=16, label="Trials at once", group=_SWEEP)
    sampler: SweepSampler = _f("tpe", "How the next trial's settings are chosen: tpe (learns from the trials so far; "
                                      "the first few are random) or random.", label="Search", group=_SWEEP)
    pruner: SweepPruner = _f("hyperband", "Stop a hopeless trial at an evaluation: hyperband, successive_halving, "
                                          "median (worse than the median of earlier trials at the same step), or none.",
                             "basic", label="Stop hopeless trials", group=_SWEEP)
    time_budget: Optional[str] = _f(None, "Longest the sweep may run (e.g. 90m, 3h): no trial starts after it, and "
                                          "running ones are stopped (keeping their checkpoints).",
                                    label="Time budget", group=_SWEEP)
    max_cost: Optional[float] = _f(None, "Most the sweep may spend on HF Jobs hardware, in USD: refused before the "
                                         "start when the plan's estimate is above it; trials stop when it is spent.",
                                   gt=0, label="Cost budget (USD)", group=_SWEEP)
    max_rows: Optional[int] = _f(None, "Trials train on the first N rows of each split (cheap trials); Promote trains "
                                       "the best settings on all of it.", ge=1, label="Rows per trial",
                                 group=_SWEEP)
    include_base: bool = _f(True, "The spec's own values are the first trial: the baseline the others must beat.",
                            label="Try my settings first", group=_SWEEP)
    seed: Optional[int] = _f(None, "Seed of the search (default: training.seed): the same seed suggests the same "
                                   "settings.", label="Search seed", group=_SWEEP)

    @field_validator("time_budget")
    @classmethod
    def _duration(cls, v: Optional[str]) -> Optional[str]:
        if v is None or not str(v).strip():
            return None
        timeout_seconds(str(v))  # raises with the accepted forms
        return str(v).strip()

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, v: str) -> str:
        v = v.strip()
        if v == "reward" or (v.startswith("eval_") and len(v) > 5) or \
                (v.startswith(HELDOUT_PREFIX) and len(v) > len(HELDOUT_PREFIX)):
            return v
        raise ValueError(f"'{v}' is not an objective: use eval_loss (or another eval_<metric>), reward (GRPO) or "
                         f"heldout.<metric> (e.g. heldout.exact_match)")

    @property
    def time_budget_seconds(self) -> Optional[int]:
        return timeout_seconds(self.time_budget) if self.time_budget else None

    def resolved_direction(self) -> Literal["minimize", "maximize"]:
        """`direction`, with auto decided from the objective's name (losses and perplexity: lower is better)."""
        if self.direction != "auto":
            return self.direction
        name = self.objective.removeprefix(HELDOUT_PREFIX).lower()
        lower = ("loss" in name or "perplexity" in name or name.startswith("undesirable"))
        return "minimize" if lower else "maximize"


# ---- checks against the rest of the spec (called by JobSpec's own validation) -------------------------------------
def field_info(model: type[BaseModel], key: str) -> Optional[Any]:
    """The pydantic FieldInfo of a dotted key in `model` (a JobSpec), or None when there is no such field."""
    node: Any = model
    info = None
    for part in key.split("."):
        fields = getattr(node, "model_fields", None)
        if not fields or part not in fields:
            return None
        info = fields[part]
        node = _plain(info.annotation)
    return info


def _plain(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def value_kind(info: Any) -> Optional[str]:
    """int | float | bool | choice for a searchable field, None for any other."""
    annotation = _plain(info.annotation)
    if annotation is bool:
        return "bool"
    if annotation in (int, float):
        return annotation.__name__
    if typing.get_origin(annotation) is Literal:
        return "choice"
    return None


def set_value(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def get_value(raw: dict[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def sweep_problems(spec: Any) -> list[str]:
    """What keeps `spec` (a JobSpec with a sweep section) from being searched, each with its fix."""
    sweep: Optional[SweepSpec] = spec.sweep
    if sweep is None:
        return []
    problems: list[str] = []
    if not sweep.parameters:
        problems.append("sweep.parameters is empty: name at least one field to search, e.g. "
                        "training.learning_rate: {low: 1e-5, high: 1e-3, log: true}")
    model = type(spec)
    base = spec.model_dump(mode="json", exclude_none=True)
    base.pop("sweep", None)
    if spec.hub.token is not None:
        base.setdefault("hub", {})["token"] = spec.hub.token.get_secret_value()
    for key, rng in sweep.parameters.items():
        where = f"sweep.parameters['{key}']"
        info = field_info(model, key)
        if info is None or key.startswith(NOT_SEARCHABLE):
            problems.append(f"{where}: {'not a spec field' if info is None else 'cannot be searched'} (search "
                            "numbers, true/false or choice fields such as training.learning_rate, lora.r, lora.alpha, "
                            "lora.dropout, training.epochs, training.batch_size, training.warmup_ratio)")
            continue
        kind = value_kind(info)
        if kind is None:
            problems.append(f"{where}: a {info.annotation} field cannot be searched (numbers, true/false, choices)")
            continue
        if rng.choices is None and kind in ("bool", "choice"):
            problems.append(f"{where}: a {kind} field takes choices, not a range, e.g. {{choices: [...]}}")
            continue
        if rng.choices is None and kind == "int" and rng.log is False and rng.step is not None \
                and not float(rng.step).is_integer():
            problems.append(f"{where}: an integer field needs a whole step (it is {rng.step:g})")
            continue
        values = rng.choices if rng.choices is not None else [rng.low, rng.high]
        for value in values:
            if kind == "int" and isinstance(value, float):
                if not value.is_integer():
                    problems.append(f"{where}: {key} is a whole number; {value:g} is not")
                    break
                value = int(value)
            trial = copy.deepcopy(base)
            set_value(trial, key, value)
            try:
                model.model_validate(trial)
            except ValidationError as exc:
                why = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
                problems.append(f"{where}: a trial with {key}={value} would be refused: {why}")
                break
    problems += _objective_problems(spec, sweep)
    return problems


def _objective_problems(spec: Any, sweep: SweepSpec) -> list[str]:
    tr, problems = spec.training, []
    evaluates = spec.data.valid_split is not None and tr.eval_strategy != "no"
    obj = sweep.objective
    if obj.startswith("eval_") and not evaluates:
        problems.append(f"sweep.objective={obj} is measured at evaluations: set data.valid_split (e.g. auto) and "
                        "training.eval_strategy (steps or epoch)")
    if obj == "reward" and tr.trainer != "grpo":
        problems.append("sweep.objective=reward is GRPO's mean reward: choose training.trainer=grpo, or eval_loss")
    if obj.startswith(HELDOUT_PREFIX) and spec.data.valid_split is None:
        problems.append(f"sweep.objective={obj} is measured on held-out data: set data.valid_split (e.g. auto)")
    if sweep.pruner != "none" and obj != "reward" and not evaluates:
        problems.append(f"sweep.pruner={sweep.pruner} stops trials at their evaluations: set data.valid_split and "
                        "training.eval_strategy=steps with training.eval_steps, or sweep.pruner=none")
    if sweep.max_cost is not None and spec.compute.backend != "hf_jobs":
        problems.append("sweep.max_cost bounds what HF Jobs hardware costs: this sweep runs on this machine "
                        "(compute.backend=local); use sweep.time_budget instead")
    return problems
