"""Function-call accuracy of base vs fine-tuned on a tool-calling job's held-out rows.

A held-out row is a conversation with the tool schemas it may call (`{"messages": [...], "tools": [...]}`). Its
last assistant turn is the target: the messages before it are the prompt, its `tool_calls` the reference calls
(none: the wanted behaviour is to answer without a call). Each side's answer is parsed (tool_output.extract_calls)
and scored against the reference (tool_output.score_calls); a metric is averaged over the rows it applies to, and
each side's n is kept beside it, so the table says what every percentage was measured on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

PREFIX = "tool_"  # report names: tool_valid_call, tool_name, tool_exact_arguments, tool_schema_valid, tool_no_call
KEYS = ("valid_call", "tool_name", "exact_arguments", "schema_valid", "no_call")  # tool_output.score_calls' keys
CORRECT_KEYS = ("valid_call", "tool_name", "exact_arguments", "no_call")  # all that apply at 1.0: the row is right


def report_name(key: str) -> str:
    return key if key.startswith(PREFIX) else PREFIX + key


def is_tool_metric(name: str) -> bool:
    return name.startswith(PREFIX)


def metric_info(name: str) -> tuple[str, bool, str]:
    """(label, higher is better, meaning) of a report's tool metric, from tool_output.TOOL_METRICS."""
    from ..tool_output import TOOL_METRICS

    key = next((k for k in KEYS if report_name(k) == name), name)
    label, meaning = TOOL_METRICS.get(key, (name, ""))
    return label, True, meaning


def is_tool_job(examples: list[dict]) -> bool:
    """A tool-calling job: its held-out rows carry tool schemas."""
    return any(e.get("tools") for e in examples)


@dataclass
class ToolTarget:
    prompt: list[dict]            # the messages before the last assistant turn
    calls: list[dict]             # that turn's tool calls (empty: it answered without one)
    text: str                     # that turn's text
    tools: list[dict]


def tool_target(example: dict) -> Optional[ToolTarget]:
    messages = example.get("messages") or []
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        return None
    turn = messages[last]
    return ToolTarget(messages[:last], list(turn.get("tool_calls") or []), turn.get("content") or "",
                      list(example.get("tools") or []))


def shown_prompt(messages: list[dict]) -> str:
    """The last user message or tool result before the target turn (what the answer responds to)."""
    for m in reversed(messages):
        if m.get("role") == "tool":
            return f"[{m.get('name') or 'tool'} result] {m.get('content') or ''}"
        if m.get("role") == "user":
            return m.get("content") or ""
    return messages[-1].get("content") or "" if messages else ""


def shown_calls(calls: list[dict], text: str) -> str:
    """Calls as `name(arguments)`, `; `-separated; the text when there is no call."""
    from ..tool_output import format_call

    return "; ".join(format_call(c) for c in calls) if calls else text


def failure(scores: dict[str, Optional[float]], predicted: Any, wanted_call: bool) -> Optional[str]:
    """Error-analysis category of a wrong answer (None when it is right)."""
    if is_correct(scores):
        return None
    if predicted.malformed:
        return "malformed_call"
    if wanted_call and not predicted.calls:
        return "missed_call"
    if not wanted_call and predicted.calls:
        return "unwanted_call"
    if scores.get("tool_name") == 0.0:
        return "wrong_tool"
    if scores.get("schema_valid") == 0.0:
        return "invalid_arguments"
    return "wrong_arguments"


def is_correct(scores: dict[str, Optional[float]]) -> bool:
    applied = [scores.get(k) for k in CORRECT_KEYS if scores.get(k) is not None]
    return bool(applied) and all(v == 1.0 for v in applied)


@dataclass
class ToolTally:
    """Sums and counts of each metric per side, over the rows where it applies."""
    sums: dict[str, dict[str, float]] = field(default_factory=lambda: {"base": {}, "fine_tuned": {}})
    counts: dict[str, dict[str, int]] = field(default_factory=lambda: {"base": {}, "fine_tuned": {}})

    def add(self, target: ToolTarget, answers: list[str]) -> dict[str, Any]:
        """Score (base answer, fine-tuned answer) against the target; returns the report's example row."""
        from ..tool_output import extract_calls, score_calls

        row: dict[str, Any] = {"prompt": shown_prompt(target.prompt),
                               "reference": shown_calls(target.calls, target.text)}
        for side, answer in zip(("base", "fine_tuned"), answers):
            predicted = extract_calls(answer)
            scores = score_calls(predicted, target.calls, target.tools)
            for key in KEYS:
                value = scores.get(key)
                if value is not None:
                    name = report_name(key)
                    self.sums[side][name] = self.sums[side].get(name, 0.0) + float(value)
                    self.counts[side][name] = self.counts[side].get(name, 0) + 1
            row[side] = answer if predicted.malformed else shown_calls(predicted.calls, predicted.content)
            row[f"{side}_correct"] = is_correct(scores)
            row[f"{side}_failure"] = failure(scores, predicted, bool(target.calls))
            row[f"{side}_scores"] = {report_name(k): scores.get(k) for k in KEYS}
        return row

    def metrics(self, side: str) -> tuple[dict[str, Optional[float]], dict[str, int]]:
        """(metric -> mean, None where it applied to no row; metric -> n) for one side, every tool metric named."""
        names = [report_name(k) for k in KEYS]
        counts = {n: self.counts[side].get(n, 0) for n in names}
        means = {n: (self.sums[side][n] / counts[n] if counts[n] else None) for n in names}
        return means, counts
