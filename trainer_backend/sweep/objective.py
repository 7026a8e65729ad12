"""What a sweep's trial is judged by: the values it reports while it trains (for the pruner) and its final value.

The objective's name (spec_sweep.SweepSpec.objective) says where both come from:
  eval_<metric>     each Eval record of the trial's events; final: the run's Finished metrics, else the last Eval
  reward            GRPO's Log records (`reward`); final: the mean of the last three logged values
  heldout.<metric>  final: the trial's evaluation report (evaluation.json, held-out part, fine-tuned side); while it
                    trains the pruner follows its eval loss (negated when higher is better, so "better" agrees)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from ..evaluation.metrics import METRICS, metric_info
from ..evaluation.tools import is_tool_metric
from ..run_events import Eval, Finished, Log, RunEvent, is_number
from ..spec_sweep import HELDOUT_PREFIX, SweepSpec

REWARD_TAIL = 3  # logged rewards averaged for a GRPO trial's final value (one log line is noisy)


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Literal["minimize", "maximize"]

    @property
    def heldout_metric(self) -> Optional[str]:
        return self.name.removeprefix(HELDOUT_PREFIX) if self.name.startswith(HELDOUT_PREFIX) else None

    @property
    def label(self) -> str:
        metric = self.heldout_metric
        if metric is not None:
            return f"held-out {metric_info(metric)[0].lower()}"
        return {"eval_loss": "eval loss", "reward": "mean reward"}.get(self.name, self.name)

    @property
    def better(self) -> str:
        return "lower is better" if self.direction == "minimize" else "higher is better"

    def intermediate(self, event: RunEvent) -> Optional[tuple[int, float]]:
        """(step, value) the pruner compares, from one event of the trial; None when the event carries none."""
        if self.name == "reward":
            value = event.metric("reward") if isinstance(event, Log) else None
            return (event.step, value) if isinstance(event, Log) and value is not None else None
        if not isinstance(event, Eval):
            return None
        if self.heldout_metric is not None:  # measured after training only: follow the eval loss meanwhile
            loss = event.eval_loss
            return (event.step, loss if self.direction == "minimize" else -loss) if is_number(loss) else None
        value = event.metric(self.name)
        return (event.step, value) if value is not None else None


def resolve(sweep: SweepSpec) -> Objective:
    return Objective(sweep.objective, sweep.resolved_direction())


def objective_problem(objective: Objective) -> Optional[str]:
    """What is wrong with a held-out objective's metric name (the report has no such metric), or None."""
    metric = objective.heldout_metric
    if metric is None or metric in METRICS or is_tool_metric(metric) or metric.startswith("reward/"):
        return None
    known = ", ".join(f"{HELDOUT_PREFIX}{m}" for m in METRICS)
    return f"sweep.objective={objective.name}: the evaluation report has no metric '{metric}' (it has {known}, and " \
           "the tool_* metrics of tool-calling jobs)"


def final_value(objective: Objective, events: list[RunEvent], job_dir: str | Path) -> Optional[float]:
    """The value a finished trial is ranked by, or None when its run did not measure it."""
    metric = objective.heldout_metric
    if metric is not None:
        from ..evaluation.record import read_record

        record = read_record(job_dir)
        held_out = (record.held_out or {}) if record else {}
        value = (held_out.get("fine_tuned") or {}).get(metric)
        return float(value) if is_number(value) else None
    if objective.name == "reward":
        rewards = [v for e in events if isinstance(e, Log) and (v := e.metric("reward")) is not None]
        tail = rewards[-REWARD_TAIL:]
        return sum(tail) / len(tail) if tail else None
    finished = next((e for e in reversed(events) if isinstance(e, Finished)), None)
    if finished is not None and is_number(finished.metrics.get(objective.name)):
        return float(finished.metrics[objective.name])
    evals = [v for e in events if isinstance(e, Eval) and (v := e.metric(objective.name)) is not None]
    return evals[-1] if evals else None
