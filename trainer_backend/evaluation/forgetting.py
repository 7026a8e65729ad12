"""The trade in one line: how much the task improved against how much general ability the adapter cost.

"Beyond noise" means the 95 % interval of the change (paired over the same examples where the harness logged
them) lies wholly on the worse side AND the change is big enough to matter: a point of accuracy, or 2 % of a
perplexity-like rate. A change inside its interval, or a tiny one, is "within noise".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from .harness import RATE_METRICS, TaskScore
from .metrics import EvalReport, format_change, is_share, metric_info

MIN_SHARE_CHANGE = 0.01   # one point of accuracy
MIN_RATE_CHANGE = 0.02    # 2 % of a perplexity / bits per byte
# The held-out metric that says "did it learn", in order of preference (the first measured on both sides and not
# zero on both: exact match of a tiny model is often 0 and 0, then ROUGE-L or the loss speaks).
TASK_METRICS = ("reward", "preference_accuracy", "desirable_logp", "tool_exact_arguments", "tool_name",
                "exact_match", "rouge_l", "eval_loss")


@dataclass
class GeneralChange:
    task: str                    # as shown: "lora_studio_text (stand-in for sciq)"
    metric: str
    change: float                # fine-tuned - base, in the metric's unit
    low: Optional[float]
    high: Optional[float]
    worse: bool                  # beyond noise, on the worse side
    better: bool                 # beyond noise, on the better side
    text: str                    # "bits per byte +2.10 [+1.90, +2.30] (45 % worse)"


@dataclass
class Verdict:
    level: str                   # "ok", "drop" (a general task got worse beyond noise), "no_general", "no_task"
    text: str                    # the one line people read first
    task: str = ""               # "+12.0 points exact match on your task [+3.1, +20.9]"
    general: str = ""            # "-1.3 points on general tasks, within noise"
    changes: list[GeneralChange] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return self.level == "drop"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flagged": self.flagged}


def task_name(score: TaskScore) -> str:
    return f"{score.task} (stand-in for {score.stand_in_for})" if score.stand_in_for else score.task


def general_change(score: TaskScore) -> GeneralChange:
    delta = score.fine_tuned - score.base
    low, high = (score.change[1], score.change[2]) if score.change else (None, None)
    sign = 1 if score.higher_is_better else -1  # > 0: better
    rate = score.metric in RATE_METRICS
    share = not rate and 0.0 <= score.base <= 1.0 and 0.0 <= score.fine_tuned <= 1.0
    big = abs(delta) >= (MIN_RATE_CHANGE * abs(score.base) if rate else MIN_SHARE_CHANGE if share else 0.0)
    sure_worse = low is not None and high is not None and (high < 0 if sign > 0 else low > 0)
    sure_better = low is not None and high is not None and (low > 0 if sign > 0 else high < 0)
    label = score.metric.replace("_", " ")
    if share:
        text = f"{label} {100 * delta:+.1f} points"
        if low is not None and high is not None:
            text += f" [{100 * low:+.1f}, {100 * high:+.1f}]"
    else:
        text = f"{label} {delta:+.3g}"
        if low is not None and high is not None:
            text += f" [{low:+.3g}, {high:+.3g}]"
        if score.base:
            pct = 100 * delta / abs(score.base)
            text += " (about the same)" if abs(pct) < 0.5 else \
                f" ({abs(pct):.0f} % {'better' if pct * sign > 0 else 'worse'})"
    return GeneralChange(task_name(score), score.metric, delta, low, high, worse=sure_worse and big,
                         better=sure_better and big, text=text)


def task_gain(report: Optional[EvalReport]) -> tuple[Optional[str], str]:
    """The held-out metric that speaks for the task, and its change in words."""
    if report is None:
        return None, ""
    for name in TASK_METRICS:
        base, tuned = report.base.get(name), report.fine_tuned.get(name)
        if base is None or tuned is None:
            continue
        if name in ("exact_match", "rouge_l") and base == 0 and tuned == 0:
            continue
        label = metric_info(name)[0].lower()
        change = report.changes.get(name)
        if is_share(name):
            text = f"{100 * (tuned - base):+.1f} points {label} on your task"
            if change:
                text += f" [{100 * change[1]:+.1f}, {100 * change[2]:+.1f}]"
        else:
            text = f"{label} {base:.3g} → {tuned:.3g} on your task"
            if change:
                text += f" (change {format_change(name, change)})"
        return name, text
    return None, ""


def verdict(report: Optional[EvalReport], general: list[TaskScore]) -> Verdict:
    _, task_text = task_gain(report)
    changes = [general_change(s) for s in general]
    if not changes:
        text = (task_text + "; " if task_text else "") + "no general task measured (no forgetting check)"
        return Verdict("no_general" if task_text else "no_task", text, task_text, "", changes)
    drops = [c for c in changes if c.worse]
    rest = [c for c in changes if not c.worse]
    shares = [c for c in rest if c.metric not in RATE_METRICS and abs(c.change) <= 1.0]
    mean = f"{100 * sum(c.change for c in shares) / len(shares):+.1f} points" if shares else ""
    gains = [c.task for c in rest if c.better]
    if drops:
        general_text = "a drop beyond noise on general tasks: " + "; ".join(f"{c.task} {c.text}" for c in drops)
        if rest:
            general_text += f" (the other {len(rest)} within noise or better)"
    elif mean:
        general_text = f"{mean} on general tasks, within noise" + (f" (better on {', '.join(gains)})" if gains else "")
    else:
        general_text = "no drop beyond noise on general tasks" + (f" (better on {', '.join(gains)})" if gains else "")
    text = "; ".join(t for t in (task_text, general_text) if t)
    return Verdict("drop" if drops else "ok", text, task_text, general_text, changes)
