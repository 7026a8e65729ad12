"""The held-out metrics of the report and how people read them: exact match, ROUGE-L, failure kinds, the
report's table (rounded, n per metric, which side is better, the paired change with its 95 % interval)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from . import tools as tools_eval
from ..rewards import normalise_text

def exact_match(answer: str, reference: str) -> bool:
    """The answer is the reference, up to case, punctuation, articles and spacing: the very test the GRPO
    exact_match reward pays for (rewards.normalise_text), so training and Evaluate count the same answers."""
    return normalise_text(answer) == normalise_text(reference)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over whitespace tokens of the normalised strings."""
    p, r = normalise_text(prediction).split(), normalise_text(reference).split()
    if not p or not r:
        return float(p == r)
    prev = [0] * (len(r) + 1)
    for a in p:
        cur = [0]
        for j, b in enumerate(r):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def failure_kind(prediction: str, reference: str) -> Optional[str]:
    """Error-analysis category for a wrong answer: empty, too_long, repetitive, or None."""
    words = prediction.split()
    if not words:
        return "empty"
    trigrams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    if len(trigrams) >= 6 and len(set(trigrams)) / len(trigrams) < 0.5:
        return "repetitive"
    if len(words) > 3 * max(len(reference.split()), 1) + 20:
        return "too_long"
    return None


@dataclass
class EvalReport:
    rows: int
    base: dict[str, Optional[float]] = field(default_factory=dict)  # None: the metric applied to no row
    fine_tuned: dict[str, Optional[float]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # side -> metric -> n rows it was measured on
    source: Optional[str] = None  # None: the job's held-out (validation) split; else the given file's name
    # 95 % intervals (stats.py) where n allows: side -> metric -> [low, high], and the paired change
    # fine-tuned - base over the same rows: metric -> [change, low, high]
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    changes: dict[str, list[float]] = field(default_factory=dict)
    stopped_early: bool = False  # a deadline ended the scoring before every row was scored (rows: those scored)

    def to_dict(self) -> dict[str, Any]:
        """The report, and its metrics table as people read it (what the API returns, evaluation.json keeps and
        the model card shows)."""
        return {**asdict(self), "table": metrics_table(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalReport":
        """A saved evaluation.json (older ones lack counts and source)."""
        known = {k: data[k] for k in ("rows", "base", "fine_tuned", "examples", "counts", "source", "intervals",
                                      "changes", "stopped_early") if k in data}
        return cls(**{"rows": 0, **known})

    def add_intervals(self, per_row: dict[str, dict[str, list[float]]],
                      paired: Optional[dict[str, tuple[list[float], list[float]]]] = None) -> None:
        """Intervals from per-row values (side -> metric -> one value per row, rows in the same order on both
        sides): Wilson for shares, the mean's otherwise, and the paired change. `paired`: metric -> (base, tuned)
        over the rows it applies to on both sides, for a metric whose rows differ between the sides."""
        from .stats import mean_ci, paired_diff_ci, wilson

        for side, metrics in per_row.items():
            for name, values in metrics.items():
                ci = wilson(sum(values), len(values)) if is_share(name) else mean_ci(values)
                if ci:
                    self.intervals.setdefault(side, {})[name] = [round(x, 6) for x in ci]
        pairs = {name: (per_row.get("base", {}).get(name), tuned) for name, tuned in
                 per_row.get("fine_tuned", {}).items()}
        for name, (base, tuned) in {**pairs, **(paired or {})}.items():
            if base is not None and len(base) == len(tuned):
                ci = paired_diff_ci(base, tuned)
                if ci:
                    change = sum(t - b for b, t in zip(base, tuned)) / len(tuned)
                    if is_share(name):  # a share cannot move by more than 100 points
                        ci = (max(ci[0], -1.0), min(ci[1], 1.0))
                    self.changes[name] = [round(change, 6), round(ci[0], 6), round(ci[1], 6)]

    def n(self, side: str, name: str) -> int:
        """Rows `name` was measured on for `side`."""
        if name in self.counts.get(side, {}):
            return self.counts[side][name]
        if name.startswith("reward") or name in ("eval_loss", "perplexity") or name not in METRICS:
            return self.rows
        return len(self.examples)  # a generation metric of a report saved before counts were kept


# What each metric means, in one line, and which way is better (the Chat / Evaluate tab's table).
METRICS: dict[str, tuple[str, bool, str]] = {  # name -> (label, higher is better, meaning)
    "eval_loss": ("Loss", False, "how surprised the model is by the reference answers (mean cross-entropy per "
                  "token)"),
    "perplexity": ("Perplexity", False, "exp(loss): about how many tokens the model hesitates between at each step"),
    "exact_match": ("Exact match", True, "answers equal to the reference, ignoring case, punctuation and articles"),
    "rouge_l": ("ROUGE-L", True, "how much of the reference's wording the answer has, in order (0 to 1)"),
    "contains_reference": ("Contains reference", True, "answers that contain the reference somewhere"),
    "reward": ("Reward", True, "mean total reward of sampled answers, scored by the job's own reward functions"),
    "preference_accuracy": ("Preference accuracy", True, "pairs where the model finds the chosen answer more likely "
                            "than the rejected one"),
    "reward_margin": ("Log-prob margin", True, "log p(chosen) - log p(rejected): the implicit reward margin DPO "
                      "and ORPO raise (nats)"),
    "chosen_logp": ("Chosen log-prob / token", True, "how likely the chosen answers are, per token (nats)"),
    "desirable_logp": ("Liked answers' log-prob / token", True, "how likely the answers people liked are (nats)"),
    "undesirable_logp": ("Disliked answers' log-prob / token", False, "how likely the answers people disliked "
                         "are (nats)"),
}
SHARES = {"exact_match", "contains_reference", "preference_accuracy"}  # shown as percentages (and every tool_* metric)


def metric_info(name: str) -> tuple[str, bool, str]:
    if name.startswith("reward/"):
        fn = name.split("/", 1)[1]
        return f"Reward: {fn}", True, f"mean reward from {fn} alone"
    if tools_eval.is_tool_metric(name):
        return tools_eval.metric_info(name)
    return METRICS.get(name, (name, True, ""))


def is_share(name: str) -> bool:
    return name in SHARES or tools_eval.is_tool_metric(name)


def _format(name: str, value: Optional[float]) -> str:
    if value is None or value != value:
        return "—"
    if is_share(name):
        return f"{100 * value:.1f} %"
    if name == "perplexity" and value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def metrics_table(report: EvalReport) -> list[dict[str, str]]:
    """The report's metrics as people read them: rounded, with n (what each was measured on), which side is
    better and by how much, and what the metric means."""
    rows = []
    for name, tuned in report.fine_tuned.items():
        base = report.base.get(name)
        label, higher, meaning = metric_info(name)
        shown_base, shown_tuned = _format(name, base), _format(name, tuned)
        if base is None or tuned is None or "—" in (shown_base, shown_tuned):
            better = "—"  # measured on one side only: nothing to compare
        elif shown_base == shown_tuned:
            better = "same"
        else:
            winner = "fine-tuned" if (tuned > base) == higher else "base"
            diff = abs(tuned - base)
            if is_share(name):
                by = f"{100 * diff:.1f} points"
            else:  # in the precision the values are shown in
                by = f"{diff:,.0f}" if name == "perplexity" and max(tuned, base) >= 100 else f"{diff:.3f}"
            better = f"{winner}, by {by}"
        n_base, n_tuned = report.n("base", name), report.n("fine_tuned", name)
        unit = "prompt" if name.startswith("reward") else "example"
        n = f"{n_tuned} {unit}{'s' if n_tuned != 1 else ''}" if n_base == n_tuned else \
            f"base {n_base}, fine-tuned {n_tuned} {unit}s"
        rows.append({"metric": label, "base": shown_base, "fine-tuned": shown_tuned, "better": better, "n": n,
                     "change": format_change(name, report.changes.get(name)),
                     "meaning": f"{'higher' if higher else 'lower'} is better: {meaning}"})
    return rows


def format_change(name: str, change: Optional[list[float]]) -> str:
    """Fine-tuned - base with its 95 % interval, in the metric's unit ("+12.0 points [+3.1, +20.9]"); "—" when n
    is too small for an interval."""
    if not change:
        return "—"
    if is_share(name):
        value, low, high = (100 * x for x in change)
        return f"{value:+.1f} points [{low:+.1f}, {high:+.1f}]"
    value, low, high = change
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"
