"""Sweeps without training (issue 31): what a sweep spec may search and how a wrong one is refused (by the parameter
and with the fix), each trial's spec, the objective read from a trial's events, the cost estimate and budget, and
the Train tab's table of settings to search. The sweeps that train: tests/test_sweep_runs.py."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trainer_backend.errors import SpecError
from trainer_backend.run_events import Eval, Finished, Log
from trainer_backend.spec import JobSpec, parse_spec
from trainer_backend.sweep import budget
from trainer_backend.sweep.actions import check
from trainer_backend.sweep.objective import Objective, final_value, resolve
from trainer_backend.sweep.space import base_values, distributions, promoted_spec, trial_spec
from trainer_backend.ui.sweep_service import parameters_from_table

BASE: dict[str, Any] = {
    "project_name": "s", "model": {"base_model": "some/model"},
    "data": {"path": "d.jsonl", "valid_split": "auto", "max_rows": 500},
    "training": {"eval_strategy": "steps", "eval_steps": 5, "learning_rate": 2e-4},
    "hub": {"push_to_hub": True, "repo_id": "me/best"}, "export": {"formats": ["q4_K_M"]},
}
SEARCH = {"training.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}, "lora.r": {"choices": [8, 16, 32]}}


def sweep_spec(parameters: Any = None, **sweep: Any) -> dict[str, Any]:
    return {**BASE, "sweep": {"parameters": SEARCH if parameters is None else parameters, **sweep}}


def refusal(raw: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    return str(info.value)


@pytest.mark.parametrize("parameters, sweep, section, expected", [
    ({"lora.rank": {"low": 1, "high": 8}}, {}, {}, "sweep.parameters['lora.rank']: not a spec field"),
    ({"lora.r": {"low": 4, "high": 5000}}, {}, {}, "a trial with lora.r=5000 would be refused: Input should be less "
                                                   "than or equal to 1024"),
    ({"training.scheduler": {"low": 1, "high": 3}}, {}, {}, "a choice field takes choices, not a range"),
    ({"training.scheduler": {"choices": ["cosine", "sometimes"]}}, {}, {}, "training.scheduler=sometimes would be refused"),
    ({"data.path": {"choices": ["a.jsonl", "b.jsonl"]}}, {}, {}, "cannot be searched"),
    ({"lora.r": {"low": 8, "high": 4}}, {}, {}, "low (8) must be below high (4)"),
    ({"training.learning_rate": {"low": 0, "high": 1e-3, "log": True}}, {}, {}, "a log range needs low > 0"),
    ({}, {}, {}, "sweep.parameters is empty: name at least one field to search"),
    (None, {}, {"training": {"eval_strategy": "no"}}, "sweep.pruner=hyperband stops trials at their evaluations"),
    (None, {"objective": "reward"}, {}, "sweep.objective=reward is GRPO's mean reward: choose training.trainer=grpo"),
    (None, {"max_cost": 5}, {}, "sweep.max_cost bounds what HF Jobs hardware costs"),
    (None, {"objective": "accuracy"}, {}, "'accuracy' is not an objective"),
    (None, {"time_budget": "soon"}, {}, "'soon' is not a duration"),
])
def test_a_wrong_sweep_is_refused_by_its_parameter_with_the_fix(parameters: Any, sweep: dict, section: dict,
                                                                expected: str) -> None:
    raw = sweep_spec(parameters, **sweep)
    for key, values in section.items():
        raw[key] = {**raw[key], **values}
    assert expected in refusal(raw)


def test_an_objective_the_report_cannot_measure_is_refused_before_it_is_queued() -> None:
    spec, _ = parse_spec(sweep_spec(objective="heldout.bogus"))
    with pytest.raises(SpecError, match="the evaluation report has no metric 'bogus'.*heldout.exact_match"):
        check(spec)
    check(parse_spec(sweep_spec(objective="heldout.exact_match"))[0])
    with pytest.raises(SpecError, match="no sweep section"):
        check(parse_spec(BASE)[0])


def test_directions_follow_the_objective() -> None:
    def direction(objective: str, given: str = "auto") -> str:
        return parse_spec(sweep_spec(objective=objective, direction=given))[0].sweep.resolved_direction()  # type: ignore[union-attr]

    assert direction("eval_loss") == "minimize" and direction("heldout.perplexity") == "minimize"
    assert direction("heldout.exact_match") == "maximize" and direction("eval_rewards/accuracies") == "maximize"
    assert direction("eval_rewards/accuracies", "minimize") == "minimize"


def test_a_trial_trains_its_values_and_nothing_else_the_promoted_run_all() -> None:
    spec, _ = parse_spec(sweep_spec(max_rows=50))
    objective = resolve(spec.sweep)  # type: ignore[arg-type]
    trial = JobSpec.model_validate(trial_spec(spec, {"training.learning_rate": 3e-4, "lora.r": 32}, 2, objective))
    assert trial.sweep is None and trial.project_name == "s-t3"
    assert trial.training.learning_rate == 3e-4 and trial.lora.r == 32
    assert trial.data.max_rows == 50  # sweep.max_rows: cheap trials
    assert not trial.hub.push_to_hub and trial.export.formats == [] and not trial.evaluation.auto
    graded = JobSpec.model_validate(trial_spec(spec, {}, 0, Objective("heldout.exact_match", "maximize")))
    assert graded.evaluation.auto and graded.evaluation.general_tasks == []  # judged by the held-out part alone
    best = JobSpec.model_validate(promoted_spec(spec, {"lora.r": 32}))
    assert best.sweep is None and best.project_name == "s-best" and best.lora.r == 32
    assert best.data.max_rows == 500 and best.hub.push_to_hub and best.export.formats == ["q4_K_M"]
    assert spec.sweep is not None and spec.training.learning_rate == 2e-4, "making trials changes no sweep spec"


def test_the_search_space_and_the_baseline() -> None:
    spec, _ = parse_spec(sweep_spec({**SEARCH, "lora.alpha": {"low": 8, "high": 64, "step": 8},
                                     "lora.dropout": {"low": 0.0, "high": 0.2}}))
    dists = distributions(spec)
    assert dists["training.learning_rate"].log and dists["lora.r"].choices == (8, 16, 32)
    assert dists["lora.alpha"].step == 8 and type(dists["lora.alpha"]).__name__ == "IntDistribution"
    assert base_values(spec) == {"training.learning_rate": 2e-4, "lora.r": 16, "lora.alpha": 32, "lora.dropout": 0.05}
    outside, _ = parse_spec(sweep_spec({"lora.r": {"choices": [4, 8]}}))
    assert base_values(outside) == {}  # the spec's own rank is not among the choices: no baseline trial


def test_the_objective_is_read_from_the_trials_own_events(tmp_path: Path) -> None:
    events = [Eval(step=5, eval_loss=3.0), Log(step=5, loss=2.9, reward=0.2), Eval(step=10, eval_loss=2.5),
              Log(step=10, loss=2.4, reward=0.6), Log(step=15, loss=2.3, reward=0.7)]
    loss = Objective("eval_loss", "minimize")
    assert [loss.intermediate(e) for e in events if loss.intermediate(e)] == [(5, 3.0), (10, 2.5)]
    assert final_value(loss, events, tmp_path) == 2.5
    assert final_value(loss, [*events, Finished(step=15, metrics={"eval_loss": 2.4})], tmp_path) == 2.4
    reward = Objective("reward", "maximize")
    assert reward.intermediate(events[1]) == (5, 0.2)
    assert final_value(reward, events, tmp_path) == pytest.approx((0.2 + 0.6 + 0.7) / 3)
    held = Objective("heldout.exact_match", "maximize")
    assert held.intermediate(events[0]) == (5, -3.0)  # the pruner follows eval loss, turned to "higher is better"
    assert final_value(held, events, tmp_path) is None  # no evaluation.json: nothing measured


def test_the_estimate_bounds_the_cost_before_the_start() -> None:
    raw = sweep_spec(trials=10, max_cost=1.0)
    raw["compute"] = {"backend": "hf_jobs", "flavor": "cpu-basic", "timeout": "30m", "image": "x"}
    spec, _ = parse_spec(raw)
    price = budget.Price(usd_per_second=0.01 / 60, label="cpu-basic at $0.60/h")  # a CPU: no planned time
    est = budget.estimate(spec, price)
    assert est.how == "its time limit" and est.cost_usd == pytest.approx(0.01 / 60 * 1800 * 10)
    refused = budget.over_budget(spec, est)
    assert refused and "above sweep.max_cost $1.00: lower sweep.trials to 3 or fewer" in refused
    assert budget.over_budget(parse_spec({**raw, "sweep": {**raw["sweep"], "max_cost": 5.0}})[0], est) is None
    assert budget.trial_cost(price, 60.0) == pytest.approx(0.01) and budget.trial_cost(None, 60.0) is None


def test_the_train_tabs_table_of_settings_names_a_wrong_row() -> None:
    rows = [["training.learning_rate", "1e-5", "1e-3", True, ""], ["lora.r", "", "", False, "8, 16"],
            ["lora.dropout", "0", "0.2", "false", ""], ["", "", "", False, ""]]
    parameters, problems = parameters_from_table(rows)
    assert problems == []
    assert parameters == {"training.learning_rate": {"log": True, "low": 1e-5, "high": 1e-3},
                          "lora.r": {"choices": [8, 16]}, "lora.dropout": {"log": False, "low": 0.0, "high": 0.2}}
    _, problems = parameters_from_table([["lora.r", "4", "lots", False, ""], ["", "1", "", False, ""],
                                         ["lora.alpha", "9", "3", False, ""]])
    assert problems == ["row 1 (lora.r): 'To' must be a number (it is 'lots'), or give choices",
                        "row 2: the setting (spec key) is empty, e.g. training.learning_rate",
                        "lora.alpha: low (9) must be below high (3)"]
