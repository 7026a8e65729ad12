"""What a sweep may spend, and what it has spent: HF Jobs hardware at its live price, and the sweep's running time.

Before the first trial: the plan's estimate for one trial (training/plan.py on the Job's hardware) times the trials
is checked against `sweep.max_cost`; without an estimate (CPU hardware) each trial counts at its `compute.timeout`,
the most it can cost. While the sweep runs, every trial's cost is its hardware's price times its running time; no
trial starts when the spend plus one more trial's estimate passes the budget, and running ones stop at the budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..spec import JobSpec
from ..spec_compute import timeout_seconds

JOB_START_SECONDS = 120.0  # an HF Job's scheduling and image start, billed before the first step (rough)


@dataclass(frozen=True)
class Price:
    usd_per_second: float  # all nodes of one trial together
    label: str             # e.g. "a10g-small at $1.00/h"
    gpus: int = 0          # accelerators per machine: the plan estimates a time for GPU hardware only


def trial_price(spec: JobSpec, token: Optional[str]) -> Optional[Price]:
    """The live HF Jobs price of one trial of `spec` (None on this machine: no price)."""
    if spec.compute.backend != "hf_jobs":
        return None
    from ..hub.jobs_api import list_flavors

    flavor = next((f for f in list_flavors(token) if f.name == spec.compute.flavor), None)
    if flavor is None:
        return None
    nodes = f" x {spec.compute.nodes}" if spec.compute.nodes > 1 else ""
    return Price(flavor.usd_per_hour * spec.compute.nodes / 3600, f"{flavor.name}{nodes} at ${flavor.usd_per_hour:.2f}/h",
                 flavor.gpus)


@dataclass(frozen=True)
class Estimate:
    trial_seconds: float
    how: str                      # "the plan's estimate" | "its time limit"
    cost_usd: Optional[float]     # all trials
    text: str


def estimate(spec: JobSpec, price: Optional[Price]) -> Estimate:
    """The sweep's expected cost: one trial's planned time (or, when none is known, its time limit) x the trials.
    The trial planned is the first one, the sweep spec's own values."""
    from .objective import resolve
    from .space import trial_spec

    assert spec.sweep is not None
    trial = JobSpec.model_validate(trial_spec(spec, {}, 0, resolve(spec.sweep)))
    n = spec.sweep.trials
    seconds, how = None, "its time limit"
    if price is not None and price.gpus:  # a CPU's speed FLOPs do not predict: the plan has no time for one
        from ..training.plan import plan_job

        try:
            planned = plan_job(trial, hardware=spec.compute.flavor).time_seconds.value
        except Exception:  # noqa: BLE001 - no estimate: the time limit stands in (the most a trial can cost)
            planned = None
        if planned is not None:
            seconds, how = planned + JOB_START_SECONDS, "the plan's estimate"
    if seconds is None:
        seconds = float(timeout_seconds(spec.compute.timeout)) if spec.compute.timeout else 0.0
    if price is None:
        return Estimate(seconds, how, None, f"{n} trials on this machine (no hourly price)")
    cost = price.usd_per_second * seconds * n
    return Estimate(seconds, how, cost, f"~${cost:.2f} for {n} trials on {price.label} ({how}: "
                                        f"~{seconds / 60:.0f} min each)")


def over_budget(spec: JobSpec, est: Estimate) -> Optional[str]:
    """The refusal when the estimate is above `sweep.max_cost`, or None."""
    assert spec.sweep is not None
    limit = spec.sweep.max_cost
    if limit is None or est.cost_usd is None or est.cost_usd <= limit:
        return None
    per_trial = est.cost_usd / spec.sweep.trials
    fits = int(limit // per_trial) if per_trial else 0
    return (f"the sweep's estimate {est.text} is above sweep.max_cost ${limit:.2f}: lower sweep.trials to {fits} or "
            f"fewer, use cheaper hardware, set sweep.max_rows, or raise sweep.max_cost")


def trial_cost(price: Optional[Price], seconds: Optional[float]) -> Optional[float]:
    if price is None or seconds is None:
        return None
    return round(price.usd_per_second * seconds, 6)

